"""What every source hands the packer: a list of `Example`s plus a way to decode one.

A source only *lists* clips; decoding happens in the packer's worker processes through `Source.load`, so a
source object must be picklable (plain attributes, no open files).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import warnings
from typing import Any

import numpy as np

from animaljax.audio import io as audio_io
from animaljax.data.sources.splits import SPLITS, Carve, check_split_ratios, stratified_split

__all__ = [
  "SPLITS", "UNLABELLED", "Carve", "Example", "Source", "check_split_ratios", "load_segment", "stratified_split",
  "window_labels",
]  # fmt: skip

# Label id of examples that carry no class (the `noise` split, unlabelled folders for SimCLR).
UNLABELLED = -1


@dataclasses.dataclass(frozen=True)
class Example:
  """One clip to pack.

  Attributes:
    path: the file it comes from (or a `synthetic://...` id for generated clips); kept in the record.
    label: class id in `0..num_classes-1`, or `UNLABELLED`.
    label_name: the class name (`""` when unlabelled).
    split: TFDS split name: `train`, `validation`, `test`, `noise`, or `fold1`..`foldN` for ESC-50.
    fold: ESC-50 fold number (1-based), 0 when the corpus has no folds.
    group: the source recording it was cut from ("" = unknown: a group of its own); clips of one group never
      land in two carved splits (`animaljax.data.sources.splits`).
    carve: "" when the layout fixes `split`; else the name of the `Source.carves` entry that decides it (then
      `split` is provisional: the packer decides it again once it knows the exact duplicates).
    labels: multi-label corpora: every class id present in the clip (sorted, unique); `label` is then the first
      one (or `UNLABELLED` for a clip with none: a negative). Empty for single-label corpora (see `label_set`).
    events: annotated recordings: `(begin_s, end_s, class id)` boxes in the file's time; the packer derives each
      window's `labels` from them (`window_labels`, with the source's `min_overlap_seconds`).
    stratum: the class a carved clip is stratified by ("" = `label_name`): a multi-label source names one
      class of the set (the raven source: the rarest), since each distinct set would be a stratum of its own.
    segment: `(start_s, end_s)` to cut from the file (a csv manifest's `start_s,end_s` columns), None for the
      whole file. `Source.load` cuts it after decoding, in samples at the pack's rate; the records keep `path`
      (the file) and store `start_s` in the file's time, so windows and predictions point into the original
      file. Several examples may share a `path` this way: the packer tells them apart by `key`.
  """

  path: str
  label: int
  label_name: str
  split: str
  fold: int = 0
  group: str = ""
  carve: str = ""
  labels: tuple[int, ...] = ()
  events: tuple[tuple[float, float, int], ...] = ()
  stratum: str = ""
  segment: tuple[float, float] | None = None

  @property
  def key(self) -> str:
    """What identifies the clip among a source's examples: `path`, or `path@start-end` (seconds, 6 decimals)
    for a segment. The packer keys decoded clips, digests, duplicates and carved splits by it."""
    if self.segment is None:
      return self.path
    start, end = self.segment
    return f"{self.path}@{start:.6f}-{end:.6f}"

  def label_set(self) -> tuple[int, ...]:
    """The clip's class ids: `labels` when given, else `(label,)`, or `()` for an unlabelled clip."""
    if self.labels or self.events:
      return tuple(self.labels) if self.labels else tuple(sorted({c for _, _, c in self.events}))
    return (self.label,) if self.label >= 0 else ()


def window_labels(
  events: tuple[tuple[float, float, int], ...], start_s: float, end_s: float, min_overlap_s: float
) -> tuple[int, ...]:
  """The classes on in the window `[start_s, end_s)`: those with a box overlapping it by at least `min_overlap_s`
  seconds, or by the whole box when the box is shorter than that (a short call inside the window counts), or
  covering the whole window when the window is shorter (a window inside a long call counts).
  A box touching the window only at an edge (zero overlap) never counts."""
  on = set()
  for begin, end, cls in events:
    overlap = min(end, end_s) - max(begin, start_s)
    if overlap > 0 and overlap >= min(min_overlap_s, end - begin, end_s - start_s) - 1e-9:
      on.add(int(cls))
  return tuple(sorted(on))


class Source(abc.ABC):
  """Base class: subclasses set `name` and `class_names` and implement `examples()`.

  `load` decodes a file with `animaljax.audio.io.load_audio`; the synthetic source overrides it to generate
  the clip instead. Both return float32 mono in [-1, 1] at `sample_rate` or raise `AudioError`.

  Attributes:
    name: the source's name in the pack's metadata.
    class_names: label id -> class name.
    class_ids: label id -> the corpus's own id of the class (AudioSet's ontology ids), or empty when the names
      are all there is; the pack keeps them in its metadata and summary.
    carves: `Example.carve` -> the `Carve` (splits, ratios, seed) that divides those clips; empty when the
      layout fixes every split.
    rejected: `(path, reason)` of what the listing itself refused (a folder link that would list clips twice,
      a folder named like an audio file, ...); the packer writes them to `rejected.csv` with the files that
      failed to decode, so nothing the user gave disappears without a word.
  """

  name: str = "source"
  class_names: tuple[str, ...] = ()
  class_ids: tuple[str, ...] = ()
  multi_label: bool = False  # records carry label sets (`Example.labels` / `events`); the pack says so
  min_overlap_seconds: float = 0.0  # `window_labels`: overlap a box needs to switch a window's class on
  rejected: tuple[tuple[str, str], ...] = ()
  carves: dict[str, Carve] = {}  # never mutated: a source that carves sets its own

  def locations(self) -> tuple[str, ...]:
    """The folders and files the source reads besides its clips (a corpus root, a manifest).

    The packer refuses an output folder that holds any of them or any listed clip: replacing it would
    delete the corpus.
    """
    return ()

  def split_settings(self) -> dict[str, Any]:
    """What decides the splits besides the listing (`group_by`, seed, ratios), for the pack's fingerprint and
    `summary.json`; JSON-serialisable."""
    return {}

  @abc.abstractmethod
  def examples(self) -> list[Example]:
    """Every clip of the corpus, sorted deterministically (by split, then path)."""

  def load(self, example: Example, sample_rate: int, **validation) -> np.ndarray:
    if example.segment is not None:
      return load_segment(example.path, example.segment, sample_rate, **validation)
    return audio_io.load_audio(example.path, sample_rate, **validation)


# The file decoded last for a segment, in this process: a source lists the segments of one file together, so
# the next one mostly cuts from it instead of decoding a long recording once per segment.
_LAST_FILE: dict[tuple, np.ndarray] = {}


def load_segment(
  path: str,
  segment: tuple[float, float],
  sample_rate: int,
  *,
  max_seconds: float | None = 3600.0,
  silent: str = "warn",
) -> np.ndarray:
  """`segment = (start_s, end_s)` of the file at `path`: decoded whole at `sample_rate` (`load_audio`), then
  samples `round(start_s * sample_rate)` up to `round(end_s * sample_rate)`.

  `max_seconds` bounds the file (it is decoded whole); `silent` applies to the segment. An end up to one sample
  past the file's end is clamped to it (resampling rounds the length); further is an error.

  Returns:
    float32 `(samples,)` in [-1, 1].
  Raises:
    AudioError: the file fails `load_audio`, the segment is empty or ends after the file, or it is silent with
      `silent="reject"`.
  """
  start_s, end_s = segment
  st = os.stat(path) if os.path.exists(path) else None
  cache_key = (path, sample_rate, max_seconds, st and (st.st_size, st.st_mtime_ns))
  audio = _LAST_FILE.get(cache_key)
  if audio is None:
    _LAST_FILE.clear()  # before decoding: never two long files in memory
    audio = audio_io.load_audio(path, sample_rate, max_seconds=max_seconds, silent="allow")
    _LAST_FILE[cache_key] = audio
  start, stop = round(start_s * sample_rate), round(end_s * sample_rate)
  n = audio.shape[0]
  if stop > n + 1:
    raise audio_io.AudioError(
      path, f"segment {start_s:g}-{end_s:g} s ends after the end of the file ({n / sample_rate:.3f} s)"
    )
  piece = audio[start : min(stop, n)].copy()
  if piece.shape[0] == 0:
    raise audio_io.AudioError(path, f"segment {start_s:g}-{end_s:g} s holds no sample at {sample_rate} Hz")
  if silent != "allow" and not piece.any():
    if silent == "reject":
      raise audio_io.AudioError(path, f"segment {start_s:g}-{end_s:g} s is silent (all samples are zero)")
    warnings.warn(f"{path}: segment {start_s:g}-{end_s:g} s is silent (all samples are zero)", stacklevel=2)
  return piece
