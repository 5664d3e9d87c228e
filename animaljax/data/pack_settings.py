"""What `animaljax.data.packing.pack` may be asked to do: its settings, their ranges, and one check of all.

`validate_settings` takes `pack`'s keyword arguments (same names and defaults) and returns the `PackSettings`
that decide the shards, or raises a ValueError naming the bad setting. `pack` calls it before it reads or
writes anything, and so does the `pack` command before it lists the corpus (which can take a while).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Sequence
from typing import Any

FILE_FORMATS = ("tfrecord", "array_record")
CLIP_MODES = ("keep", "window")
SILENT_MODES = ("warn", "reject", "allow")
# Rates outside this range are typos (32 for 32000, 3200000): no recorder or model works there.
SAMPLE_RATE_RANGE = (1000, 768_000)
# Windows overlap at most this many times (hop >= window / MAX_OVERLAP): a tiny hop multiplies the stored audio
# (a hop of one sample writes every sample 160,000 times for 5 s windows at 32 kHz), i.e. fills the disk.
MAX_OVERLAP = 100
# Dataset names become file-name prefixes: no separators, nothing TFDS would refuse.
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclasses.dataclass(frozen=True)
class PackSettings:
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
) -> PackSettings:
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
  return PackSettings(
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
