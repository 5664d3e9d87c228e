"""Enrol species from a few clips, calibrate their thresholds, and rank them with the model's own classes.

Distance: Euclidean between L2-normalised embeddings, `d(x, s) = || x/|x| - mean_k(e_k/|e_k|) ||`. Normalising
removes the loudness/activation-scale differences between clips that raw CNN embeddings carry, and keeps
distances in [0, 2] for any model, so a fallback threshold means the same thing everywhere. The raw
embeddings are what the store keeps; this choice can change without re-enrolling.

Threshold (per species), in this order:
  * given by the user (`threshold=`, CLI `--threshold`): used as is;
  * >= 2 clips, leave-one-out: `d_i` = distance of clip i to the prototype of the *other* clips;
    `threshold = max(margin * max_i d_i, MIN_THRESHOLD)`. LOO distances are what an unseen clip of the species
    looks like from the prototype (an in-sample distance is shrunk by the clip's own pull on the mean). With
    K exchangeable clips a new one lands beyond all K LOO distances with probability ~1 / (K + 1), so the max
    (margin 1.0) accepts ~83% of a species' clips at K = 5, and more in practice because a query is measured
    from the full K-clip prototype, which sits nearer than a K-1 one. A larger margin buys recall at the cost
    of claiming neighbouring sounds; the floor keeps near-duplicate clips from giving threshold 0;
  * 1 clip: no LOO is possible; `DEFAULT_THRESHOLD` (0.5, a cosine similarity of ~0.875 to a unit prototype),
    marked "default" so `list` shows it is uncalibrated.

Joint ranking (`rank`): the model's classes score their softmax probability `p_c`; an enrolled species scores
`s = 2 ** -(d / threshold)`, which is 1 at the prototype and exactly 0.5 on the threshold. The model has never
seen the enrolled species and closed-set softmax is over-confident on unseen sounds, so a species match takes
that confidence away: with `q = max s`, model classes score `(1 - q) * p_c`. Consequence: a clip within an
enrolled species' threshold (s >= 0.5) always ranks that species above every model class, a clip far from all
prototypes keeps the model's ranking. "unknown" is returned first when no prototype is within its threshold
and the model's top probability is below `model_threshold`. Scores are comparable, not a distribution.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from animaljax.audio.io import AudioError
from animaljax.fewshot.store import Species, StoreError, now, same_name, validate_name

if TYPE_CHECKING:
  from animaljax.predictor import Predictor

MARGIN = 1.0
MIN_THRESHOLD = 0.05
DEFAULT_THRESHOLD = 0.5
UNKNOWN = "unknown"


# ----------------------------------------------------------------------------------------------------------------
# Distances and thresholds (pure numpy)
# ----------------------------------------------------------------------------------------------------------------
def normalize(x: np.ndarray) -> np.ndarray:
  """Rows scaled to unit L2 norm: (..., D) -> (..., D) float32 (all-zero rows stay zero)."""
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototype(embeddings: np.ndarray) -> np.ndarray:
  """(K, D) raw embeddings -> (D,) mean of their normalised rows (the point distances are measured from)."""
  return normalize(embeddings).mean(axis=0)


def distance(query: np.ndarray, proto: np.ndarray) -> np.ndarray:
  """(..., D) raw query embeddings, (D,) `prototype` -> (...) Euclidean distances."""
  return np.linalg.norm(normalize(query) - proto, axis=-1)


def loo_distances(embeddings: np.ndarray) -> np.ndarray:
  """(K >= 2, D) -> (K,): each clip's distance to the prototype of the other K - 1 clips."""
  e = normalize(embeddings)
  k = e.shape[0]
  if k < 2:
    raise ValueError("leave-one-out needs at least 2 clips")
  others = (e.sum(axis=0, keepdims=True) - e) / (k - 1)
  return np.linalg.norm(e - others, axis=-1)


def calibrate(embeddings: np.ndarray, margin: float = MARGIN) -> tuple[float, str]:
  """`(threshold, source)` for a species' support embeddings (K, D): LOO when K >= 2, else the default."""
  if np.asarray(embeddings).shape[0] < 2:
    return DEFAULT_THRESHOLD, "default"
  return max(float(margin * loo_distances(embeddings).max()), MIN_THRESHOLD), "loo"


def rank(
  probs: np.ndarray,
  labels: Sequence[str],
  embedding: np.ndarray,
  species: dict[str, Species],
  *,
  top_k: int | None = 5,
  model_threshold: float = 0.5,
) -> list[dict]:
  """One clip's joint ranking (see the module docstring).

  Args:
    probs: (C,) the model's softmax probabilities; labels: its C class names.
    embedding: (D,) the clip's raw embedding; species: the enrolled species by name.
    top_k: entries kept (None: all); model_threshold: below this top probability the model is "not sure".
  Returns:
    `[{"label", "score", "source", ("distance", "threshold" for enrolled)}]` sorted by score, with
    `{"label": "unknown", "score": 1 - best score, "source": "unknown"}` first when nothing is confident.
  """
  probs = np.asarray(probs, np.float32)
  enrolled = []
  for s in species.values():
    d = float(distance(embedding, prototype(s.embeddings)))
    score = float(2.0 ** (-d / s.threshold))
    enrolled.append(
      {"label": s.name, "score": score, "source": "enrolled", "distance": d, "threshold": s.threshold}
    )
  q = max((e["score"] for e in enrolled), default=0.0)
  model = [
    {"label": n, "score": float((1.0 - q) * p), "source": "model"} for n, p in zip(labels, probs, strict=True)
  ]
  ranked = sorted(model + enrolled, key=lambda r: -r["score"])
  matched = any(e["distance"] <= e["threshold"] for e in enrolled)
  confident = probs.size > 0 and float(probs.max()) >= model_threshold
  if top_k is not None:
    ranked = ranked[:top_k]
  if not matched and not confident:
    best = ranked[0]["score"] if ranked else 0.0
    ranked = [{"label": UNKNOWN, "score": 1.0 - best, "source": "unknown"}, *ranked]
  return ranked


