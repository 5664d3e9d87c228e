"""Pack a `Source` into a TFDS dataset folder of TFRecord (or ArrayRecord) shards.

`pack(source, out_dir)` decodes every clip in worker processes (ordered, so the output is deterministic),
cuts windows if asked, lets TFDS serialize and shard the records (`animaljax.data.tfds_builder`), and leaves
in `out_dir`:

  dataset_info.json, features.json, metadata.json   TFDS metadata: `tfds.builder_from_directory(out_dir)`
  {name}-{split}.{file_format}-{i:05d}-of-{n:05d}   the shards (records as in `animaljax.data.records`)
  rejected.csv, warnings.csv, duplicates.csv        files refused or failed, clips kept with a warning, exact
                                                    duplicates (`animaljax.data.pack_report`)
  summary.json                                      counts per split and class, duplicates, groups; written last

Splits without leaks: each decoded clip gets a digest of its samples (`animaljax.data.decoding`). When the
source carves splits (`Example.carve`: validation out of Training/, an unsplit folder or csv), every clip is
decoded first into a scratch file, the splits are carved with exact duplicates and recording groups kept
together (`animaljax.data.sources.splits`), and the shards are written from that file: no clip is decoded
twice. Splits the layout fixes are never changed; duplicates and groups across them are reported
(`animaljax.data.duplicates`). Without carved splits, clips stream from the decoders to the shards.

Atomicity: everything is built in a hidden sibling `.{out_dir.name}.incomplete/` (holding a marker file,
`.animaljax-pack-scratch`) and renamed into place in one step, so `out_dir` is either absent or complete; a
killed run leaves only that sibling, which the next run deletes before starting again. Output shards are a
pure function of the source and the settings (TFDS's key hash shuffle, deterministic proto serialization),
so a re-run writes byte-identical shards.

Nothing but a pack is deleted: an existing `out_dir` is replaced only with `overwrite=True` and only when it
is a finished pack holding nothing a pack does not write; a folder that holds the source is refused even with
`overwrite` (the rules: `animaljax.data.pack_dir`). Every setting is checked first
(`animaljax.data.pack_settings.validate_settings`), before the disk is touched.

A source may list several segments of one file (`Example.segment`): everything that must tell clips apart
(the decoded cache, digests, duplicates, carved splits, the rows of the csv files) uses `Example.key`
(`path@start-end`), while the records keep the file's `path` and give `start_s` in the file's time.

Windowing (`clip_mode="window"`) follows `animaljax.audio.windows.pack_window_starts`: windows of
`window_seconds` every `hop_seconds` (default: no overlap) while a full window fits; then one last, shorter
window from the next hop if it holds at least `min_window_seconds` (default half a window). Windows are not
zero-padded here: the loader pads or crops to its clip length. A clip shorter than `min_window_seconds` is
rejected with that reason.
"""

from __future__ import annotations

import collections
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

from animaljax.audio.windows import pack_window_starts
from animaljax.data import decoding, duplicates, pack_dir, pack_report, tfds_builder
from animaljax.data.pack_dir import METADATA_FILES, SCRATCH_MARKER
from animaljax.data.pack_settings import (
  CLIP_MODES,
  FILE_FORMATS,
  MAX_OVERLAP,
  SAMPLE_RATE_RANGE,
  SILENT_MODES,
  PackSettings,
  validate_settings,
)
from animaljax.data.sources.base import Example, Source, window_labels
from animaljax.data.sources.splits import carve_examples

# Settings and folder rules live in their own modules; these names stay importable from here, the pipeline.
__all__ = [
  "CLIP_MODES",
  "FILE_FORMATS",
  "MAX_OVERLAP",
  "METADATA_FILES",
  "SAMPLE_RATE_RANGE",
  "SCRATCH_MARKER",
  "SILENT_MODES",
  "SPLIT_ORDER",
  "UNLABELLED_KEY",
  "PackSettings",
  "pack",
  "validate_settings",
]

# The split order in the output (and in the decode queue); any other split name follows, sorted.
SPLIT_ORDER = ("train", "validation", "test", "fold1", "fold2", "fold3", "fold4", "fold5", "noise")
UNLABELLED_KEY = "<unlabelled>"  # per_class key for label -1 (noise, unlabelled corpora)


def _too_short(seconds: float, min_window_seconds: float) -> str:
  return f"too short for a window: {seconds:.2f} s < {min_window_seconds:g} s"


# ---------------------------------------------------------------- pack


def _split_sort_key(split: str) -> tuple[int, str]:
  return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def _fingerprint(
  source: Source,
  examples: Sequence[Example],
  settings: PackSettings,
  listed_rejects: Sequence[tuple[str, str]],
) -> str:
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


