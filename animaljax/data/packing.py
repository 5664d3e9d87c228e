"""Pack a `Source` into a TFDS dataset folder of TFRecord (or ArrayRecord) shards.

`pack(source, out_dir)` decodes every clip in worker processes (ordered, so the output is deterministic),
cuts windows if asked, lets TFDS serialize and shard the records (`animaljax.data.tfds_builder`), and leaves
in `out_dir`:

  dataset_info.json, features.json, metadata.json   TFDS metadata: `tfds.builder_from_directory(out_dir)`
  {name}-{split}.{file_format}-{i:05d}-of-{n:05d}   the shards (records as in `animaljax.data.records`)
  rejected.csv                                      `path,reason` of every file the source refused to list
                                                    (`Source.rejected`) or that failed to decode (header if none)
  warnings.csv                                      `path,reason` of every clip kept with a warning (silent,
                                                    all samples zero, with `silent="warn"`; header if none)
  summary.json                                      counts per split and class; written last

Atomicity: everything is built in a hidden sibling `.{out_dir.name}.incomplete/` (holding a marker file,
`.animaljax-pack-scratch`) and renamed into place in one step, so `out_dir` is either absent or complete; a
killed run leaves only that sibling, which the next run deletes before starting again. Output shards are a
pure function of the source and the settings (TFDS's key hash shuffle, deterministic proto serialization),
so a re-run writes byte-identical shards.

Nothing but a pack is deleted: an existing `out_dir` is replaced only with `overwrite=True` and only when it is
a finished pack (its `summary.json` beside TFDS's `dataset_info.json` and `features.json`, and no file that a
pack or the loader does not write); a folder that holds the source (its root, manifest or any listed clip) is
refused even with `overwrite`, and so is any other non-empty folder. A scratch folder without the marker is
not ours, so it is refused rather than deleted. Every setting is checked (`validate_settings`) before the disk
is touched.

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
import math
import numbers
import os
import pathlib
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from animaljax.data import decoding, tfds_builder
from animaljax.data.shard_source import INDEX_FILE
from animaljax.data.sources.base import Example, Source

FILE_FORMATS = ("tfrecord", "array_record")
CLIP_MODES = ("keep", "window")
# The split order in the output (and in the decode queue); any other split name follows, sorted.
SPLIT_ORDER = ("train", "validation", "test", "fold1", "fold2", "fold3", "fold4", "fold5", "noise")
UNLABELLED_KEY = "<unlabelled>"  # per_class key for label -1 (noise, unlabelled corpora)
SILENT_MODES = ("warn", "reject", "allow")
# Rates outside this range are typos (32 for 32000, 3200000): no recorder or model works there.
SAMPLE_RATE_RANGE = (1000, 768_000)
# Windows overlap at most this many times (hop >= window / MAX_OVERLAP): a tiny hop multiplies the stored audio
# (a hop of one sample writes every sample 160,000 times for 5 s windows at 32 kHz), i.e. fills the disk.
MAX_OVERLAP = 100
# Dataset names become file-name prefixes: no separators, nothing TFDS would refuse.
_NAME = re.compile(r"[a-z][a-z0-9_]*")

# What a finished pack folder may hold: the files `pack` writes, the shards, and the loader's index cache.
# `overwrite` deletes such a folder only when it holds nothing else.
METADATA_FILES = ("dataset_info.json", "features.json", "summary.json")
_PACK_FILES = {*METADATA_FILES, "metadata.json", "rejected.csv", "warnings.csv", INDEX_FILE}
_PACK_FILE_PATTERNS = (
  re.compile(r"[\w-]+-\w+\.(tfrecord|array_record)-\d{5}-of-\d{5}"),  # shards
  re.compile(rf"\.{re.escape(INDEX_FILE)}\.\d+\.tmp\.npz"),  # an index being written
)
# The marker `pack` puts in its scratch folder: a folder without it was not made here and is never deleted.
SCRATCH_MARKER = ".animaljax-pack-scratch"


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


# ---------------------------------------------------------------- settings


def _positive(what: str, value: Any) -> float:
  """`value` as a float, or ValueError unless it is a finite number > 0."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
    raise ValueError(f"{what} must be a number > 0, got {value!r}")
  return float(value)


def _choice(what: str, value: Any, choices: Sequence[str]) -> str:
  if value not in choices:
    raise ValueError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
  return value


