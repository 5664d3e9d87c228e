"""What both packers (`animaljax.data.packing`'s local one and `animaljax.data.beam_pack`) decide the same way.

One copy of every rule that fixes the bytes of a pack, so that the Beam pipeline cannot drift from the local
packer: the split order, the fingerprint, which windows a decoded clip gives (and why a clip is too short),
the records' keys and feature dicts, the per-split counts of `summary.json`, and the order of a carved pack.
Pure functions over `sources.base.Example`s and decoded lengths; no TFDS, TensorFlow or Beam import.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from animaljax.audio.windows import pack_window_starts
from animaljax.data import duplicates, tfds_builder
from animaljax.data.pack_settings import PackSettings
from animaljax.data.sources.base import Example, Source, window_labels
from animaljax.data.sources.splits import carve_examples

# The split order in the output (and in the decode queue); any other split name follows, sorted.
SPLIT_ORDER = ("train", "validation", "test", "fold1", "fold2", "fold3", "fold4", "fold5", "noise")
UNLABELLED_KEY = "<unlabelled>"  # per_class key for label -1 (noise, unlabelled corpora)


def split_sort_key(split: str) -> tuple[int, str]:
  return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def fingerprint(
  source: Source,
  examples: Sequence[Example],
  settings: PackSettings,
  listed_rejects: Sequence[tuple[str, str]],
) -> str:
  """The pack's identity: the source's listing (with file sizes and times) and every setting."""
  h = hashlib.sha256()
  h.update(json.dumps([source.name, list(source.class_names), dataclasses.asdict(settings)]).encode())
  h.update(json.dumps(source.split_settings(), sort_keys=True).encode())  # group_by: a new grouping repacks
  if listed_rejects:  # only when there are any: packs made before sources could reject keep their fingerprint
    h.update(json.dumps(list(listed_rejects)).encode())
  for e in examples:
    try:  # an edited or replaced file makes a new pack; generated clips (synthetic://) have no stat
      st = os.stat(e.path)
      stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
      stamp = None
    row = [e.path, e.label, e.label_name, e.split, e.fold, e.group, e.carve, stamp]
    if e.labels or e.events:  # only then: single-label packs keep the fingerprints they had
      row += [list(e.labels), [list(ev) for ev in e.events]]
    if e.segment is not None:  # likewise: only a segment adds to the row
      row += [list(e.segment)]
    h.update(json.dumps(row).encode())
  return h.hexdigest()


def warning_reason(path: str, message: str) -> str:
  """A decode warning without the leading `path: ` that `load_audio` puts in it (warnings.csv has a path column)."""
  return message.removeprefix(f"{path}: ")


@dataclasses.dataclass(frozen=True)
class Windowing:
  """The clip rule of a pack in samples: whole clips (`windowed` False) or `pack_window_starts` windows."""

  sample_rate: int
  windowed: bool
  win: int = 0
  hop: int = 0
  min_win: int = 0
  min_window_seconds: float = 0.0

  @classmethod
  def of(cls, settings: PackSettings) -> Windowing:
    sr = settings.sample_rate
    if settings.clip_mode != "window":
      return cls(sr, False)
    return cls(
      sr, True, max(1, round(settings.window_seconds * sr)), max(1, round(settings.hop_seconds * sr)),
      max(1, round(settings.min_window_seconds * sr)), settings.min_window_seconds,
    )  # fmt: skip

  def starts(self, num_samples: int) -> tuple[list[int], str]:
    """`(window starts, "")` of a decoded clip of `num_samples`, or `([], reason)` when too short for one."""
    if not self.windowed:
      return [0], ""
    starts = pack_window_starts(
      num_samples, self.win, self.hop, self.min_win
    ).tolist()  # ints: keys as before
    if not starts:
      seconds = num_samples / self.sample_rate
      return [], f"too short for a window: {seconds:.2f} s < {self.min_window_seconds:g} s"
    return starts, ""


class Window(NamedTuple):
  """One record of a clip: `audio[start : start + length]` with its labels (`label_name` None: the clip's)."""

  start: int
  length: int
  labels: tuple[int, ...]
  label_name: str | None


def clip_windows(
  example: Example, num_samples: int, starts: Sequence[int], windowing: Windowing, source: Source
) -> list[Window]:
  """The records of a clip of `num_samples` decoded samples; an annotated one labelled window by window."""
  sr, offset = windowing.sample_rate, (example.segment[0] if example.segment else 0.0)
  out = []
  for start in starts:
    length = min(windowing.win, num_samples - start) if windowing.windowed else num_samples
    labels, name = example.label_set(), None
    if example.events:  # an annotated recording: this window's classes from the boxes it overlaps
      end = offset + (start + length) / sr
      labels = window_labels(example.events, offset + start / sr, end, source.min_overlap_seconds)
      name = ";".join(source.class_names[c] for c in labels)
    out.append(Window(start, length, tuple(labels), name))
  return out


def new_stats() -> dict[str, Any]:
  import collections

  return {"num_examples": 0, "per_class": collections.Counter(), "samples": 0}


def count(stats: dict[str, Any], example: Example, window: Window, source: Source) -> None:
  """Adds one record to its split's `stats` (`new_stats`): the counts of `summary.json`."""
  stats["num_examples"] += 1
  if source.multi_label:
    stats["per_class"].update([source.class_names[c] for c in window.labels] or [UNLABELLED_KEY])
  else:
    stats["per_class"][example.label_name or UNLABELLED_KEY] += 1
  stats["samples"] += window.length


def clip_records(
  example: Example, audio: np.ndarray, index: int, windows: Sequence[Window], sample_rate: int
) -> Iterator[tuple[str, dict[str, Any]]]:
  """`(key, feature dict)` of each window of the `index`-th clip of its split (keys unique in the split)."""
  duration = audio.shape[0] / sample_rate
  offset = example.segment[0] if example.segment else 0.0  # records keep times in the file's time
  for w in windows:
    piece = audio[w.start : w.start + w.length]
    yield (
      f"{index:09d}/{w.start:012d}",
      tfds_builder.record_dict(
        piece, example, offset + w.start / sample_rate, duration, labels=w.labels, label_name=w.label_name
      ),
    )


def carved_order(source: Source, examples: Sequence[Example], digests: dict[str, str]) -> list[Example]:
  """The examples with carved splits assigned (duplicates and groups kept together) in the packing order;
  `digests` maps every `Example.key` to its clip's digest ("" for a clip that failed to decode, which keeps
  its listed split and is not counted in the carve)."""
  failed = [e for e in examples if not digests[e.key]]
  carved = carve_examples([e for e in examples if digests[e.key]], source.carves, duplicates.links(digests))
  return sorted(carved + failed, key=lambda e: (split_sort_key(e.split), e.path, e.segment or ()))
