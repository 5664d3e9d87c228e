"""What the web demo does, minus the web: check uploads, classify with a per-window timeline, enrol, describe.

Every function takes a loaded `animaljax.inference.Predictor` and plain paths/arrays and returns plain data,
so `demo/app.py` only lays out widgets and turns `DemoError` into a message on the page. The work itself is the
library's: `Predictor.analyse` (windows, forward pass) and `fewshot.enrol.rank` / `enroll` / `remove_species`,
the same calls the `animaljax.enroll` CLI makes.

Bad input never escapes as a traceback: a missing, empty, non-audio, corrupt, too large or too long file
raises `DemoError` with a message naming the file (by its uploaded name, not the server's temporary path) and
the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import weakref
from collections.abc import Sequence

import jax
import numpy as np

from animaljax.audio.io import AudioError, audio_info, load_audio
from animaljax.fewshot import enrol
from animaljax.fewshot.store import StoreError
from animaljax.inference import Predictor, framewise_predict
from animaljax.inference.heads import model_classes


class DemoError(Exception):
  """Input the demo refuses; `str(err)` is the message shown to the user."""


@dataclasses.dataclass(frozen=True)
class Limits:
  """Upload limits: a longer (`max_seconds`) or larger (`max_mb`, MiB) file is refused before decoding."""

  max_seconds: float = 600.0
  max_mb: float = 50.0


@dataclasses.dataclass
class Analysis:
  """One clip's result.

  Attributes:
    wave: (time,) float32 at the model's rate.
    ranking: `fewshot.enrol.rank` output for the whole clip (window-averaged), best first.
    timeline: one `(start_s, end_s, label, score)` per model window (a single row for a one-window clip); for a
      multi-label model one per class detected in the window (a "- (best)" row where none is).
  """

  wave: np.ndarray
  ranking: list[dict]
  timeline: list[tuple[float, float, str, float]]

  def confidences(self) -> dict[str, float]:
    """`{label: score}` in rank order (what `gr.Label` shows)."""
    return {r["label"]: float(r["score"]) for r in self.ranking}


# ----------------------------------------------------------------------------------------------------------------
# Uploads
# ----------------------------------------------------------------------------------------------------------------
def display_name(path: str | os.PathLike) -> str:
  """The name a user recognises: the file's base name (uploads keep it inside gradio's cache folders)."""
  return pathlib.Path(path).name


def check_file(path: str | os.PathLike | None, limits: Limits) -> str:
  """The path of an uploaded file within the limits (size, and duration from its header), else DemoError."""
  if path is None or not os.fspath(path):
    raise DemoError("no audio given: upload a file or record from the microphone")
  path = os.fspath(path)
  name = display_name(path)
  try:
    size = os.path.getsize(path)
  except OSError as err:
    raise DemoError(f"{name}: cannot be read ({err.strerror})") from err
  if size > limits.max_mb * 2**20:
    raise DemoError(f"{name}: {size / 2**20:.3g} MB is larger than the {limits.max_mb:g} MB limit")
  try:
    sr, frames, _ = audio_info(path)
  except AudioError as err:
    raise DemoError(f"{name}: {err.reason}") from err
  if sr > 0 and frames / sr > limits.max_seconds:
    raise DemoError(f"{name}: {frames / sr:.1f} s is longer than the {limits.max_seconds:g} s limit")
  return path


def read_clip(predictor: Predictor, path: str | os.PathLike | None, limits: Limits) -> np.ndarray:
  """(time,) float32 at the model's rate, after `check_file`; DemoError for anything unusable."""
  path = check_file(path, limits)
  try:
    wave = load_audio(path, predictor.sample_rate, max_seconds=limits.max_seconds, silent="allow")
  except AudioError as err:
    raise DemoError(f"{display_name(path)}: {err.reason}") from err
  except Exception as err:  # a decoder failure not yet mapped to AudioError still gets a message
    raise DemoError(f"{display_name(path)}: cannot decode ({err})") from err
  return wave


