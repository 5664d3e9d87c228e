"""Sound events from a decision-level model's framewise output: threshold -> runs -> merge -> minimum duration.

`events(framewise, frame_seconds, labels, ...)` turns `(frames, classes)` probabilities (a model's
`out["framewise"]`, at its front end's frame rate: 10 ms for the PANNs presets) into
`Event(onset_s, offset_s, label, peak)` rows: per class, every run of consecutive frames whose probability
reaches the class's threshold; runs separated by fewer than `merge_gap_s` seconds of frames below it are joined;
runs shorter than `min_duration_s` are dropped. Frame i covers [i, i + 1) * frame_seconds, so a run of frames
a..b (inclusive) is the event [a * frame_seconds, (b + 1) * frame_seconds). Pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Event(NamedTuple):
  onset_s: float
  offset_s: float
  label: str
  peak: float


def _runs(on: np.ndarray) -> list[tuple[int, int]]:
  """Half-open `[start, stop)` frame ranges where `on` (bool (frames,)) is True."""
  edges = np.diff(np.concatenate([[0], on.astype(np.int8), [0]]))
  return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def events(
  framewise: np.ndarray,
  frame_seconds: float,
  labels: Sequence[str],
  *,
  thresholds: float | Sequence[float | None] | np.ndarray = 0.5,
  min_duration_s: float = 0.0,
  merge_gap_s: float = 0.0,
  offset_s: float = 0.0,
) -> list[Event]:
  """Events of one recording, sorted by onset then label.

  Args:
    framewise: `(frames, classes)` probabilities; frame_seconds: the hop between frames.
    labels: class names (classes); thresholds: one for all, or per class (None or inf: the class never fires).
    min_duration_s: drop events shorter than this; merge_gap_s: join runs whose gap is shorter than this.
    offset_s: added to every time (the recording's start within a longer file).
  """
  probs = np.asarray(framewise, np.float64)
  if probs.ndim != 2 or probs.shape[1] != len(labels):
    raise ValueError(f"framewise must be (frames, {len(labels)}), got {probs.shape}")
  if frame_seconds <= 0:
    raise ValueError(f"frame_seconds must be positive, got {frame_seconds}")
  th = np.broadcast_to(
    np.asarray([np.inf if t is None else t for t in np.atleast_1d(thresholds)], np.float64), (len(labels),)
  )
  gap = merge_gap_s / frame_seconds
  out = []
  for c, label in enumerate(labels):
    runs: list[list[int]] = []
    for start, stop in _runs(probs[:, c] >= th[c]):
      if runs and start - runs[-1][1] < gap - 1e-9:
        runs[-1][1] = stop
      else:
        runs.append([start, stop])
    for start, stop in runs:
      if (stop - start) * frame_seconds + 1e-9 < min_duration_s:
        continue
      peak = float(probs[start:stop, c].max())
      out.append(Event(offset_s + start * frame_seconds, offset_s + stop * frame_seconds, label, peak))
  return sorted(out, key=lambda e: (e.onset_s, e.label))
