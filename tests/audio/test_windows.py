"""The two window rules: the packer's (shorter tail window kept if long enough) and the cover rule (full
windows, the last one aligned to the clip's end) used by windowed evaluation and `Predictor`."""

from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from animaljax.audio.windows import cover_window_starts, pack_window_starts

REPO = pathlib.Path(__file__).resolve().parents[2]


def _list(starts: np.ndarray) -> list[int]:
  assert starts.dtype == np.int64 and starts.ndim == 1
  return starts.tolist()


@pytest.mark.parametrize(
  "num_samples, window, hop, min_window, expected",
  [
    # 12 s at 1 Hz "samples", 5 s windows: full windows at 0 and 5; the 2 s tail is under min_window.
    (12, 5, 5, 3, [0, 5]),
    (13, 5, 5, 3, [0, 5, 10]),  # ragged tail of 3 s: kept as a shorter window (not padded)
    (12, 5, 2, 3, [0, 2, 4, 6, 8]),  # hop 2: the tail from 10 is 2 s, dropped
    (4, 5, 5, 3, [0]),  # shorter than a window but long enough: kept whole
    (2, 5, 5, 3, []),  # shorter than min_window: no window (the packer rejects the clip)
    (0, 5, 5, 1, []),
    (5, 5, 5, 3, [0]),  # exactly one window
    (15, 5, 5, 3, [0, 5, 10]),  # exact multiple: no tail
    (15, 5, 5, 5, [0, 5, 10]),
    (14, 5, 5, 5, [0, 5]),  # a 4 s tail is under a full min_window
    (20, 5, 8, 3, [0, 8, 16]),  # hop > window: samples 5..8 and 13..16 are skipped; a 4 s tail from 16
    (18, 5, 8, 3, [0, 8]),  # hop > window: the tail from 16 holds 2 s, dropped
  ],
)
def test_pack_window_starts(num_samples, window, hop, min_window, expected):
  starts = pack_window_starts(num_samples, window, hop, min_window)
  assert _list(starts) == expected
  # Every window but a tail is full length; a tail is shorter than a window and at least min_window long.
  for s in starts[:-1]:
    assert s + window <= num_samples
  if len(starts):
    assert min_window <= min(window, num_samples - starts[-1])


@pytest.mark.parametrize(
  "num_samples, window, hop, expected",
  [
    (3, 5, 5, [0]),  # shorter than a window: one window (the caller pads it)
    (0, 5, None, [0]),
    (5, 5, None, [0]),  # exactly one window
    (15, 5, None, [0, 5, 10]),  # exact multiple: no extra window
    (13, 5, None, [0, 5, 8]),  # ragged tail: a full window ending at 13 overlaps its predecessor
    (13, 5, 3, [0, 3, 6, 8]),
    (12, 5, 2, [0, 2, 4, 6, 7]),
    (20, 5, 8, [0, 8, 15]),  # hop > window: gaps between windows are skipped; the end is still covered
    (13, 5, 8, [0, 8]),  # hop > window landing exactly on the end
  ],
)
def test_cover_window_starts(num_samples, window, hop, expected):
  starts = cover_window_starts(num_samples, window, hop)
  assert _list(starts) == expected
  if num_samples > window:  # every window full length, the last one ending at the clip's end
    assert all(s + window <= num_samples for s in starts)
    assert starts[-1] + window == num_samples
    assert np.all(np.diff(starts) > 0)


def test_the_rules_differ_only_in_the_tail():
  """Where a full window fits they agree; past that, pack keeps a shorter window, cover a shifted full one."""
  rng = np.random.default_rng(0)
  for _ in range(500):
    window = int(rng.integers(1, 40))
    hop = int(rng.integers(1, 2 * window + 2))
    n = int(rng.integers(window + 1, 200))
    packed = pack_window_starts(n, window, hop, 1).tolist()
    covered = cover_window_starts(n, window, hop).tolist()
    full = list(range(0, n - window + 1, hop))
    assert packed[: len(full)] == covered[: len(full)] == full
    tail = full[-1] + hop
    assert packed[len(full) :] == ([tail] if tail < n else [])
    assert covered[len(full) :] == ([n - window] if full[-1] + window < n else [])


@pytest.mark.parametrize(
  "call",
  [
    lambda: pack_window_starts(10, 0, 5, 1),
    lambda: pack_window_starts(10, 5, 0, 1),
    lambda: pack_window_starts(10, 5, 5, 0),
    lambda: pack_window_starts(10, 5, 5, 6),  # min_window over a window
    lambda: pack_window_starts(-1, 5, 5, 1),
    lambda: cover_window_starts(10, 5, 0),
    lambda: cover_window_starts(10, 0),
  ],
)
def test_bad_arguments_are_refused(call):
  with pytest.raises(ValueError):
    call()


def test_windows_is_numpy_only():
  """The rule is shared by the packer (no jax in its workers) and inference: it must not pull in jax."""
  tree = ast.parse((REPO / "animaljax" / "audio" / "windows.py").read_text())
  imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
  imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
  assert imported <= {"__future__", "numpy"}
