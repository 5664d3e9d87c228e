"""The grain input pipeline over packed shards: raw records -> parsed clips -> fixed-length int16 batches.

One code path for both packed formats: a random-access source of serialized examples (`shard_source`),
`records.parse_example`, a crop or zero-pad to `T` samples, and batching into preallocated arrays. Everything
before batching is a `grain.MapDataset`, so the iterator state is just the next batch index (JSON, restored
exactly, also through `grain.checkpoint.CheckpointSave/Restore` in orbax).

Batches are numpy dicts `{"audio": int16 (B, T), "label": int32 (B,), "mask": bool (B,), "index": int64 (B,)}`
where `B` is the *per-process* batch size (global batch / process count), `index` is the example's position in
the split expression and `mask` is False on padding rows. Audio stays int16 on the host; the model's front end
converts it on the device.

Order: every process draws the same permutation of the whole split for each epoch from `(seed, epoch)`. In
training, global batch `b` is entries `[b*B*P, (b+1)*B*P)` of it and process `p` takes the contiguous block
`p*B .. p*B+B-1` of that batch, so the global batch assembled from P processes is row for row the batch one
process would read with batch size `B*P` (per-row augmentation then draws the same masks: losses match across
process counts). In evaluation process `p` takes every `P`-th entry from `p`. The order does not depend on
worker counts. A random crop's offset is a hash of `(seed, epoch, example)`.
So a run is reproducible from the seed, and a restored iterator continues with the same batches and crops.

Class-balanced sampling (`sampling="balanced"`, training only): each epoch's order is instead `n` draws with
replacement, example `i` with probability proportional to `1 / count(label_i)`, from the same `(seed, epoch)`
generator, sharded and resumable exactly like the permutation. The order lives in `animaljax.data.sampling`.

Windowed evaluation (`windows=True`) cuts each clip by `animaljax.audio.windows.cover_window_starts`.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from animaljax.audio.windows import SHORT_CLIP_RULES, cover_window_starts, fit_short
from animaljax.data import records
from animaljax.data.sampling import (
  SAMPLING,
  EpochOrder,
  balanced_multilabel_weights,
  balanced_weights,
  split_label_sets,
  split_labels,
)
from animaljax.data.shard_source import PackedDataset

_CROPS = ("random", "center", "start")


def crop_or_pad(
  audio: np.ndarray, length: int, mode: str, key: tuple[int, ...] = (), short: str = "pad"
) -> np.ndarray:
  """Cuts `(n,)` to `(length,)` (`center`, `start`, or `random` placement drawn from `key`) or, when shorter,
  makes it one window by `audio.windows.fit_short` with the `short` rule ("pad" at that placement, or "loop"
  from a phase drawn the same way; "mask" always at the start)."""
  n = audio.shape[0]
  if n == length:
    return audio
  if n < length and short == "mask":  # the model masks the padding out of its pooling: where it sits is moot
    return fit_short(audio, length, short)
  looped = n < length and short == "loop"
  choices = (
    max(n, 1) if looped else abs(n - length) + 1
  )  # phases of a loop, or placements of a crop / in padding
  if mode == "random":
    offset = _uniform(key, choices)
  elif mode == "center" and not looped:  # a loop has no centre: it starts at its beginning
    offset = (choices - 1) // 2
  else:
    offset = 0
  if n > length:
    return audio[offset : offset + length]
  return fit_short(audio, length, short, offset)


_MASK64 = (1 << 64) - 1


def _uniform(key: tuple[int, ...], bound: int) -> int:
  """A deterministic integer in `[0, bound)` from a key: splitmix64 over its parts.

  A hash instead of a seeded `np.random.Generator` per clip: building a Philox generator costs ~50 us, as
  much as parsing the whole record, and a crop offset needs one number.
  """
  h = 0x9E3779B97F4A7C15
  for part in key:
    h = (h ^ (int(part) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
    h = (h ^ (h >> 31)) * 0x94D049BB133111EB & _MASK64
    h ^= h >> 29
  return h % bound


@dataclasses.dataclass(frozen=True)
class _ClipReader:
  """Element function: stream position -> one unbatched row. Picklable for workers."""

  source: Any
  order: EpochOrder
  length: int
  crop: str
  seed: int
  short: str = "pad"

  def __call__(self, position: int, _: Any = None) -> dict[str, Any]:
    example = self.order(position)
    if example < 0:
      return {"audio": None, "label": -1, "labels": (), "index": -1, "mask": False}
    parsed = records.parse_example(self.source[example])
    # The crop depends on (seed, epoch, example) only, not on worker or process counts, so crops are
    # reproducible and a restored iterator crops exactly as the original would have.
    key = (self.seed, self.order.epoch(position), example)
    audio = crop_or_pad(parsed["audio"], self.length, self.crop, key, self.short)
    return {
      "audio": audio,
      "label": parsed["label"],
      "labels": parsed["labels"],
      "index": example,
      "mask": True,
    }


@dataclasses.dataclass(frozen=True)
class _Windower:
  """Flat map for windowed evaluation: example id -> one row per window of its clip.

  Windows follow `cover_window_starts`, the rule `Predictor` uses on files, so a long clip is cut where
  predict would cut it: full windows, the last one ending at the clip's end. A clip shorter than a window is
  one row made by `fit_short` with the `short` rule from its start, as `Predictor.pad_short` makes it.
  """

  source: Any
  length: int
  hop: int
  max_fan_out: int = 10_000
  short: str = "pad"

  def flat_map(self, example: int) -> list[dict[str, Any]]:
    parsed = records.parse_example(self.source[int(example)])
    audio = np.asarray(parsed["audio"])
    return [
      {"audio": crop_or_pad(audio[s : s + self.length], self.length, "start", short=self.short),
       "label": parsed["label"], "labels": parsed["labels"],
       "index": int(example), "mask": True}
      for s in cover_window_starts(audio.shape[0], self.length, self.hop)
    ]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Collate:
  """Stacks rows into a preallocated batch and pads a short (final) batch with masked zero rows."""

  batch_size: int
  length: int
  num_classes: int = 0  # > 0: a multi-label pack, batches get "targets" (B, num_classes) multi-hot

  def __call__(self, rows) -> dict[str, np.ndarray]:
    audio = np.empty((self.batch_size, self.length), np.int16)  # every row is written below
    label = np.full(self.batch_size, -1, np.int32)
    index = np.full(self.batch_size, -1, np.int64)
    mask = np.zeros(self.batch_size, bool)
    targets = np.zeros((self.batch_size, self.num_classes), np.float32) if self.num_classes else None
    for i in range(self.batch_size):
      row = rows[i] if i < len(rows) else None
      if row is not None and row["mask"]:
        audio[i] = row["audio"]
        label[i], index[i], mask[i] = row["label"], row["index"], True
        if targets is not None:
          targets[i, list(row["labels"])] = 1.0
      else:
        audio[i] = 0
    batch = {"audio": audio, "label": label, "mask": mask, "index": index}
    if targets is not None:
      batch["targets"] = targets
    return batch


@dataclasses.dataclass
class Loader:
  """What `make_loader` returns: iterate it for batches; `iter(loader)` has `get_state()`/`set_state()`.

  Attributes:
    dataset: the grain `IterDataset` of batches (pass its iterator to `grain.checkpoint.CheckpointSave`).
    batch_size: rows per batch on this process.
    clip_samples: `T`, samples per row.
    num_examples: examples in the split expression (all processes together).
    batches_per_epoch: batches this process yields per pass (None in windowed mode, unknown up front).
  """

  dataset: Any
  batch_size: int
  clip_samples: int
  sample_rate: int
  class_names: tuple[str, ...]
  num_examples: int
  batches_per_epoch: int | None

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self.dataset)


def make_loader(
  data_dir: str | pathlib.Path,
  split: str,
  *,
  batch_size: int,
  train: bool,
  clip_seconds: float | None = None,
  seed: int = 0,
  num_epochs: int | None = None,
  crop: str | None = None,
  windows: bool = False,
  hop_seconds: float | None = None,
  shard_by_process: bool = True,
  process_index: int | None = None,
  process_count: int | None = None,
  worker_count: int = 0,
  worker_buffer_size: int = 2,
  read_threads: int = 1,
  prefetch_batches: int = 4,
  drop_remainder: bool | None = None,
  tune_malloc: bool = True,
  sampling: str = "uniform",
  short_clips: str = "pad",
) -> Loader:
  """Builds the batch iterator over a packed split.

  Args:
    data_dir: the packed dataset folder.
    split: a split or a `+`-joined concatenation (`"fold1+fold2+fold3+fold4"`).
    batch_size: rows per batch *on this process* (the global batch divided by the process count).
    train: shuffle (globally, reshuffled every epoch), repeat and random-crop; otherwise one ordered pass.
    clip_seconds: row length; defaults to the pack's window length, else required.
    seed: shuffle and crop seed (same seed -> same batches, on every process count).
    num_epochs: passes over the data; None means forever when training, 1 otherwise.
    crop: `random`, `center` or `start` for clips longer (or shorter: padding placement) than the row;
      defaults to `random` when training and `center` otherwise.
    windows: evaluation only: cut each clip into consecutive windows (one row each, `index` = its clip).
    short_clips: how a clip shorter than the row becomes one (`audio.windows.fit_short`): "pad", "loop" or
      "mask".
    hop_seconds: window hop; defaults to `clip_seconds` (no overlap).
    shard_by_process: give each JAX process a disjoint slice of every (shuffled) epoch.
    process_index, process_count: default `jax.process_index()`/`jax.process_count()`.
    worker_count: grain worker processes (0 = read in this process with `read_threads` threads). Reading
      packed int16 clips is cheap (~0.1 ms of CPU a 5 s clip) while grain ships every batch to the main
      process through a fresh shared-memory segment (~0.4 ms a clip), so 0 is fastest for this pipeline;
      workers pay off only when the main process has no CPU to spare. Workers are spawned: scripts that
      use them need an `if __name__ == "__main__":` guard. Close such iterators (`it.close()`) when done.
    worker_buffer_size: batches each worker prepares ahead.
    read_threads, prefetch_batches: grain `ReadOptions` (in each worker when `worker_count > 0`): reader
      threads and batches buffered ahead.
    drop_remainder: drop a final short batch instead of padding it with `mask=False` rows; defaults to
      `train`. Evaluation pads every process to the same number of batches so multi-host steps line up.
    tune_malloc: raise glibc's mmap and trim thresholds in this process and the workers (see
      `raise_malloc_thresholds`); 2.5x the throughput here.
    sampling: `uniform` (each epoch a permutation) or `balanced` (training only: each epoch `n` draws with
      replacement weighted by `1 / count(class)`, so classes come up about equally often; on a multi-label
      pack PANNs' rule, a class drawn uniformly then a clip that has it: `balanced_multilabel_weights`).

  Returns:
    A `Loader`; iterating yields `{"audio": int16 (B, T), "label": int32 (B,), "mask": bool (B,),
    "index": int64 (B,)}`, plus `"targets": float32 (B, num_classes)` multi-hot on a multi-label pack.
  """
  import grain  # lazy: importing the package should not start grain's telemetry

  data = PackedDataset(data_dir)
  clip_seconds = clip_seconds or data.default_clip_seconds()
  if clip_seconds is None:
    raise ValueError(f"{data.path} holds whole clips of varying length: pass clip_seconds to batch them")
  crop = crop or ("random" if train else "center")
  if crop not in _CROPS:
    raise ValueError(f"crop must be one of {_CROPS}, got {crop!r}")
  if windows and train:
    raise ValueError("windows=True is an evaluation mode; use train=False")
  if short_clips not in SHORT_CLIP_RULES:
    raise ValueError(f"short_clips must be one of {SHORT_CLIP_RULES}, got {short_clips!r}")
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  if sampling not in SAMPLING:
    raise ValueError(f"unknown sampling {sampling!r}; valid: {', '.join(SAMPLING)}")
  if sampling == "balanced" and not train:
    raise ValueError("sampling='balanced' is a training mode; evaluation reads every example once")
  drop_remainder = train if drop_remainder is None else drop_remainder
  num_epochs = num_epochs if num_epochs is not None else (None if train else 1)
  if shard_by_process and (process_index is None or process_count is None):
    import jax  # lazy: data does not need jax unless it shards by JAX process

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not shard_by_process:
    process_index, process_count = 0, 1
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")

  source = data.source(split)
  n = len(source)
  length = round(clip_seconds * data.sample_rate)
  # Training: this process's share of each epoch. Evaluation: ceil(n / processes) rows on every process,
  # padded with -1, so all processes yield the same number of batches and multi-host steps line up.
  if train:
    # Whole global batches of batch_size * process_count rows; a last partial one is dropped or, without
    # drop_remainder, filled with masked padding rows.
    global_batches = (
      (n // (batch_size * process_count)) if drop_remainder else -(-n // (batch_size * process_count))
    )
    if global_batches == 0:
      raise ValueError(
        f"{data.path}: split {split!r} has {n} examples, fewer than one global batch of "
        f"{batch_size} x {process_count} process(es); use a smaller batch or drop_remainder=False"
      )
    rows_per_epoch = global_batches * batch_size
  else:
    rows_per_epoch = math.ceil(n / process_count)
  weights = None
  if sampling == "balanced":
    weights = (
      balanced_multilabel_weights(split_label_sets(source), len(data.class_names))
      if data.multi_label
      else balanced_weights(split_labels(source))
    )
  order = EpochOrder(
    n, rows_per_epoch, train, seed, process_index, process_count, weights, block=batch_size if train else 0
  )
  positions = grain.MapDataset.range(rows_per_epoch).repeat(num_epochs)
  collate = _Collate(batch_size, length, len(data.class_names) if data.multi_label else 0)
  if windows:
    hop = round((hop_seconds or clip_seconds) * data.sample_rate)
    ids = positions.map_with_index(order).filter(_is_example)
    rows = ids.to_iter_dataset(
      grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    )
    rows = grain.experimental.FlatMapIterDataset(rows, _Windower(source, length, hop, short=short_clips))
    batches = rows.batch(batch_size, drop_remainder=drop_remainder, batch_fn=collate)
    batches_per_epoch = None
  else:
    reader = _ClipReader(source, order, length, crop, seed, short_clips)
    batched = positions.map_with_index(reader).batch(
      batch_size, drop_remainder=drop_remainder, batch_fn=collate
    )
    read = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
    batches = batched.to_iter_dataset(read)
    per_epoch = rows_per_epoch / batch_size
    batches_per_epoch = math.floor(per_epoch) if drop_remainder else math.ceil(per_epoch)
  if tune_malloc:
    raise_malloc_thresholds()
  if worker_count > 0:
    _mark_flags_parsed()
    options = grain.MultiprocessingOptions(
      num_workers=worker_count, per_worker_buffer_size=worker_buffer_size
    )
    batches = batches.mp_prefetch(options, worker_init_fn=_init_worker if tune_malloc else None)
  return Loader(batches, batch_size, length, data.sample_rate, data.class_names, n, batches_per_epoch)


def raise_malloc_thresholds(mmap_threshold: int = 64 << 20, trim_threshold: int = 256 << 20) -> bool:
  """Makes glibc reuse freed heap memory for the loader's large short-lived buffers.

  Every clip allocates a ~320 KB record and every batch a ~20 MB array (5 s at 32 kHz, batch 64). With
  glibc's defaults such blocks are mmap'ed and unmapped each time, so every page faults in again: measured
  here, 70% of the loader's CPU time was kernel time and throughput was 2.3k clips per CPU-second; with these
  thresholds, 8.5k. The cost is that up to `trim_threshold` of freed memory stays mapped in the process.
  Equivalent to `MALLOC_MMAP_THRESHOLD_` / `MALLOC_TRIM_THRESHOLD_` in the environment; no-op off glibc.

  Returns:
    Whether the thresholds were set.
  """
  import ctypes
  import sys

  if not sys.platform.startswith("linux"):
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
    m_trim_threshold, m_mmap_threshold = -1, -3  # from malloc.h
    return bool(
      libc.mallopt(m_trim_threshold, trim_threshold) and libc.mallopt(m_mmap_threshold, mmap_threshold)
    )
  except (OSError, AttributeError):  # musl or another libc
    return False


def _init_worker(worker_index: int, worker_count: int) -> None:
  del worker_index, worker_count
  raise_malloc_thresholds()


def _is_example(example: int) -> bool:
  return example >= 0


def _mark_flags_parsed() -> None:
  """grain's worker processes read absl flags; outside `absl.app.run` they must be marked parsed first."""
  from absl import flags

  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
