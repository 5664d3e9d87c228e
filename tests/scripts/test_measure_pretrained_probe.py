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


def _folder(root: pathlib.Path, files) -> None:
  rng = np.random.default_rng(0)
  for name, seconds, freq in files:
    (root / name).mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(
      root / name / f"{seconds}-{freq}.wav",
      0.3 * np.sin(2 * np.pi * freq * t) + rng.normal(0, 0.01, t.size),
      16000,
    )


def test_a_folder_is_embedded_clip_by_clip_with_its_class_names(tmp_path):
  _folder(tmp_path, [("frog", 1.0, 500), ("frog", 7.0, 500), ("owl", 4.0, 2000)])
  calls = []

  def embed(rows):  # a stand-in backbone: each window's mean and its count
    calls.append(rows.shape[0])
    return np.stack([rows.mean(1), np.full(rows.shape[0], rows.shape[0])], axis=1)

  vectors, labels = probe.embed_folder(
    tmp_path, lambda f: embed(probe.clip_windows(probe.io.load_audio(f, probe.SAMPLE_RATE))).mean(0)
  )
  assert labels == ["frog", "frog", "owl"] and vectors.shape == (3, 2)
  assert calls == [1, 3, 2]  # 1 s looped to one 3 s window; 7 s: three; 4 s: two (the last end-aligned)
  assert probe.macro_f1(["a", "a", "b"], ["a", "b", "b"]) == np.mean([2 / 3, 2 / 3])


def test_a_model_of_ours_is_a_backbone_too(tmp_path):
  import jax

  from animaljax.bundle import export_bundle
  from animaljax.inference import Predictor
  from animaljax.models.classifier import cnn14_config, make_model

  config = cnn14_config(3, 16000, 1 / 16, variant="cnn6")
  variables = make_model(config).init({"params": jax.random.PRNGKey(0)}, np.zeros((1, 16000)), train=False)
  bundle = export_bundle(Predictor(config, variables, ["a", "b", "c"], clip_seconds=1.0), tmp_path / "m")
  for split, n in (("Training", 4), ("Test", 2)):
    _folder(
      tmp_path / "corpus" / split,
      [("low", 0.5 + i, 300) for i in range(n)] + [("high", 0.5 + i, 3000) for i in range(n)],
    )
  out = probe.run(tmp_path / "corpus", model=str(bundle))
  assert out["train_clips"] == 8 and out["test_clips"] == 4 and out["embed_dim"] == config.encoder.embed_dim
  assert (
    out["test_accuracy"] == 1.0
  )  # a tone at 300 Hz against one at 3 kHz: even random features separate them
