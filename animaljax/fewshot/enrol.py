"""Enrol species from a few clips, calibrate their thresholds, and rank them with the model's own classes.

Distance: `fewshot.prototypes` (Euclidean from the mean of the L2-normalised support embeddings, in [0, 2]).

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
import pathlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from animaljax.audio.io import AudioError
from animaljax.fewshot.prototypes import distance, loo_distances, prototype
from animaljax.fewshot.store import Species, SpeciesStore, StoreError, now, same_name, validate_name


class EmbeddingModel(Protocol):
  """What enrolment needs of a model (`inference.Predictor` is one): fewshot imports no inference code.

  Attributes:
    labels: the model's own class names (an enrolled name may not be one of them).
    embed_dim: D; fingerprint: an id of its weights (`models.serialize.fingerprint`); path: its folder, where
      the species store lives (None: an in-memory model, which cannot keep species).
  """

  labels: tuple[str, ...]
  embed_dim: int
  fingerprint: str
  path: pathlib.Path | None

  def load_file(self, path: str | os.PathLike) -> np.ndarray:
    """(time,) float32 at the model's rate; AudioError naming the file if it cannot be used."""
    ...

  def analyse(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Clips (each (time,)) -> (probs (N, C), embeddings (N, D)), each averaged over the clip's windows."""
    ...


MARGIN = 1.0
MIN_THRESHOLD = 0.05
DEFAULT_THRESHOLD = 0.5
UNKNOWN = "unknown"


# ----------------------------------------------------------------------------------------------------------------
# Thresholds and ranking (pure numpy)
# ----------------------------------------------------------------------------------------------------------------
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


def detect(
  probs: np.ndarray,
  thresholds: np.ndarray,
  labels: Sequence[str],
  embedding: np.ndarray,
  species: dict[str, Species],
) -> list[dict]:
  """One window of a multi-label model: every class and enrolled species as an independent detector.

  Model classes score their sigmoid probability `p_c` (not discounted: several things may be heard at once) and
  are detected when `p_c >= thresholds[c]`; an enrolled species scores `2 ** -(d / threshold)` as in `rank` and
  is detected within its threshold (score >= 0.5). Returns `[{"label", "score", "source", "detected"}]` sorted by
  score (enrolled entries also carry "distance" and "threshold"); there is no "unknown": nothing detected is
  simply no detection.
  """
  out = [
    {"label": n, "score": float(p), "source": "model", "detected": bool(p >= t)}
    for n, p, t in zip(labels, np.asarray(probs, np.float64), thresholds, strict=True)
  ]
  for s in species.values():
    d = float(distance(embedding, prototype(s.embeddings)))
    out.append({"label": s.name, "score": float(2.0 ** (-d / s.threshold)), "source": "enrolled",
                "detected": d <= s.threshold, "distance": d, "threshold": s.threshold})  # fmt: skip
  return sorted(out, key=lambda r: -r["score"])


# ----------------------------------------------------------------------------------------------------------------
# Enrolment on a model
# ----------------------------------------------------------------------------------------------------------------
def species_store(model: EmbeddingModel) -> SpeciesStore | None:
  """The `SpeciesStore` in the model's folder (None for an in-memory model)."""
  if model.path is None:
    return None
  return SpeciesStore(model.path, embed_dim=model.embed_dim, fingerprint=model.fingerprint)


def _store(model: EmbeddingModel) -> SpeciesStore:
  store = species_store(model)
  if store is None:
    raise StoreError(
      "this model was built in memory (no folder): enrolled species need a model dir to live in"
    )
  return store


def enroll(
  model: EmbeddingModel,
  name: str,
  files: Sequence[str | os.PathLike],
  *,
  merge: bool = False,
  threshold: float | None = None,
  margin: float = MARGIN,
) -> Species:
  """Embeds `files` and stores them as species `name` in the model's folder.

  Args:
    model: the model (its folder holds the store).
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
  if any(same_name(name, label) for label in model.labels):
    raise ValueError(f"{name!r} is already one of the model's own classes; choose another name")
  if threshold is not None and not threshold > 0:
    raise ValueError(f"threshold must be a positive distance, got {threshold}")
  files = [os.fspath(f) for f in files]
  if not files:
    raise ValueError(f"enrolling {name!r} needs at least one audio clip")
  waves, errors = read_clips(model, files)
  if errors:
    raise errors[0]
  _, embeddings = model.analyse(waves)
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
  return _store(model).add(species, merge=merge, recalibrate=lambda s: calibrate(s.embeddings, margin))


def read_clips(model: EmbeddingModel, files: Sequence[str]) -> tuple[list[np.ndarray], list[AudioError]]:
  """Every file read at the model's rate, (time,) float32 each, and an AudioError (path, reason) for each
  file that cannot be enrolled: missing, unreadable or silent (all samples zero). Reads them all, so a
  caller can name every bad clip at once."""
  waves, errors = [], []
  for f in files:
    try:
      wave = model.load_file(f)
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


def reembed(model: EmbeddingModel, species: Species) -> Species:
  """`species` as `model` sees it: its stored source clips (`species.files`) read again and embedded by
  this model, for carrying enrolled species over to a model with another embedding.

  Keeps the name, key, clips and timestamps of enrolment. A user threshold is kept as is; a leave-one-out one
  is recalibrated on the new embeddings with the margin it was calibrated with (`_loo_margin`); a one-clip
  species keeps the default.
  Raises:
    StoreError naming the species and every clip that cannot be read (missing, unreadable, silent).
  """
  waves, errors = read_clips(model, species.files)
  if errors:
    raise StoreError(
      f"{species.name!r}: {len(errors)} of its {species.num_clips} clips cannot be read: "
      + "; ".join(str(e) for e in errors)
    )
  _, embeddings = model.analyse(waves)
  if not np.isfinite(embeddings).all():
    raise StoreError(f"{species.name!r}: the model gave non-finite embeddings for its clips")
  if species.threshold_source == "user":
    threshold, source = species.threshold, "user"
  else:
    threshold, source = calibrate(embeddings, _loo_margin(species))
  return dataclasses.replace(
    species, embeddings=embeddings, threshold=threshold, threshold_source=source, updated=now()
  )


def list_species(model: EmbeddingModel) -> list[dict]:
  """Summaries of the enrolled species (`Species.summary()`), in enrolment order."""
  return [s.summary() for s in _store(model).load().values()]


def remove_species(model: EmbeddingModel, name: str) -> Species:
  """Removes an enrolled species (case-insensitive name); StoreError if it is not enrolled."""
  return _store(model).remove(name)