def validate_settings(
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
) -> _Settings:
  """Checks `pack`'s settings (same arguments and defaults) before any work; ValueError names the bad one.

  Returns:
    The settings that decide the shards, with the window defaults filled in (None outside window mode).
  """
  if isinstance(sample_rate, float) and sample_rate.is_integer():
    sample_rate = int(sample_rate)
  lo, hi = SAMPLE_RATE_RANGE
  if (
    isinstance(sample_rate, bool)
    or not isinstance(sample_rate, numbers.Integral)
    or not lo <= sample_rate <= hi
  ):
    raise ValueError(f"sample_rate must be an integer number of Hz in {lo}..{hi}, got {sample_rate!r}")
  _choice("clip_mode", clip_mode, CLIP_MODES)
  _choice("file_format", file_format, FILE_FORMATS)
  _choice("silent", silent, SILENT_MODES)
  if not isinstance(name, str) or not _NAME.fullmatch(name):
    raise ValueError(f"name must be lower-case letters, digits and _ (a file name prefix), got {name!r}")
  if workers is not None and (
    isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 0
  ):
    raise ValueError(f"workers must be an integer >= 0 (0 decodes in this process), got {workers!r}")
  window = _positive("window_seconds", window_seconds)
  hop = window if hop_seconds is None else _positive("hop_seconds", hop_seconds)
  min_window = (
    window / 2 if min_window_seconds is None else _positive("min_window_seconds", min_window_seconds)
  )
  if max_seconds is not None:
    max_seconds = _positive("max_seconds", max_seconds)
  windowed = clip_mode == "window"
  if windowed and hop < window / MAX_OVERLAP:
    raise ValueError(
      f"hop_seconds={hop:g} would store every sample {window / hop:.0f} times ({window:g} s windows); "
      f"use a hop of at least window_seconds / {MAX_OVERLAP} = {window / MAX_OVERLAP:g} s"
    )
  if windowed and min_window > window:
    raise ValueError(f"min_window_seconds ({min_window:g}) must not exceed window_seconds ({window:g})")
  return _Settings(
    name=name,
    sample_rate=int(sample_rate),
    clip_mode=clip_mode,
    window_seconds=window if windowed else None,
    hop_seconds=hop if windowed else None,
    min_window_seconds=min_window if windowed else None,
    file_format=file_format,
    max_seconds=max_seconds,
    silent=silent,
    shard_size_mb=_positive("shard_size_mb", shard_size_mb),
  )


# ---------------------------------------------------------------- the output folder


def _within(path: str, folder: str) -> bool:
  """Whether `path` is `folder` or lies under it (both absolute and normalised)."""
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _source_inside(out_dir: pathlib.Path, source: Source, examples: Sequence[Example]) -> str | None:
  """A folder, file or clip of `source` that `out_dir` is or holds (as written or through links), or None."""
  outs = {os.path.normpath(out_dir), os.path.realpath(out_dir)}
  paths = [*source.locations(), *(e.path for e in examples if "://" not in e.path)]  # not generated clips
  for path in paths:
    for p in {os.path.abspath(path), os.path.realpath(path)}:
      if any(_within(p, o) for o in outs):
        return path
  return None


def _not_pack_files(folder: pathlib.Path) -> list[str]:
  """Names in `folder` that no pack holds (subfolders, links, unknown files): `overwrite` must keep them."""
  out = []
  for entry in sorted(os.scandir(folder), key=lambda e: e.name):
    known = entry.name in _PACK_FILES or any(p.fullmatch(entry.name) for p in _PACK_FILE_PATTERNS)
    if not known or entry.is_symlink() or not entry.is_file():
      out.append(entry.name)
  return out


def _is_pack(folder: pathlib.Path) -> bool:
  """Whether `folder` holds a finished pack's metadata: our `summary.json` beside TFDS's files."""
  summary = _read_summary(folder)
  return (
    isinstance(summary, dict)
    and {"fingerprint", "settings", "version"} <= summary.keys()
    and all((folder / f).is_file() for f in METADATA_FILES)
  )


