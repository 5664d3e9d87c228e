"""Pack a `Source` into a TFDS dataset folder of TFRecord (or ArrayRecord) shards.

`pack(source, out_dir)` decodes every clip in worker processes (ordered, so the output is deterministic),
cuts windows if asked, lets TFDS serialize and shard the records (`animaljax.data.tfds_builder`), and leaves
in `out_dir`:

  dataset_info.json, features.json, metadata.json   TFDS metadata: `tfds.builder_from_directory(out_dir)`
  {name}-{split}.{file_format}-{i:05d}-of-{n:05d}   the shards (records as in `animaljax.data.records`)
  rejected.csv                                      `path,reason` of every file that failed (header if none)
  summary.json                                      counts per split and class; written last

Atomicity: everything is built in a hidden sibling `.{out_dir.name}.incomplete/` and renamed into place in one
step, so `out_dir` is either absent or complete; a killed run leaves only that sibling, which the next run
deletes before starting again. Output shards are a pure function of the source and the settings (TFDS's key
hash shuffle, deterministic proto serialization), so a re-run writes byte-identical shards.

Windowing (`clip_mode="window"`): windows of `window_seconds` every `hop_seconds` (default: no overlap) while
a full window fits; then one last, shorter window from the next hop if it holds at least `min_window_seconds`
(default half a window). Windows are not zero-padded here: the loader pads or crops to its clip length. A clip
shorter than `min_window_seconds` is rejected with that reason.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime
import hashlib
import itertools
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from animaljax.data import decoding, tfds_builder
from animaljax.data.sources.base import Example, Source

FILE_FORMATS = ("tfrecord", "array_record")
CLIP_MODES = ("keep", "window")
# The split order in the output (and in the decode queue); any other split name follows, sorted.
SPLIT_ORDER = ("train", "validation", "test", "fold1", "fold2", "fold3", "fold4", "fold5", "noise")
UNLABELLED_KEY = "<unlabelled>"  # per_class key for label -1 (noise, unlabelled corpora)


@dataclasses.dataclass(frozen=True)
class _Settings:
  """Everything that changes the shards; its hash decides whether an existing pack can be reused."""

  name: str
  sample_rate: int
  clip_mode: str
  window_seconds: float | None
  hop_seconds: float | None
  min_window_seconds: float | None
  file_format: str
  max_seconds: float | None
  silent: str
  shard_size_mb: float


# ---------------------------------------------------------------- windows


def window_starts(num_samples: int, window: int, hop: int, min_window: int) -> list[int]:
  """Start samples of the windows cut from a clip of `num_samples` (see the module docstring).

  Returns an empty list when the clip is shorter than `min_window`.
  """
  if num_samples < min_window:
    return []
  if num_samples <= window:
    return [0]
  starts = list(range(0, num_samples - window + 1, hop))
  last = starts[-1] + hop
  if last < num_samples and num_samples - last >= min_window:
    starts.append(last)
  return starts


def _too_short(seconds: float, min_window_seconds: float) -> str:
  return f"too short for a window: {seconds:.2f} s < {min_window_seconds:g} s"


# ---------------------------------------------------------------- pack


def _split_sort_key(split: str) -> tuple[int, str]:
  return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def _fingerprint(source: Source, examples: Sequence[Example], settings: _Settings) -> str:
  h = hashlib.sha256()
  h.update(json.dumps([source.name, list(source.class_names), dataclasses.asdict(settings)]).encode())
  for e in examples:
    try:  # an edited or replaced file makes a new pack; generated clips (synthetic://) have no stat
      st = os.stat(e.path)
      stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
      stamp = None
    h.update(json.dumps([e.path, e.label, e.label_name, e.split, e.fold, stamp]).encode())
  return h.hexdigest()


def _read_summary(out_dir: pathlib.Path) -> dict[str, Any] | None:
  try:
    return json.loads((out_dir / "summary.json").read_text())
  except (OSError, ValueError):
    return None


def pack(
  source: Source,
  out_dir: str | os.PathLike,
  *,
  sample_rate: int = 32000,
  clip_mode: str = "keep",
  window_seconds: float = 5.0,
  hop_seconds: float | None = None,
  min_window_seconds: float | None = None,
  workers: int | None = None,
  file_format: str = "tfrecord",
  max_seconds: float | None = 3600.0,
  silent: str = "warn",
  shard_size_mb: float = 256.0,
  name: str = "animal_sounds",
  progress: bool = True,
  overwrite: bool = False,
) -> dict[str, Any]:
  """Decodes, windows and writes `source` as a TFDS dataset in `out_dir`; returns the summary.

  Args:
    source: lists the clips and decodes one (`Source.load`); must be picklable.
    out_dir: becomes the dataset folder itself (not `out_dir/name/version`).
    sample_rate: every clip is resampled to this rate (Hz) and stored as int16.
    clip_mode: "keep" stores each clip whole; "window" cuts `window_seconds` windows every `hop_seconds`.
    window_seconds, hop_seconds, min_window_seconds: window length, hop (default = window) and the shortest
      last window kept (default = half a window); used only in window mode.
    workers: decode processes (default `os.cpu_count()`); 0 decodes in this process.
    file_format: "tfrecord" (needs TensorFlow) or "array_record" (random access, no TensorFlow).
    max_seconds: reject longer files (None = no limit).
    silent: all-zero clips: "warn" (keep, report), "reject" or "allow".
    shard_size_mb: upper bound of one shard in MiB.
    name: dataset name, the prefix of the shard files.
    progress: show a tqdm bar (clips/s) and print the summary.
    overwrite: rebuild even if `out_dir` holds a finished pack with the same settings, or replace a
      different pack. Without it, an identical pack is reused and anything else in `out_dir` is an error.
  Returns:
    The dict also written to `summary.json` (see the module docstring; `splits[s]["per_class"]` counts
    records per class name, `"<unlabelled>"` for label -1; `seconds` is the stored audio).
  """
  if clip_mode not in CLIP_MODES:
    raise ValueError(f"clip_mode must be one of {CLIP_MODES}, got {clip_mode!r}")
  if file_format not in FILE_FORMATS:
    raise ValueError(f"file_format must be one of {FILE_FORMATS}, got {file_format!r}")
  windowed = clip_mode == "window"
  if windowed and not window_seconds > 0:
    raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
  hop_seconds = (hop_seconds or window_seconds) if windowed else None
  if windowed and min_window_seconds is None:
    min_window_seconds = window_seconds / 2
  settings = _Settings(
    name=name,
    sample_rate=int(sample_rate),
    clip_mode=clip_mode,
    window_seconds=float(window_seconds) if windowed else None,
    hop_seconds=float(hop_seconds) if windowed else None,
    min_window_seconds=float(min_window_seconds) if windowed else None,
    file_format=file_format,
    max_seconds=max_seconds,
    silent=silent,
    shard_size_mb=float(shard_size_mb),
  )
  out_dir = pathlib.Path(out_dir).absolute()
  say = print if progress else (lambda *a, **k: None)

  examples = sorted(source.examples(), key=lambda e: _split_sort_key(e.split))  # stable: keeps source order
  if not examples:
    raise ValueError(f"source {source.name!r} lists no examples")
  fingerprint = _fingerprint(source, examples, settings)
  if out_dir.exists() and any(out_dir.iterdir()):
    old = _read_summary(out_dir)
    if old is not None and old.get("fingerprint") == fingerprint and not overwrite:
      say(f"{out_dir} already holds this pack (same source and settings); nothing to do (overwrite to redo).")
      return old
    if not overwrite:
      what = "a different pack" if old is not None else "files that are not a finished pack"
      raise FileExistsError(f"{out_dir} holds {what}; pass overwrite=True (--overwrite) to replace it")

  scratch = out_dir.parent / f".{out_dir.name}.incomplete"
  shutil.rmtree(scratch, ignore_errors=True)  # a killed run's leftovers
  scratch.mkdir(parents=True)

  by_split: dict[str, list[Example]] = {}
  for e in examples:
    by_split.setdefault(e.split, []).append(e)
  validation = {"max_seconds": max_seconds, "silent": silent}
  rejected: list[tuple[str, str]] = []
  warned: list[str] = []
  stats = {s: {"num_examples": 0, "per_class": collections.Counter(), "samples": 0} for s in by_split}

  from tqdm.auto import tqdm

  bar = tqdm(
    total=len(examples), unit="clip", desc=f"packing {source.name}", disable=not progress, file=sys.stderr
  )
  sr = settings.sample_rate
  win = hop = min_win = 0
  if windowed:
    win, hop = round(window_seconds * sr), max(1, round(hop_seconds * sr))
    min_win = max(1, round(min_window_seconds * sr))

  def check(result: decoding.Result) -> tuple[np.ndarray | None, str, list[int]]:
    """`(audio or None, reason, window starts)` of a decoded clip; too short for a window = rejected."""
    audio, reason, _ = result
    if audio is None or not windowed:
      return audio, reason, [0]
    starts = window_starts(audio.shape[0], win, hop, min_win)
    if not starts:
      return None, _too_short(audio.shape[0] / sr, min_window_seconds), []
    return audio, reason, starts

  def split_records(split: str, count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Pulls the next `count` decoded clips (all of `split`, by the queue order) and yields their records."""
    for index in range(count):
      example, result = next(decoded)
      bar.update(1)
      warned.extend(result[2])
      audio, reason, starts = check(result)
      if audio is None:
        rejected.append((example.path, reason))
        if progress:
          bar.write(f"rejected {example.path}: {reason}", file=sys.stderr)
        continue
      duration = audio.shape[0] / sr
      for start in starts:
        piece = audio[start : start + win] if windowed else audio
        st = stats[split]
        st["num_examples"] += 1
        st["per_class"][example.label_name or UNLABELLED_KEY] += 1
        st["samples"] += piece.shape[0]
        yield f"{index:09d}/{start:012d}", tfds_builder.record_dict(piece, example, start / sr, duration)

  workers = (os.cpu_count() or 1) if workers is None else workers
  decoder = decoding.OrderedDecoder(source, sr, validation, min(workers, len(examples)))
  try:
    for split, failures in _all_bad_splits(decoder, by_split, check).items():
      rejected.extend(failures)
      bar.update(len(failures))
      say(f"split {split!r} dropped: every one of its {len(failures)} file(s) was rejected")
      del by_split[split], stats[split]
    splits = sorted(by_split, key=_split_sort_key)
    if not splits:
      reasons = "; ".join(f"{p}: {r}" for p, r in rejected[:3])
      raise ValueError(f"all {len(rejected)} files of {source.name!r} were rejected ({reasons} ...)")
    pending = decoder.imap([e for split in splits for e in by_split[split]])
    # Start decoding now: the first chunks decode while TFDS imports TensorFlow (~7 s) in this process.
    decoded = itertools.chain([next(pending)], pending)
    description = (
      f"{source.name} clips as int16 mono at {sr} Hz "
      + (f"in {window_seconds:g} s windows every {hop_seconds:g} s." if windowed else "(whole clips).")
      + f" Classes: {', '.join(source.class_names) or 'none'}."
    )
    built = tfds_builder.build(
      name=name,
      data_dir=scratch,
      split_examples={s: split_records(s, len(by_split[s])) for s in splits},
      file_format=file_format,
      metadata={
        "class_names": list(source.class_names),
        "sample_rate": sr,
        "clip_mode": clip_mode,
        "window_seconds": settings.window_seconds,
        "hop_seconds": settings.hop_seconds,
        "source": source.name,
      },
      description=description,
      shard_size_mb=shard_size_mb,
    )
  except BaseException:
    decoder.close(kill=True)
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  finally:
    bar.close()
  decoder.close()

  with open(built / "rejected.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "reason"])
    writer.writerows(rejected)
  import tensorflow_datasets as tfds

  info = tfds.builder_from_directory(str(built)).info
  summary = {
    "name": name,
    "version": tfds_builder.VERSION,
    "source": source.name,
    "file_format": file_format,
    "sample_rate": sr,
    "class_names": list(source.class_names),
    "num_classes": len(source.class_names),
    "clip_mode": clip_mode,
    "window_seconds": settings.window_seconds,
    "hop_seconds": settings.hop_seconds,
    "splits": {
      s: {
        "num_examples": stats[s]["num_examples"],
        "num_shards": info.splits[s].num_shards,
        "per_class": dict(sorted(stats[s]["per_class"].items())),
        "seconds": round(stats[s]["samples"] / sr, 3),
      }
      for s in splits
      if s in info.splits
    },
    "num_rejected": len(rejected),
    "num_warnings": len(warned),
    "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "settings": dataclasses.asdict(settings),
    "fingerprint": fingerprint,
  }
  (built / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
  _move_into_place(built, out_dir)
  shutil.rmtree(scratch, ignore_errors=True)
  if progress:
    _print_summary(summary, rejected, warned, out_dir)
  return summary


def _all_bad_splits(decoder: decoding.OrderedDecoder, by_split: dict[str, list[Example]], check) -> dict:
  """Splits in which every clip is rejected -> their `(path, reason)` list.

  TFDS refuses a split without records, and splits are written one after another, so this must be known
  before the build starts. Each round decodes (in the pool) the next clip of every split not yet known to
  have a usable one: normally a single round of one clip per split.
  """
  failures: dict[str, list[tuple[str, str]]] = {s: [] for s in by_split}
  unresolved = list(by_split)
  while unresolved:
    batch = [by_split[s][len(failures[s])] for s in unresolved]
    still = []
    for split, (example, result) in zip(unresolved, decoder.imap(batch), strict=True):
      audio, reason, _ = check(result)
      if audio is None:
        failures[split].append((example.path, reason))
        if len(failures[split]) < len(by_split[split]):
          still.append(split)
    unresolved = still
  return {s: f for s, f in failures.items() if len(f) == len(by_split[s])}


def _move_into_place(built: pathlib.Path, out_dir: pathlib.Path) -> None:
  """Renames the finished folder to `out_dir` (replacing an old pack) so readers never see a partial one."""
  if out_dir.exists() and not any(out_dir.iterdir()):
    out_dir.rmdir()
  if out_dir.exists():
    trash = out_dir.parent / f".{out_dir.name}.old"
    shutil.rmtree(trash, ignore_errors=True)
    out_dir.rename(trash)
    built.rename(out_dir)
    shutil.rmtree(trash, ignore_errors=True)
  else:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    built.rename(out_dir)


def _print_summary(summary: dict[str, Any], rejected, warned, out_dir: pathlib.Path) -> None:
  print(f"\npacked {summary['source']} -> {out_dir} ({summary['file_format']}, {summary['sample_rate']} Hz)")
  for split, s in summary["splits"].items():
    counts = ", ".join(f"{k}={v}" for k, v in s["per_class"].items())
    print(
      f"  {split:>10}: {s['num_examples']:6d} records, {s['seconds']:9.1f} s, {s['num_shards']} shard(s): {counts}"
    )
  print(f"  rejected: {len(rejected)} file(s) (rejected.csv)")
  for path, reason in rejected:
    print(f"    {path}: {reason}")
  for message in warned[:20]:
    print(f"  warning: {message}")
  if len(warned) > 20:
    print(f"  ... {len(warned) - 20} more warnings")
