"""`scripts/measure_pretrained_probe.py` without its (non-free, not shipped) backbone: the windows it embeds
follow the input rule, a clip's vector is the mean of its windows', and the labels come from the class folders."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import soundfile as sf

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import measure_pretrained_probe as probe  # noqa: E402


def test_windows_loop_short_clips_and_cover_long_ones():
  short = np.arange(1, 1001, dtype=np.float32)
  (row,) = probe.clip_windows(short)
  assert row.shape == (probe.WINDOW,) and row[999] == 1000 and row[1000] == 1  # looped end to end
  np.testing.assert_array_equal(row, short[np.arange(probe.WINDOW) % 1000])
  long = np.arange(int(2.5 * probe.WINDOW), dtype=np.float32)
  rows = probe.clip_windows(long)
  assert rows.shape == (3, probe.WINDOW) and rows[-1, -1] == long[-1] and rows[1, 0] == probe.WINDOW


def test_a_folder_is_embedded_clip_by_clip_with_its_class_names(tmp_path):
  rng = np.random.default_rng(0)
  for name, seconds in (("frog", 1.0), ("frog", 7.0), ("owl", 4.0)):
    (tmp_path / name).mkdir(exist_ok=True)
    sf.write(tmp_path / name / f"{seconds}.wav", rng.normal(0, 0.1, int(16000 * seconds)), 16000)
  calls = []

  def embed(rows):  # a stand-in backbone: each window's mean and its count
    calls.append(rows.shape[0])
    return np.stack([rows.mean(1), np.full(rows.shape[0], rows.shape[0])], axis=1)

  vectors, labels = probe.embed_folder(tmp_path, embed)
  assert labels == ["frog", "frog", "owl"] and vectors.shape == (3, 2)
  assert calls == [1, 3, 2]  # 1 s looped to one 3 s window; 7 s: three; 4 s: two (the last end-aligned)
  assert probe.macro_f1(["a", "a", "b"], ["a", "b", "b"]) == np.mean([2 / 3, 2 / 3])
