"""`scripts/keras_baseline.py`, the rebuilt Keras 1D-CNN the folder recipe is compared with: its validation split
keeps a source recording's clips together, its noise is mixed at the SNR drawn, and a whole run trains, picks a
state on validation and scores every `Test/` clip (a tone-vs-noise folder it must learn)."""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import soundfile as sf

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import keras_baseline  # noqa: E402


def test_grouped_split_keeps_each_source_recording_on_one_side():
  names = [f"1-{src}-{take}-0.wav" for src in range(100, 120) for take in "AB"]
  val = keras_baseline.grouped_split(names, n_val=9, seed=3)
  assert 10 <= val.sum() <= 11  # whole groups of two until at least 9
  for src in range(100, 120):
    sides = {bool(v) for n, v in zip(names, val, strict=True) if n.startswith(f"1-{src}-")}
    assert len(sides) == 1
  assert not np.array_equal(val, keras_baseline.grouped_split(names, n_val=9, seed=4))


def test_noise_is_mixed_at_the_snr_drawn():
  rng = np.random.default_rng(0)
  row = (0.1 * np.sin(np.arange(keras_baseline.WINDOW) / 7.0)).astype(np.float32)
  bg = np.random.default_rng(1).normal(0, 0.3, 3 * keras_baseline.WINDOW).astype(np.float32)
  mixed = keras_baseline.add_noise(row, [bg], rng)
  snr_db = np.random.default_rng(0)  # the same draws: the crop start, then the SNR
  snr_db.integers(1)
  snr_db.integers(bg.shape[0] - keras_baseline.WINDOW + 1)
  want = snr_db.uniform(0.0, 20.0)
  got = 10 * np.log10(np.mean(row**2) / np.mean((mixed - row) ** 2))
  assert abs(got - want) < 1e-3


def _write(folder: pathlib.Path, name: str, wave: np.ndarray, sr: int) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  sf.write(folder / name, wave, sr)


def test_a_run_learns_tone_from_noise_and_scores_every_test_clip(tmp_path):
  rng = np.random.default_rng(0)
  for split, n in (("Training", 24), ("Test", 6)):
    for i in range(n):
      sr = (8000, 16000, 22050)[i % 3]
      t = np.arange(int(sr * rng.uniform(0.5, 3.0))) / sr
      _write(tmp_path / split / "tone", f"1-{i}-A-0.wav", 0.3 * np.sin(2 * np.pi * 1000 * t), sr)
      _write(tmp_path / split / "noise", f"1-{100 + i}-A-1.wav", rng.normal(0, 0.1, t.shape[0]), sr)
  _write(tmp_path / "Noise" / "wind", "w.wav", rng.normal(0, 0.05, 16000 * 3), 16000)
  out = keras_baseline.run(tmp_path, seed=0, steps=300, batch=16, n_val=6)
  assert out["train_clips"] == 42 and out["test_clips"] == 12
  assert out["test_accuracy"] >= 0.9 and out["validation_accuracy"] >= 0.8
  assert out["history"][-1][0] == 300 and out["best_step"] in {s for s, _ in out["history"]}
