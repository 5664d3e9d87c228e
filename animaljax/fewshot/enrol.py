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

Background clips (`fewshot.background`; CLI `enroll background add`): recordings of what no species is
(wind, rain, the site's hum), one embedding per window, kept in the store. A prototype knows only what its
species is, so a threshold calibrated on 5 support clips says nothing about where the background lies, and
sounds the model was never trained on (wind, for a model of animal calls) land near whatever prototype they
happen to. Measured (a CNN6 at 1/8 width trained 150 steps on ESC-50 dog/rooster/crow, as
`tests/fewshot/test_background.py` trains it; each of the 7 other animal classes enrolled from 5 random clips
of folds 1-4, 4 draws, times 4 splits of the 24 real ESC-50 wind clips by fold, so the takes of one recording
stay on one side; counted: clips whose top label is the species): without background, 927 of 1120 held-out
wind clips came back as the species (and 725 of its 896 held-out clips). Two rules, both in the normalised distance of `fewshot.prototypes`:
  * the rule that decides (in `rank` and `detect`, for every threshold, a user's too): a species claims a
    clip only if the clip is no farther from its prototype than from the nearest background window,
    `d(x, species) <= min_b d(x, b)`. Equivalently the clip is judged against the effective threshold
    `min(threshold, d_background(x))`, which is what the entries' "threshold" reports and what the score
    `2 ** -(d / threshold)` uses (still 0.5 exactly where the claim ends). A clip nearer the background than
    every prototype is claimed by no species: "unknown" unless the model itself is sure of one of its classes
    (the model's classes have no prototype to compare with). Alone: 17 of 1120 wind clips, 427 of 896 species
    clips;
  * the calibration: a leave-one-out or default threshold is capped at `BACKGROUND_MARGIN` (2.0) times the
    distance from the prototype to the nearest background window, so a threshold inflated by one outlying
    support clip (often a quiet one that is mostly background) cannot reach far past the background. With
    the rule: at 2.0, 16 of 1120 wind clips and 385 of 896 species clips (other animals taken for the
    species: 2084 of 8064, 2627 with the rule alone, 5553 without background); at 1.0 (no background window
    within the threshold) 11 and 258: half the recall for 5 wind clips; at 3.0, 17 and 415. A cap without the
    rule is no fix: 258 (at 1.0) and 868 (at 2.0) of 1120 wind clips still claimed.
The cost in recall is this toy embedding's (3 classes, 64 dimensions: wind lies among the animals); a 6-class
model of the same size went from 479 to 5 of 640 wind clips and 417 to 266 of 512 species clips. Thresholds
are recalibrated whenever the background changes, and a species is calibrated against the current background
when it is enrolled or merged; a user's threshold is never changed (the rule still applies).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from animaljax.audio.io import AudioError
from animaljax.fewshot import linear_head
from animaljax.fewshot.prototypes import distance, loo_distances, normalize, prototype
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

  def windows(self, wave: np.ndarray) -> np.ndarray:
    """(time,) -> (W, window) the windows `analyse` averages over (a short clip: one, padded)."""
    ...


MARGIN = 1.0
MIN_THRESHOLD = 0.05
DEFAULT_THRESHOLD = 0.5
BACKGROUND_MARGIN = 2.0
UNKNOWN = "unknown"


# ----------------------------------------------------------------------------------------------------------------
# Thresholds and ranking (pure numpy)
# ----------------------------------------------------------------------------------------------------------------
def calibrate(
  embeddings: np.ndarray, margin: float = MARGIN, background: np.ndarray | None = None
) -> tuple[float, str]:
  """`(threshold, source)` for a species' support embeddings (K, D): LOO when K >= 2, else the default; with
  `background` (N, D) raw embeddings, capped at `background_cap` (never below MIN_THRESHOLD)."""
  if np.asarray(embeddings).shape[0] < 2:
    threshold, source = DEFAULT_THRESHOLD, "default"
  else:
    threshold, source = max(float(margin * loo_distances(embeddings).max()), MIN_THRESHOLD), "loo"
  cap = background_cap(embeddings, background)
  if cap is not None:
    threshold = max(min(threshold, cap), MIN_THRESHOLD)
  return threshold, source


def background_cap(embeddings: np.ndarray, background: np.ndarray | None) -> float | None:
  """`BACKGROUND_MARGIN` x the distance from the prototype of `embeddings` (K, D) to the nearest of the
  `background` (N, D) windows; None without background."""
  if background is None or len(background) == 0:
    return None
  return BACKGROUND_MARGIN * float(distance(background, prototype(embeddings)).min())


def background_distance(embedding: np.ndarray, background: np.ndarray | None) -> float | None:
  """The distance of a clip's (D,) raw embedding to the nearest background window (None without background),
  in the normalised distance of `fewshot.prototypes` (a unit background row is its own prototype)."""
  if background is None or len(background) == 0:
    return None
  return float(distance(background, normalize(embedding)).min())


def _claim(embedding: np.ndarray, s: Species) -> dict:
  """An enrolled species' entry for a clip: distance, effective threshold (module docstring), score."""
  d = float(distance(embedding, prototype(s.embeddings)))
  entry = {"label": s.name, "source": "enrolled", "distance": d, "threshold": s.threshold}
  d_background = background_distance(embedding, s.background)
  if d_background is not None:
    entry["threshold"] = min(s.threshold, d_background)
    entry["background"] = d_background
  threshold = entry["threshold"]
  entry["score"] = float(2.0 ** (-d / threshold)) if threshold > 0 else float(d == 0)
  entry["claimed"] = d <= threshold
  return entry


def rank(
  probs: np.ndarray,
  labels: Sequence[str],
  embedding: np.ndarray,
  species: dict[str, Species],
  *,
  top_k: int | None = 5,
  model_threshold: float = 0.5,
  sources: Sequence[str] | None = None,
) -> list[dict]:
  """One clip's joint ranking (see the module docstring).

  Args:
    probs: (C,) the model's softmax probabilities; labels: its C class names.
    embedding: (D,) the clip's raw embedding; species: the enrolled species by name.
    top_k: entries kept (None: all); model_threshold: below this top probability the model is "not sure".
    sources: (C,) the "source" of each label's entry (None: "model" for all; an attached head's classes,
      `fewshot.heads`, are "head": they rank like the model's own).
  Returns:
    `[{"label", "score", "source", ("distance", "threshold" for enrolled)}]` sorted by score, with
    `{"label": "unknown", "score": 1 - best score, "source": "unknown"}` first when nothing is confident. With
    background clips, an enrolled entry's "threshold" is the effective one, `min(threshold, background)`, and
    "background" is the clip's distance to the nearest background window.
  """
  probs = np.asarray(probs, np.float32)
  claims = [_claim(embedding, s) for s in species.values()]
  matched = any(e["claimed"] for e in claims)
  enrolled = [{k: e[k] for k in ("label", "score", "source", "distance", "threshold", "background") if k in e}
              for e in claims]  # fmt: skip
  q = max((e["score"] for e in enrolled), default=0.0)
  sources = ["model"] * len(labels) if sources is None else sources
  model = [
    {"label": n, "score": float((1.0 - q) * p), "source": src}
    for n, p, src in zip(labels, probs, sources, strict=True)
  ]
  ranked = sorted(model + enrolled, key=lambda r: -r["score"])
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
  sources: Sequence[str] | None = None,
) -> list[dict]:
  """One window of a multi-label model: every class and enrolled species as an independent detector.

  Model classes score their sigmoid probability `p_c` (not discounted: several things may be heard at once) and
  are detected when `p_c >= thresholds[c]`; an enrolled species scores `2 ** -(d / threshold)` as in `rank` and
  is detected within its threshold (score >= 0.5), and, with background clips, only if the window is no nearer
  the background than the prototype (the effective threshold of `rank`). Returns
  `[{"label", "score", "source", "detected"}]` sorted by score (enrolled entries also carry "distance",
  "threshold" and, with background clips, "background"; `sources` as in `rank`); there is no "unknown": nothing detected is simply no
  detection.
  """
  sources = ["model"] * len(labels) if sources is None else sources
  out = [
    {"label": n, "score": float(p), "source": src, "detected": bool(p >= t)}
    for n, p, t, src in zip(labels, np.asarray(probs, np.float64), thresholds, sources, strict=True)
  ]
  for s in species.values():
    e = _claim(embedding, s)
    out.append({"label": e["label"], "score": e["score"], "source": "enrolled", "detected": e["claimed"],
                **{k: e[k] for k in ("distance", "threshold", "background") if k in e}})  # fmt: skip
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
    ValueError: a bad name, no files, a non-positive threshold, a name that is one of the model's classes or
      of an attached head's (`fewshot.heads`).
    AudioError: a file that cannot be read. StoreError: a duplicate without `merge`, a store for another model.
  """
  name = validate_name(name)
  if any(same_name(name, label) for label in model.labels):
    raise ValueError(f"{name!r} is already one of the model's own classes; choose another name")
  head = next((h for h, c in linear_head.attached_classes(model.path) if same_name(name, c)), None)
  if head is not None:
    raise ValueError(
      f"{name!r} is already a class of the attached head {head!r} (search attach); choose another name"
    )
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
    # calibrated again by the store's `add`, under its lock, against the background it holds then
    thr, source = calibrate(embeddings, margin)
  species = Species(
    name=name, embeddings=embeddings, files=[os.path.abspath(f) for f in files], added=[stamp] * len(files),
    threshold=thr, threshold_source=source, created=stamp, margin=None if threshold is not None else margin,
  )  # fmt: skip
  return _store(model).add(
    species, merge=merge, recalibrate=lambda s: calibrate(s.embeddings, margin, s.background)
  )


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
  """The margin a leave-one-out threshold was calibrated with: the recorded one (`Species.margin`), else (a
  store written before margins were recorded, hence without background cap) the threshold over the largest
  LOO distance, unless the threshold sits on the floor (then MARGIN)."""
  if species.margin is not None:
    return float(species.margin)
  if species.threshold_source == "loo" and species.num_clips >= 2:
    top = float(loo_distances(species.embeddings).max())
    if top > 0 and species.threshold > MIN_THRESHOLD * (1 + 1e-6):
      return species.threshold / top
  return MARGIN


def recalibrated(species: Species, background: np.ndarray | None) -> Species:
  """`species` calibrated against `background` (N, D) raw embeddings (None: none), which it then carries
  (`Species.background`): a leave-one-out or default threshold is computed afresh (`calibrate`, with the
  margin it was calibrated with: `_loo_margin`), a user's is kept."""
  out = dataclasses.replace(species, background=background)
  if out.threshold_source != "user":
    out.margin = _loo_margin(species) if species.threshold_source == "loo" else species.margin
    out.threshold, out.threshold_source = calibrate(out.embeddings, out.margin or MARGIN, background)
  return out


def reembed(model: EmbeddingModel, species: Species) -> Species:
  """`species` as `model` sees it: its stored source clips (`species.files`) read again and embedded by
  this model, for carrying enrolled species over to a model with another embedding.

  Keeps the name, key, clips and timestamps of enrolment. A user threshold is kept as is; a leave-one-out one
  is recalibrated on the new embeddings with the margin it was calibrated with (`_loo_margin`); a one-clip
  species keeps the default. The result has no background: calibrate it against the new model's background
  with `recalibrated`.
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
  margin = species.margin
  if species.threshold_source == "user":
    threshold, source = species.threshold, "user"
  else:
    margin = _loo_margin(species) if species.threshold_source == "loo" else margin
    threshold, source = calibrate(embeddings, margin or MARGIN)
  return dataclasses.replace(
    species, embeddings=embeddings, threshold=threshold, threshold_source=source, updated=now(),
    margin=margin, background=None,
  )  # fmt: skip


def summary(species: Species) -> dict:
  """`Species.summary()` and "capped_by_background": whether the background cap set its threshold."""
  capped = False
  if species.threshold_source != "user" and species.background is not None:
    alone, _ = calibrate(species.embeddings, _loo_margin(species))
    capped = species.threshold < alone * (1 - 1e-6)
  return {**species.summary(), "capped_by_background": capped}


def list_species(model: EmbeddingModel) -> list[dict]:
  """Summaries of the enrolled species (`summary`), in enrolment order."""
  return [summary(s) for s in _store(model).load().values()]


def remove_species(model: EmbeddingModel, name: str) -> Species:
  """Removes an enrolled species (case-insensitive name); StoreError if it is not enrolled."""
  return _store(model).remove(name)