# ----------------------------------------------------------------------------------------------------------------
# Enrolment on a Predictor
# ----------------------------------------------------------------------------------------------------------------
def _store(predictor: Predictor):
  store = predictor.species_store()
  if store is None:
    raise StoreError(
      "this model was built in memory (no folder): enrolled species need a model dir to live in"
    )
  return store


def enroll(
  predictor: Predictor,
  name: str,
  files: Sequence[str | os.PathLike],
  *,
  merge: bool = False,
  threshold: float | None = None,
  margin: float = MARGIN,
) -> Species:
  """Embeds `files` and stores them as species `name` beside the predictor's model.

  Args:
    predictor: the model (its folder holds the store).
    name: the species' name (validated: `fewshot.store.validate_name`).
    files: support clips; every file must decode (AudioError names the first bad one) and at least one is
      needed.
    merge: add the clips to an already-enrolled species of that name instead of refusing the duplicate.
    threshold: a fixed distance threshold instead of the leave-one-out calibration.
    margin: the LOO threshold's multiplier.
  Returns:
    The stored species (merged, if `merge`).
  Raises:
    ValueError: a bad name, no files, a non-positive threshold, a name that is one of the model's classes.
    AudioError: a file that cannot be read. StoreError: a duplicate without `merge`, a store for another model.
  """
  name = validate_name(name)
  if any(same_name(name, label) for label in predictor.labels):
    raise ValueError(f"{name!r} is already one of the model's own classes; choose another name")
  if threshold is not None and not threshold > 0:
    raise ValueError(f"threshold must be a positive distance, got {threshold}")
  files = [os.fspath(f) for f in files]
  if not files:
    raise ValueError(f"enrolling {name!r} needs at least one audio clip")
  waves, errors = read_clips(predictor, files)
  if errors:
    raise errors[0]
  _, embeddings = predictor.analyse(waves)
  if not np.isfinite(embeddings).all():
    raise ValueError(f"the model gave non-finite embeddings for {name!r}'s clips")
  stamp = now()
  if threshold is not None:
    thr, source = float(threshold), "user"
  else:
    thr, source = calibrate(embeddings, margin)
  species = Species(
    name=name, embeddings=embeddings, files=[os.path.abspath(f) for f in files], added=[stamp] * len(files),
    threshold=thr, threshold_source=source, created=stamp,
  )  # fmt: skip
  return _store(predictor).add(species, merge=merge, recalibrate=lambda s: calibrate(s.embeddings, margin))


def read_clips(predictor: Predictor, files: Sequence[str]) -> tuple[list[np.ndarray], list[AudioError]]:
  """Every file read at the model's rate, (time,) float32 each, and an AudioError (path, reason) for each
  file that cannot be enrolled: missing, unreadable or silent (all samples zero). Reads them all, so a
  caller can name every bad clip at once."""
  waves, errors = [], []
  for f in files:
    try:
      wave = predictor.load_file(f)
    except AudioError as err:
      errors.append(err)
      continue
    except Exception as err:  # anything else the decoder throws still has to say which file
      errors.append(AudioError(f, f"cannot read: {err}"))
      continue
    if not np.any(wave):
      errors.append(AudioError(f, "silent (all samples are zero): nothing to enrol"))
      continue
    waves.append(wave)
  return waves, errors


def _loo_margin(species: Species) -> float:
  """The margin a leave-one-out threshold was calibrated with (the store keeps only the threshold): the
  threshold over the largest LOO distance, unless the threshold sits on the floor (then MARGIN)."""
  if species.threshold_source == "loo" and species.num_clips >= 2:
    top = float(loo_distances(species.embeddings).max())
    if top > 0 and species.threshold > MIN_THRESHOLD * (1 + 1e-6):
      return species.threshold / top
  return MARGIN


def reembed(predictor: Predictor, species: Species) -> Species:
  """`species` as `predictor` sees it: its stored source clips (`species.files`) read again and embedded by
  this model, for carrying enrolled species over to a model with another embedding.

  Keeps the name, key, clips and timestamps of enrolment. A user threshold is kept as is; a leave-one-out one
  is recalibrated on the new embeddings with the margin it was calibrated with (`_loo_margin`); a one-clip
  species keeps the default.
  Raises:
    StoreError naming the species and every clip that cannot be read (missing, unreadable, silent).
  """
  waves, errors = read_clips(predictor, species.files)
  if errors:
    raise StoreError(
      f"{species.name!r}: {len(errors)} of its {species.num_clips} clips cannot be read: "
      + "; ".join(str(e) for e in errors)
    )
  _, embeddings = predictor.analyse(waves)
  if not np.isfinite(embeddings).all():
    raise StoreError(f"{species.name!r}: the model gave non-finite embeddings for its clips")
  if species.threshold_source == "user":
    threshold, source = species.threshold, "user"
  else:
    threshold, source = calibrate(embeddings, _loo_margin(species))
  return dataclasses.replace(
    species, embeddings=embeddings, threshold=threshold, threshold_source=source, updated=now()
  )


def list_species(predictor: Predictor) -> list[dict]:
  """Summaries of the enrolled species (`Species.summary()`), in enrolment order."""
  return [s.summary() for s in _store(predictor).load().values()]


def remove_species(predictor: Predictor, name: str) -> Species:
  """Removes an enrolled species (case-insensitive name); StoreError if it is not enrolled."""
  return _store(predictor).remove(name)