# ----------------------------------------------------------------------------------------------------------------
# Classification
# ----------------------------------------------------------------------------------------------------------------
def analyse(predictor: Predictor, wave: np.ndarray, *, top_k: int = 5) -> Analysis:
  """Ranks a clip's labels (model classes, attached heads' classes and enrolled species) overall and per window.

  One forward pass over the windows: their average is exactly what `Predictor.classify` ranks (it averages the
  same windows), and each window is also ranked on its own for the timeline. The heads' classes
  (`inference.heads`) are scored from the same windows' embeddings, as predict scores them.
  """
  windows = predictor.windows(wave)
  starts = [int(s) for s in predictor.window_starts(wave.shape[0])]  # the rows of `windows`, in order
  probs, embs = predictor.analyse(list(windows))
  classes = model_classes(predictor)
  probs, labels = classes.extend(probs, embs), classes.labels
  store = predictor.species_store()
  species = store.load() if store is not None else {}
  sr, n = predictor.sample_rate, wave.shape[0]
  timeline = []
  if predictor.multi_label:
    # Independent detectors: the clip's scores are its windows' maxima (as predict pools them), and the
    # timeline lists every class detected in each window (or the best score, marked "-", where none is).
    detect = lambda p, e: enrol.detect(p, classes.thresholds, labels, e, species, classes.sources)  # noqa: E731
    ranking = detect(predictor.pool(probs), embs.mean(0))[:top_k]
    for start, p, e in zip(starts, probs, embs, strict=True):
      end = min(start + predictor.clip_samples, n)
      entries = detect(p, e)
      found = [r for r in entries if r["detected"]] or [{**entries[0], "label": f"- ({entries[0]['label']})"}]
      for r in found:
        timeline.append((round(start / sr, 2), round(end / sr, 2), r["label"], round(float(r["score"]), 3)))
    return Analysis(wave=wave, ranking=ranking, timeline=timeline)
  ranking = enrol.rank(probs.mean(0), labels, embs.mean(0), species, top_k=top_k, sources=classes.sources)
  for start, p, e in zip(starts, probs, embs, strict=True):
    best = enrol.rank(p, labels, e, species, top_k=1, sources=classes.sources)[0]
    end = min(start + predictor.clip_samples, n)
    timeline.append((round(start / sr, 2), round(end / sr, 2), best["label"], round(float(best["score"]), 3)))
  return Analysis(wave=wave, ranking=ranking, timeline=timeline)


def classify_file(predictor: Predictor, path: str | os.PathLike | None, limits: Limits) -> Analysis:
  """`read_clip` then `analyse`."""
  return analyse(predictor, read_clip(predictor, path, limits))


_FRAMEWISE_FORWARDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def framewise(predictor: Predictor, wave: np.ndarray) -> np.ndarray | None:
  """A decision-level model's framewise probabilities `(frames, classes)` over the whole clip, stitched from
  the model's windows as `predict --framewise` does (`inference.framewise_predict`); None for a model without
  a framewise head. The jitted forward is built once per predictor."""
  if not framewise_predict.has_framewise(predictor.config):
    return None
  if predictor not in _FRAMEWISE_FORWARDS:  # the value must not refer to the predictor (a weak key)
    _FRAMEWISE_FORWARDS[predictor] = jax.jit(framewise_predict.framewise_forward(predictor.config))
  fn = _FRAMEWISE_FORWARDS[predictor]
  return framewise_predict.wave_framewise(predictor, wave, lambda w: fn(predictor.variables, w))


def summary(ranking: list[dict]) -> str:
  """One line of Markdown on the top label of a ranking: where it comes from and how sure it is."""
  top = ranking[0]
  if "detected" in top:  # a multi-label model: independent probabilities, not a ranking that sums to 1
    found = [r["label"] for r in ranking if r["detected"]]
    if not found:
      return f"**nothing detected**: the highest score is {top['label']} at {top['score']:.2f}, below its threshold."
    return (
      "**detected**: " + ", ".join(found) + " (independent probabilities: several sounds may be present)."
    )
  if top["source"] == "unknown":
    return "**unknown**: no class of the model is confident and no enrolled species is close enough."
  if top["source"] == "enrolled":
    return (
      f"**{top['label']}** (enrolled species): distance {top['distance']:.3f} to its prototype, "
      f"threshold {top['threshold']:.3f}."
    )
  if top["source"] == "head":
    return f"**{top['label']}** (a class of a head trained by search): probability {top['score']:.2f}."
  return f"**{top['label']}** (one of the model's classes): probability {top['score']:.2f}."