def _check_out_dir(out_dir: pathlib.Path, source: Source, examples: Sequence[Example]) -> bool:
  """Refuses an `out_dir` that no run may replace; True when it holds a finished pack, False when empty/absent.

  Raises:
    FileExistsError: `out_dir` holds the source, is not a folder, is a link, or is a non-empty folder that is
      not a finished pack.
  """
  if out_dir.is_symlink():
    raise FileExistsError(
      f"{out_dir} is a symbolic link (to {os.path.realpath(out_dir)}); give the folder itself as the output"
    )
  if not out_dir.exists():
    return False
  if not out_dir.is_dir():
    raise FileExistsError(f"{out_dir} exists and is not a folder; choose a new folder for the pack")
  if not any(out_dir.iterdir()):
    return False
  held = _source_inside(out_dir, source, examples)
  if held is not None:
    raise FileExistsError(
      f"{out_dir} holds the data being packed ({held}); choose an output folder outside it (it was not changed)"
    )
  if not _is_pack(out_dir):
    raise FileExistsError(
      f"{out_dir} is not empty and is not a finished pack; choose a new or empty folder (it was not changed)"
    )
  return True


def _check_replaceable(out_dir: pathlib.Path) -> None:
  """FileExistsError unless the pack in `out_dir` holds only what a pack holds (so replacing it loses nothing)."""
  if not _is_pack(out_dir):
    raise FileExistsError(f"{out_dir} no longer holds a finished pack; it was not replaced")
  extra = _not_pack_files(out_dir)
  if extra:
    raise FileExistsError(
      f"{out_dir} holds a pack but also {len(extra)} item(s) no pack writes ({', '.join(extra[:5])}); "
      "replacing the pack would delete them: move them out first (nothing was changed)"
    )


def _make_scratch(out_dir: pathlib.Path) -> pathlib.Path:
  """Creates the empty, marked scratch folder beside `out_dir`, deleting a killed run's (marked) one first."""
  scratch = out_dir.parent / f".{out_dir.name}.incomplete"
  if scratch.is_symlink() or scratch.exists():
    if scratch.is_symlink() or not scratch.is_dir():
      raise FileExistsError(f"{scratch} is in the way of the pack's scratch folder; move it away")
    if (scratch / SCRATCH_MARKER).is_file():
      shutil.rmtree(scratch)  # a killed run's leftovers
    elif any(scratch.iterdir()):
      raise FileExistsError(
        f"{scratch} is in the way of the pack's scratch folder and was not made by animaljax.pack (no "
        f"{SCRATCH_MARKER} in it); move it away"
      )
    else:
      scratch.rmdir()  # empty: a run killed between creating it and marking it
  scratch.mkdir(parents=True)
  (scratch / SCRATCH_MARKER).write_text("animaljax.pack builds a pack here; deleted when the pack is done\n")
  return scratch


# ---------------------------------------------------------------- pack


def _split_sort_key(split: str) -> tuple[int, str]:
  return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def _fingerprint(
  source: Source, examples: Sequence[Example], settings: _Settings, listed_rejects: Sequence[tuple[str, str]]
) -> str:
  h = hashlib.sha256()
  h.update(json.dumps([source.name, list(source.class_names), dataclasses.asdict(settings)]).encode())
  if listed_rejects:  # only when there are any: packs made before sources could reject keep their fingerprint
    h.update(json.dumps(list(listed_rejects)).encode())
  for e in examples:
    try:  # an edited or replaced file makes a new pack; generated clips (synthetic://) have no stat
      st = os.stat(e.path)
      stamp = [st.st_size, st.st_mtime_ns]
    except OSError:
      stamp = None
    h.update(json.dumps([e.path, e.label, e.label_name, e.split, e.fold, stamp]).encode())
  return h.hexdigest()


