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

import dataclasses
import datetime
import itertools
import json
import os
import pathlib
import shutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from animaljax.data import decoding, duplicates, pack_dir, pack_plan, pack_report, tfds_builder
from animaljax.data.pack_dir import METADATA_FILES, SCRATCH_MARKER
from animaljax.data.pack_plan import SPLIT_ORDER, UNLABELLED_KEY
from animaljax.data.pack_settings import (
  CLIP_MODES,
  FILE_FORMATS,
  MAX_OVERLAP,
  SAMPLE_RATE_RANGE,
  SILENT_MODES,
  PackSettings,
  validate_settings,
)
from animaljax.data.sources.base import Example, Source

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

RUNNERS = ("local", "beam")  # beam: `animaljax.data.beam_pack` (the optional extra)


# ---------------------------------------------------------------- pack


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
  runner: str = "local",
  beam_options: Sequence[str] = (),
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
    runner: "local" (decode in `workers` processes, TFDS writes) or "beam" (`animaljax.data.beam_pack`: an
      Apache Beam pipeline decodes and writes the same bytes; `workers` is then unused).
    beam_options: Beam pipeline options (`--runner=DirectRunner`, `--direct_num_workers=2`, ...) for "beam".
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
  if runner not in RUNNERS:
    raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
  out_dir = pathlib.Path(os.path.abspath(out_dir))  # normalised: "a/../b" must not hide that b is the root
  say = print if progress else (lambda *a, **k: None)

  examples = sorted(
    source.examples(), key=lambda e: pack_plan.split_sort_key(e.split)
  )  # stable: keeps source order
  if not examples:
    raise ValueError(f"source {source.name!r} lists no examples")
  listed_rejects = [(str(p), str(r)) for p, r in source.rejected]
  fingerprint = pack_plan.fingerprint(source, examples, settings, listed_rejects)
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
  windowing = pack_plan.Windowing.of(settings)
  sr = settings.sample_rate
  description = (
    f"{source.name} clips as int16 mono at {sr} Hz "
    + (
      f"in {settings.window_seconds:g} s windows every {settings.hop_seconds:g} s."
      if windowing.windowed
      else "(whole clips)."
    )
    + f" Classes: {', '.join(source.class_names) or 'none'}."
  )
  tfds_args = {
    "name": name,
    "file_format": file_format,
    "metadata": {
      "class_names": list(source.class_names),
      "sample_rate": sr,
      "clip_mode": clip_mode,
      "window_seconds": settings.window_seconds,
      "hop_seconds": settings.hop_seconds,
      "source": source.name,
      "multi_label": bool(source.multi_label),
      **({"class_ids": list(source.class_ids)} if source.class_ids else {}),
    },
    "description": description,
    "shard_size_mb": shard_size_mb,
  }
  job = _Job(source, examples, windowing, {"max_seconds": settings.max_seconds, "silent": silent}, scratch,
             list(listed_rejects), progress, tfds_args)  # fmt: skip
  try:
    if runner == "beam":
      from animaljax.data import beam_pack

      built, splits, stats, warned, packed = beam_pack.build(job, beam_options)
    else:
      built, splits, stats, warned, packed = _build_local(job, workers)
  except BaseException:
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  rejected = job.rejected

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


@dataclasses.dataclass
class _Job:
  """What a build needs besides its runner's options (`_build_local`, `beam_pack.build`)."""

  source: Source
  examples: list[Example]
  windowing: pack_plan.Windowing
  validation: dict[str, Any]  # `decoding.decode_one`'s
  scratch: pathlib.Path
  rejected: list[tuple[str, str]]  # the listing's refusals; the build appends its own
  progress: bool
  tfds_args: dict[str, Any]  # `tfds_builder.build`'s name, file_format, metadata, description, shard_size_mb


def _build_local(job: _Job, workers: int | None) -> tuple:
  """Decodes in local processes and lets TFDS write: `(built folder, splits, stats, warned, packed)`."""
  from tqdm.auto import tqdm

  source, examples, windowing, progress = job.source, job.examples, job.windowing, job.progress
  sr, rejected = windowing.sample_rate, job.rejected
  warned: list[tuple[str, str]] = []
  packed: list[tuple[Example, str]] = []  # (example, digest) of every clip that became records

  def check(result: decoding.Result) -> tuple[np.ndarray | None, str, list[int]]:
    """`(audio or None, reason, window starts)` of a decoded clip; too short for a window = rejected."""
    if result.audio is None:
      return None, result.reason, [0]
    starts, short = windowing.starts(result.audio.shape[0])
    return (None, short, []) if short else (result.audio, result.reason, starts)

  def split_records(split: str, count: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Pulls the next `count` decoded clips (all of `split`, by the queue order) and yields their records."""
    for index in range(count):
      example, result = next(decoded)
      bar.update(1)
      warned.extend((example.key, pack_plan.warning_reason(example.path, w)) for w in result.warnings)
      audio, reason, starts = check(result)
      if audio is None:
        rejected.append((example.key, reason))
        if progress:
          bar.write(f"rejected {example.key}: {reason}", file=sys.stderr)
        continue
      packed.append((example, result.digest))
      windows = pack_plan.clip_windows(example, audio.shape[0], starts, windowing, source)
      for w in windows:
        pack_plan.count(stats[split], example, w, source)
      yield from pack_plan.clip_records(example, audio, index, windows, sr)

  workers = (os.cpu_count() or 1) if workers is None else workers
  decoder = decoding.OrderedDecoder(source, sr, job.validation, min(workers, len(examples)))
  bar = None
  try:
    if any(e.carve for e in examples):
      # A carved split needs every clip's digest first: all clips are decoded into a scratch file, which the
      # writing pass reads back (nothing is decoded twice), and the splits carved with duplicates together.
      path = job.scratch / "decoded.int16"
      cache = decoding.DecodedCache.fill(decoder, examples, path, progress, source.name)
      decoder.close()
      decoder = cache
      examples = pack_plan.carved_order(source, examples, cache.digests)
    by_split: dict[str, list[Example]] = {}
    for e in examples:
      by_split.setdefault(e.split, []).append(e)
    stats = {s: pack_plan.new_stats() for s in by_split}
    bar = tqdm(
      total=len(examples), unit="clip", desc=f"packing {source.name}", disable=not progress, file=sys.stderr
    )
    for split, failures in _all_bad_splits(decoder, by_split, check).items():
      rejected.extend(failures)
      bar.update(len(failures))
      if progress:
        print(f"split {split!r} dropped: every one of its {len(failures)} file(s) was rejected")
      del by_split[split], stats[split]
    splits = sorted(by_split, key=pack_plan.split_sort_key)
    if not splits:
      reasons = "; ".join(f"{p}: {r}" for p, r in rejected[:3])
      raise ValueError(f"all {len(rejected)} files of {source.name!r} were rejected ({reasons} ...)")
    pending = decoder.imap([e for split in splits for e in by_split[split]])
    # Start decoding now: the first chunks decode while TFDS imports TensorFlow (~7 s) in this process.
    decoded = itertools.chain([next(pending)], pending)
    built = tfds_builder.build(
      data_dir=job.scratch,
      split_examples={s: split_records(s, len(by_split[s])) for s in splits},
      **job.tfds_args,
    )
  except BaseException:
    decoder.close(kill=True)
    raise
  finally:
    if bar is not None:
      bar.close()
  decoder.close()
  return built, splits, stats, warned, packed


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