def _warning_reason(path: str, message: str) -> str:
  """A decode warning without the leading `path: ` that `load_audio` puts in it (warnings.csv has a path column)."""
  return message.removeprefix(f"{path}: ")


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
  if pack_dir.check_out_dir(out_dir, source, examples):
    old = pack_dir.read_summary(out_dir)
    if old.get("fingerprint") == fingerprint and not overwrite:
      say(f"{out_dir} already holds this pack (same source and settings); nothing to do (overwrite to redo).")
      return old
    if not overwrite:
      raise FileExistsError(
        f"{out_dir} holds a different pack; pass overwrite=True (--overwrite) to replace it"
      )
    pack_dir.check_replaceable(out_dir)

  scratch = pack_dir.make_scratch(out_dir)

  validation = {"max_seconds": settings.max_seconds, "silent": silent}
  rejected: list[tuple[str, str]] = list(listed_rejects)  # the listing's refusals first, then decode failures
  warned: list[tuple[str, str]] = []
  packed: list[tuple[Example, str]] = []  # (example, digest) of every clip that became records

  from tqdm.auto import tqdm

  sr = settings.sample_rate
  win = hop = min_win = 0
  if windowed:
    window_seconds, hop_seconds = settings.window_seconds, settings.hop_seconds
    min_window_seconds = settings.min_window_seconds
    win, hop = max(1, round(window_seconds * sr)), max(1, round(hop_seconds * sr))
    min_win = max(1, round(min_window_seconds * sr))

  def check(result: decoding.Result) -> tuple[np.ndarray | None, str, list[int]]:
    """`(audio or None, reason, window starts)` of a decoded clip; too short for a window = rejected."""
    audio, reason = result.audio, result.reason
    if audio is None or not windowed:
      return audio, reason, [0]
    starts = pack_window_starts(audio.shape[0], win, hop, min_win).tolist()  # ints: keys and times as before
    if not starts:
      return None, _too_short(audio.shape[0] / sr, min_window_seconds), []
    return audio, reason, starts

  def split_records(split: str, count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Pulls the next `count` decoded clips (all of `split`, by the queue order) and yields their records."""
    for index in range(count):
      example, result = next(decoded)
      bar.update(1)
      warned.extend((example.key, _warning_reason(example.path, w)) for w in result.warnings)
      audio, reason, starts = check(result)
      if audio is None:
        rejected.append((example.key, reason))
        if progress:
          bar.write(f"rejected {example.key}: {reason}", file=sys.stderr)
        continue
      packed.append((example, result.digest))
      duration = audio.shape[0] / sr
      offset = example.segment[0] if example.segment else 0.0  # records keep times in the file's time
      for start in starts:
        piece = audio[start : start + win] if windowed else audio
        labels, name = example.label_set(), None
        if example.events:  # an annotated recording: this window's classes from the boxes it overlaps
          end = offset + (start + piece.shape[0]) / sr
          labels = window_labels(example.events, offset + start / sr, end, source.min_overlap_seconds)
          name = ";".join(source.class_names[c] for c in labels)
        st = stats[split]
        st["num_examples"] += 1
        if source.multi_label:
          st["per_class"].update([source.class_names[c] for c in labels] or [UNLABELLED_KEY])
        else:
          st["per_class"][example.label_name or UNLABELLED_KEY] += 1
        st["samples"] += piece.shape[0]
        yield (
          f"{index:09d}/{start:012d}",
          tfds_builder.record_dict(
            piece, example, offset + start / sr, duration, labels=labels, label_name=name
          ),
        )

  workers = (os.cpu_count() or 1) if workers is None else workers
  decoder = decoding.OrderedDecoder(source, sr, validation, min(workers, len(examples)))
  bar = None
  try:
    if any(e.carve for e in examples):
      # A carved split needs every clip's digest first: all clips are decoded into a scratch file, which the
      # writing pass reads back (nothing is decoded twice), and the splits carved with duplicates together.
      cache = decoding.DecodedCache.fill(decoder, examples, scratch / "decoded.int16", progress, source.name)
      decoder.close()
      decoder = cache
      digests = cache.digests
      failed = [e for e in examples if not digests[e.key]]  # rejected in any split: not counted in the carve
      examples = carve_examples(
        [e for e in examples if digests[e.key]], source.carves, duplicates.links(digests)
      )
      examples = sorted(examples + failed, key=lambda e: (_split_sort_key(e.split), e.path, e.segment or ()))
    by_split: dict[str, list[Example]] = {}
    for e in examples:
      by_split.setdefault(e.split, []).append(e)
    stats = {s: {"num_examples": 0, "per_class": collections.Counter(), "samples": 0} for s in by_split}
    bar = tqdm(
      total=len(examples), unit="clip", desc=f"packing {source.name}", disable=not progress, file=sys.stderr
    )
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
        "multi_label": bool(source.multi_label),
        **({"class_ids": list(source.class_ids)} if source.class_ids else {}),
      },
      description=description,
      shard_size_mb=shard_size_mb,
    )
  except BaseException:
    decoder.close(kill=True)
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  finally:
    if bar is not None:
      bar.close()
  decoder.close()

  leaks, duplicate_rows = duplicates.report(packed, source)
  pack_report.write_csvs(built, rejected, warned, duplicate_rows)
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
    **({"class_ids": list(source.class_ids)} if source.class_ids else {}),  # a corpus's own class ids, if any
    "multi_label": bool(source.multi_label),
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
    **leaks,
    "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "settings": dataclasses.asdict(settings),
    "fingerprint": fingerprint,
  }
  (built / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
  pack_dir.move_into_place(built, out_dir, scratch)
  shutil.rmtree(scratch, ignore_errors=True)  # ours (marked), now holding only the replaced pack, if any
  if progress:
    pack_report.print_summary(summary, rejected, warned, out_dir)
  return summary


def _all_bad_splits(decoder, by_split: dict[str, list[Example]], check) -> dict:
  """Splits in which every clip is rejected -> their `(path, reason)` list.

  TFDS refuses a split without records, and splits are written one after another, so this must be known
  before the build starts. Each round decodes (in the pool, or reads from the cache) the next clip of every
  split not yet known to have a usable one: normally a single round of one clip per split.
  """
  failures: dict[str, list[tuple[str, str]]] = {s: [] for s in by_split}
  unresolved = list(by_split)
  while unresolved:
    batch = [by_split[s][len(failures[s])] for s in unresolved]
    still = []
    for split, (example, result) in zip(unresolved, decoder.imap(batch), strict=True):
      audio, reason, _ = check(result)
      if audio is None:
        failures[split].append((example.key, reason))
        if len(failures[split]) < len(by_split[split]):
          still.append(split)
    unresolved = still
  return {s: f for s, f in failures.items() if len(f) == len(by_split[s])}