def _warning_reason(path: str, message: str) -> str:
  """A decode warning without the leading `path: ` that `load_audio` puts in it (warnings.csv has a path column)."""
  return message.removeprefix(f"{path}: ")


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
    sample_rate: every clip is resampled to this rate (an integer in `SAMPLE_RATE_RANGE` Hz), stored as int16.
    clip_mode: "keep" stores each clip whole; "window" cuts `window_seconds` windows every `hop_seconds`.
    window_seconds, hop_seconds, min_window_seconds: window length, hop (default = window; at least
      window / `MAX_OVERLAP`) and the shortest last window kept (default = half a window, at most a window);
      all > 0, used only in window mode.
    workers: decode processes (default `os.cpu_count()`); 0 decodes in this process.
    file_format: "tfrecord" (needs TensorFlow) or "array_record" (random access, no TensorFlow).
    max_seconds: reject longer files (> 0; None = no limit).
    silent: all-zero clips: "warn" (keep, report), "reject" or "allow".
    shard_size_mb: upper bound of one shard in MiB (> 0).
    name: dataset name, the prefix of the shard files (lower-case letters, digits, _).
    progress: show a tqdm bar (clips/s) and print the summary.
    overwrite: rebuild even if `out_dir` holds a finished pack with the same settings, or replace a
      different pack. Without it, an identical pack is reused and a different one is an error. It never
      replaces anything but a finished pack (see the module docstring).
  Returns:
    The dict also written to `summary.json` (see the module docstring; `splits[s]["per_class"]` counts
    records per class name, `"<unlabelled>"` for label -1; `seconds` is the stored audio; `num_rejected`
    counts the rows of rejected.csv, `num_warnings` those of warnings.csv).
  Raises:
    ValueError: a bad setting (before anything is read or written), or no usable clip.
    FileExistsError: `out_dir` may not be written (it holds the source, is not empty and not a pack, holds a
      different pack without `overwrite`, ...); nothing was changed.
  """
  settings = validate_settings(
    sample_rate=sample_rate,
    clip_mode=clip_mode,
    window_seconds=window_seconds,
    hop_seconds=hop_seconds,
    min_window_seconds=min_window_seconds,
    workers=workers,
    file_format=file_format,
    max_seconds=max_seconds,
    silent=silent,
    shard_size_mb=shard_size_mb,
    name=name,
  )
  windowed = settings.clip_mode == "window"
  out_dir = pathlib.Path(os.path.abspath(out_dir))  # normalised: "a/../b" must not hide that b is the root
  say = print if progress else (lambda *a, **k: None)

  examples = sorted(source.examples(), key=lambda e: _split_sort_key(e.split))  # stable: keeps source order
  if not examples:
    raise ValueError(f"source {source.name!r} lists no examples")
  listed_rejects = [(str(p), str(r)) for p, r in source.rejected]
  fingerprint = _fingerprint(source, examples, settings, listed_rejects)
  if _check_out_dir(out_dir, source, examples):
    old = _read_summary(out_dir)
    if old.get("fingerprint") == fingerprint and not overwrite:
      say(f"{out_dir} already holds this pack (same source and settings); nothing to do (overwrite to redo).")
      return old
    if not overwrite:
      raise FileExistsError(
        f"{out_dir} holds a different pack; pass overwrite=True (--overwrite) to replace it"
      )
    _check_replaceable(out_dir)

  scratch = _make_scratch(out_dir)

  by_split: dict[str, list[Example]] = {}
  for e in examples:
    by_split.setdefault(e.split, []).append(e)
  validation = {"max_seconds": settings.max_seconds, "silent": silent}
  rejected: list[tuple[str, str]] = list(listed_rejects)  # the listing's refusals first, then decode failures
  warned: list[tuple[str, str]] = []
  stats = {s: {"num_examples": 0, "per_class": collections.Counter(), "samples": 0} for s in by_split}

  from tqdm.auto import tqdm

  bar = tqdm(
    total=len(examples), unit="clip", desc=f"packing {source.name}", disable=not progress, file=sys.stderr
  )
  sr = settings.sample_rate
  win = hop = min_win = 0
  if windowed:
    window_seconds, hop_seconds = settings.window_seconds, settings.hop_seconds
    min_window_seconds = settings.min_window_seconds
    win, hop = max(1, round(window_seconds * sr)), max(1, round(hop_seconds * sr))
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
      warned.extend((example.path, _warning_reason(example.path, w)) for w in result[2])
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

  for filename, rows in (("rejected.csv", rejected), ("warnings.csv", warned)):
    with open(built / filename, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["path", "reason"])
      writer.writerows(rows)
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
  _move_into_place(built, out_dir, scratch)
  shutil.rmtree(scratch, ignore_errors=True)  # ours (marked), now holding only the replaced pack, if any
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


def _move_into_place(built: pathlib.Path, out_dir: pathlib.Path, scratch: pathlib.Path) -> None:
  """Renames the finished folder to `out_dir` so readers never see a partial one.

  An old pack in `out_dir` (checked again here: the decode may have taken hours) is first moved into
  `scratch`, which the caller deletes: no fixed trash name that might be someone else's folder.
  """
  if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
    out_dir.rmdir()
  if out_dir.exists() or out_dir.is_symlink():
    _check_replaceable(out_dir)
    out_dir.rename(scratch / "replaced")
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
  if warned:
    print(f"  warnings: {len(warned)} file(s) kept with a warning (warnings.csv)")
  for path, reason in warned[:20]:
    print(f"    {path}: {reason}")
  if len(warned) > 20:
    print(f"    ... {len(warned) - 20} more (warnings.csv)")
