"""Random access over packed shards: the packed folder, and an index of TFRecord files as a grain source.

grain 0.2.18 reads TFRecord only sequentially (`grain.experimental.TFRecordIterDataset`), which rules out a
global shuffle and an exact resume. A TFRecord file is just a sequence of
`[uint64 length][uint32 masked crc32c(length)][data][uint32 masked crc32c(data)]`, so one pass over the
12-byte headers (seeking past the data) gives `(shard, offset, length)` for every record; with that index a
record is one `os.pread`. The index is cached next to the shards (`tfrecord_index.npz`, ~24 bytes a record)
when the folder is writable and rebuilt when a shard's size or mtime changes.

ArrayRecord shards already support random access: `open_shards` wraps them in grain's `ArrayRecordDataSource`,
so the loader has one code path (raw serialized `tf.train.Example` bytes) for both formats.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import struct
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

INDEX_FILE = "tfrecord_index.npz"
_HEADER = struct.Struct("<QI")  # length, masked crc32c of the 8 length bytes
_FOOTER_BYTES = 4  # masked crc32c of the data


def _crc32c_table() -> list[int]:
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    table.append(crc)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli) of `data`; pure Python, meant for the 8-byte record headers only."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """The TFRecord checksum: crc32c rotated right by 15 bits plus a constant."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def scan_tfrecord(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """Reads the record headers of one TFRecord file.

  Returns:
    `(offsets, lengths)`, both int64 `(num_records,)`: the byte offset of each record's data and its length.

  Raises:
    ValueError: a header checksum does not match or the file ends inside a record (truncated or not a
      TFRecord file).
  """
  size = os.path.getsize(path)
  offsets, lengths = [], []
  with open(path, "rb", buffering=0) as f:
    pos = 0
    while pos < size:
      header = os.pread(f.fileno(), _HEADER.size, pos)
      if len(header) < _HEADER.size:
        raise ValueError(f"{path}: truncated record header at byte {pos}")
      length, crc = _HEADER.unpack(header)
      if masked_crc32c(header[:8]) != crc:
        raise ValueError(f"{path}: bad record header checksum at byte {pos} (not a TFRecord file or corrupt)")
      data_start = pos + _HEADER.size
      pos = data_start + length + _FOOTER_BYTES
      if pos > size:
        raise ValueError(
          f"{path}: truncated record at byte {data_start - _HEADER.size} (file is {size} bytes)"
        )
      offsets.append(data_start)
      lengths.append(length)
  return np.asarray(offsets, np.int64), np.asarray(lengths, np.int64)


def _stat_key(path: pathlib.Path) -> tuple[int, int]:
  st = path.stat()
  return st.st_size, st.st_mtime_ns


def _load_cache(cache: pathlib.Path) -> dict[str, tuple[int, int, np.ndarray, np.ndarray]]:
  """Reads the sidecar index: `{file name: (size, mtime_ns, offsets, lengths)}`; empty when absent/unreadable."""
  if not cache.is_file():
    return {}
  try:
    with np.load(cache, allow_pickle=False) as z:
      names, stats, counts = z["files"], z["stats"], z["counts"]
      offsets, lengths = z["offsets"], z["lengths"]
  except (OSError, ValueError, KeyError):
    return {}
  bounds = np.concatenate([[0], np.cumsum(counts)])
  return {
    str(name): (
      int(stat[0]),
      int(stat[1]),
      offsets[bounds[i] : bounds[i + 1]],
      lengths[bounds[i] : bounds[i + 1]],
    )
    for i, (name, stat) in enumerate(zip(names, stats, strict=True))
  }


def _save_cache(cache: pathlib.Path, entries: dict[str, tuple[int, int, np.ndarray, np.ndarray]]) -> None:
  names = sorted(entries)
  tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
  try:
    np.savez(
      tmp,
      files=np.asarray(names, dtype=np.str_),
      stats=np.asarray([entries[n][:2] for n in names], np.int64).reshape(-1, 2),
      counts=np.asarray([len(entries[n][2]) for n in names], np.int64),
      offsets=np.concatenate([entries[n][2] for n in names] or [np.zeros(0, np.int64)]),
      lengths=np.concatenate([entries[n][3] for n in names] or [np.zeros(0, np.int64)]),
    )
    os.replace(tmp, cache)  # atomic: concurrent loaders never read a half-written index
  except OSError:  # read-only dataset folder: keep the index in memory only
    tmp.unlink(missing_ok=True)


def index_tfrecords(paths: Sequence[pathlib.Path], cache_dir: pathlib.Path | None = None):
  """Indexes TFRecord shards, reusing and updating `cache_dir/tfrecord_index.npz` where possible.

  Args:
    paths: the shard files, in record order.
    cache_dir: where the sidecar index lives (the dataset folder); None to always scan.

  Returns:
    `(shard, offsets, lengths)`: int32/int64/int64 arrays `(num_records,)` over all shards in order.
  """
  cache = cache_dir / INDEX_FILE if cache_dir is not None else None
  entries = _load_cache(cache) if cache is not None else {}
  changed = False
  shards, offsets, lengths = [], [], []
  for i, path in enumerate(paths):
    size, mtime = _stat_key(path)
    entry = entries.get(path.name)
    if entry is None or entry[:2] != (size, mtime):
      off, ln = scan_tfrecord(path)
      entry = entries[path.name] = (size, mtime, off, ln)
      changed = True
    shards.append(np.full(len(entry[2]), i, np.int32))
    offsets.append(entry[2])
    lengths.append(entry[3])
  if changed and cache is not None:
    _save_cache(cache, entries)
  empty = np.zeros(0, np.int64)
  return (
    np.concatenate(shards or [np.zeros(0, np.int32)]),
    np.concatenate(offsets or [empty]),
    np.concatenate(lengths or [empty]),
  )


class TFRecordShardSource:
  """A grain `RandomAccessDataSource` over indexed TFRecord shards: `source[i]` is record i's raw bytes.

  Picklable for grain worker processes: only paths and the index travel; each process opens its own file
  descriptors lazily (pread needs no shared file position, so they are safe across threads too).
  """

  def __init__(self, paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike | None = None):
    self._paths = [pathlib.Path(p) for p in paths]
    self._shard, self._offsets, self._lengths = index_tfrecords(
      self._paths, pathlib.Path(cache_dir) if cache_dir is not None else None
    )
    self._fds: dict[int, int] = {}
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self._offsets)

  def __getitem__(self, index: int) -> bytes:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"record {index} out of range for {len(self)} records")
    shard = int(self._shard[index])
    fd = self._fds.get(shard)
    if fd is None:
      with self._lock:
        fd = self._fds.get(shard)
        if fd is None:
          fd = self._fds[shard] = os.open(self._paths[shard], os.O_RDONLY)
    length = int(self._lengths[index])
    data = os.pread(fd, length, int(self._offsets[index]))
    if len(data) != length:
      raise OSError(
        f"{self._paths[shard]}: short read of record {index} (file changed since it was indexed?)"
      )
    return data

  def __getstate__(self):
    state = self.__dict__.copy()
    state["_fds"], state["_lock"] = {}, None  # descriptors and locks do not cross processes
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._lock = threading.Lock()

  def close(self) -> None:
    with self._lock:
      for fd in self._fds.values():
        os.close(fd)
      self._fds.clear()

  def __del__(self):
    try:
      self.close()
    except Exception:  # noqa: BLE001 - interpreter shutdown
      pass

  def __repr__(self) -> str:
    return f"TFRecordShardSource({len(self._paths)} shards, {len(self)} records)"


def open_shards(paths: Sequence[pathlib.Path], file_format: str, cache_dir: pathlib.Path | None = None):
  """A random-access source of raw serialized examples over `paths` in the packed `file_format`."""
  if file_format == "tfrecord":
    return TFRecordShardSource(paths, cache_dir)
  if file_format == "array_record":
    import grain  # lazy: the TFRecord path does not need it

    return grain.sources.ArrayRecordDataSource([str(p) for p in paths])
  raise ValueError(f"unknown packed file_format {file_format!r}; expected 'tfrecord' or 'array_record'")


class PackedDataset:
  """A folder written by `python -m animaljax.pack`: its summary, splits and shard files.

  Args:
    path: the `--out` folder of the packer (a TFDS dataset directory plus `summary.json`).
  """

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)
    how = f"pack one with `python -m animaljax.pack --out {self.path} ...` (see `python -m animaljax.pack --help`)"
    if not self.path.is_dir():
      raise FileNotFoundError(f"packed dataset folder {self.path} does not exist; {how}")
    summary = self.path / "summary.json"
    if not summary.is_file():
      raise FileNotFoundError(f"{self.path} has no summary.json, so it is not a packed dataset; {how}")
    self.summary: dict[str, Any] = json.loads(summary.read_text())
    self.name: str = self.summary["name"]
    self.file_format: str = self.summary.get("file_format", "tfrecord")
    self.sample_rate: int = int(self.summary["sample_rate"])
    self.class_names: tuple[str, ...] = tuple(self.summary["class_names"])
    self.splits: dict[str, dict[str, Any]] = self.summary["splits"]
    # Records carry label sets to learn as multi-hot targets (packs written before the option: single-label).
    self.multi_label: bool = bool(self.summary.get("multi_label", False))

  def split_names(self, split: str) -> list[str]:
    """`"fold1+fold2"` -> `["fold1", "fold2"]`, checking each name exists."""
    names = [s.strip() for s in split.split("+")]
    unknown = [s for s in names if s not in self.splits]
    if unknown or not names:
      raise KeyError(
        f"unknown split {unknown or split!r} in {self.path}; available splits: {sorted(self.splits)}"
      )
    return names

  def num_examples(self, split: str) -> int:
    return sum(int(self.splits[s]["num_examples"]) for s in self.split_names(split))

  def shard_paths(self, split: str) -> list[pathlib.Path]:
    """The shard files of a split expression, in record order (split by split, shard index within)."""
    paths = []
    for s in self.split_names(split):
      pattern = re.compile(
        rf"{re.escape(self.name)}-{re.escape(s)}\.{re.escape(self.file_format)}-(\d+)-of-(\d+)"
      )
      found = sorted(
        (int(m.group(1)), p) for p in self.path.iterdir() if (m := pattern.fullmatch(p.name)) is not None
      )
      expected = int(self.splits[s].get("num_shards", len(found)))
      if len(found) != expected:
        raise FileNotFoundError(
          f"{self.path}: split {s!r} should have {expected} {self.file_format} shards, found {len(found)}"
        )
      paths.extend(p for _, p in found)
    return paths

  def source(self, split: str):
    """A random-access source of serialized examples over a split expression, checked against the summary."""
    source = open_shards(self.shard_paths(split), self.file_format, cache_dir=self.path)
    if len(source) != self.num_examples(split):
      raise ValueError(
        f"{self.path}: split {split!r} has {len(source)} records in its shards but summary.json says "
        f"{self.num_examples(split)}; the pack is incomplete or corrupt, pack it again"
      )
    return source

  def default_clip_seconds(self) -> float | None:
    """The clip length when every packed clip has the same length (windowed packs), else None."""
    if self.summary.get("clip_mode") == "window" and self.summary.get("window_seconds"):
      return float(self.summary["window_seconds"])
    return None