# ----------------------------------------------------------------------------------------------------------------
# Enrolment
# ----------------------------------------------------------------------------------------------------------------
def enroll(
  predictor: Predictor,
  name: str,
  files: Sequence[str | os.PathLike] | None,
  limits: Limits,
  *,
  merge: bool = False,
) -> str:
  """Enrols `files` as species `name` in the model's store; returns a status line, DemoError on bad input."""
  files = [os.fspath(f) for f in files or []]
  if not (name or "").strip():
    raise DemoError("give the species a name")
  if not files:
    raise DemoError(f"enrolling {name.strip()!r} needs at least one audio clip")
  for f in files:
    check_file(f, limits)
  try:
    species = enrol.enroll(predictor, name, files, merge=merge)
  except AudioError as err:
    raise DemoError(f"{display_name(err.path)}: {err.reason}") from err
  except (ValueError, StoreError) as err:
    raise DemoError(str(err)) from err
  return (
    f"enrolled {species.name!r}: {species.num_clips} clip(s), threshold {species.threshold:.3f} "
    f"({species.threshold_source})"
  )


def remove(predictor: Predictor, name: str | None) -> str:
  """Removes an enrolled species; returns a status line."""
  if not name:
    raise DemoError("choose an enrolled species to remove")
  try:
    gone = enrol.remove_species(predictor, name)
  except StoreError as err:
    raise DemoError(str(err)) from err
  return f"removed {gone.name!r}"


SPECIES_HEADERS = ["species", "clips", "threshold", "calibration", "updated"]


def species_rows(predictor: Predictor) -> list[list]:
  """One row per enrolled species, `SPECIES_HEADERS` columns, in enrolment order."""
  return [
    [s["name"], s["clips"], round(float(s["threshold"]), 3), s["threshold_source"], s["updated"]]
    for s in enrol.list_species(predictor)
  ]


# ----------------------------------------------------------------------------------------------------------------
# About
# ----------------------------------------------------------------------------------------------------------------
def _find(predictor: Predictor, name: str) -> pathlib.Path | None:
  if predictor.path is None:
    return None
  path = predictor.path / name
  return path if path.is_file() else None


def metrics(predictor: Predictor) -> dict | None:
  """The bundle's evaluation metrics (`metrics.json`), or None."""
  path = _find(predictor, "metrics.json")
  if path is None:
    return None
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def confusion_matrix_png(predictor: Predictor) -> str | None:
  """The bundle's confusion-matrix chart, or None."""
  path = _find(predictor, "confusion_matrix.png")
  return None if path is None else str(path)


def about_markdown(predictor: Predictor) -> str:
  """The model card: architecture, size, classes, sample rate, window and evaluation metrics."""
  import jax

  enc = predictor.config.encoder
  kind = getattr(enc, "variant", None) or type(enc).__name__.removesuffix("Config")
  params = sum(int(np.size(x)) for x in jax.tree.leaves(predictor.variables.get("params", {})))
  lines = [
    f"**Model**: {kind} ({params:,} parameters), embedding size {predictor.embed_dim}, "
    f"fingerprint `{predictor.fingerprint}`",
    f"**Folder**: `{predictor.path}`" if predictor.path else "**Folder**: none (in-memory model)",
    f"**Sample rate**: {predictor.sample_rate} Hz; "
    f"window {predictor.clip_samples / predictor.sample_rate:g} s "
    "(longer recordings are classified window by window and averaged)",
    f"**Classes** ({len(predictor.labels)}): " + ", ".join(predictor.labels),
  ]
  heads = model_classes(predictor).heads
  if heads:
    lines.append("**Attached heads**: " + "; ".join(f"{a.name} ({', '.join(a.classes)})" for a in heads))
  m = metrics(predictor)
  if m:
    keys = [
      k for k in ("accuracy", "macro_f1", "weighted_f1", "mAP", "loss") if isinstance(m.get(k), int | float)
    ]
    split = f" on {m['split']}" if isinstance(m.get("split"), str) else ""
    lines.append(f"**Evaluation**{split}: " + ", ".join(f"{k} {m[k]:.4f}" for k in keys))
  else:
    lines.append("**Evaluation**: no metrics.json in this bundle")
  return "\n\n".join(lines)
