"""Event extraction from framewise probabilities on a synthetic array with known events."""

from __future__ import annotations

import numpy as np
import pytest

from animaljax.inference.framewise import Event, events

HOP = 0.01


def _array() -> np.ndarray:
  p = np.full((100, 2), 0.1)
  p[10:30, 0] = 0.9  # bird: 0.10-0.30 s
  p[20, 0] = 0.95
  p[50:52, 0] = 0.8  # bird: a 20 ms blip
  p[40:60, 1] = 0.7  # frog: 0.40-0.60 s, a 30 ms dip at 0.45
  p[45:48, 1] = 0.2
  p[95:, 1] = 0.6  # frog to the end
  return p


def test_exact_onsets_offsets_and_peaks():
  got = events(_array(), HOP, ["bird", "frog"])
  assert [(round(e.onset_s, 6), round(e.offset_s, 6), e.label) for e in got] == [
    (0.1, 0.3, "bird"), (0.4, 0.45, "frog"), (0.48, 0.6, "frog"), (0.5, 0.52, "bird"), (0.95, 1.0, "frog"),
  ]  # fmt: skip
  assert got[0].peak == pytest.approx(0.95)


def test_merge_min_duration_thresholds_and_offset():
  got = events(_array(), HOP, ["bird", "frog"], merge_gap_s=0.05, min_duration_s=0.1, offset_s=2.0)
  assert [(round(e.onset_s, 6), round(e.offset_s, 6), e.label) for e in got] == [
    (2.1, 2.3, "bird"), (2.4, 2.6, "frog"),
  ]  # fmt: skip
  assert events(_array(), HOP, ["bird", "frog"], thresholds=[0.92, None]) == [Event(0.2, 0.21, "bird", 0.95)]


def test_bad_shape():
  with pytest.raises(ValueError):
    events(np.zeros((5, 3)), HOP, ["a", "b"])
