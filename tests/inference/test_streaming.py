"""Recordings of any length (issue 17): `Predictor.scan` streams files block by block, and its windows,
probabilities and embeddings are those of the whole file decoded at once and windowed by the one rule."""

from __future__ import annotations

import pathlib

import jax
import numpy as np
import pytest
import soundfile as sf

from animaljax.audio.io import load_audio
from animaljax.inference import streaming
from animaljax.inference.predictor import Predictor
from animaljax.models.classifier import cnn14_config, make_model

HOP_S = 0.37  # 5920 samples at 16 kHz: divides neither the 1 s window nor any block
BATCH = 4
BLOCK = 3001  # frames of the file: ~54 blocks for 7.3 s at 22.05 kHz


@pytest.fixture(scope="module")
def predictors() -> dict[str, Predictor]:
  """A random-init CNN6 at 1/16 width on 16 kHz, 1 s windows, once per short-clip rule."""
  config = cnn14_config(3, 16000, width=1 / 16, variant="cnn6")
  variables = make_model(config).init({"params": jax.random.PRNGKey(0)}, np.zeros((1, 16000)), train=False)
  return {
    rule: Predictor(config, variables, ["a", "b", "c"], clip_seconds=1.0, short_clips=rule)
    for rule in ("pad", "loop", "native")
  }


def _write(path: pathlib.Path, seconds: float, sr: int, channels: int = 1, subtype: str = "FLOAT") -> str:
  rng = np.random.default_rng(round(seconds * 1000) + channels)
  n = round(seconds * sr)
  t = np.arange(n) / sr
  x = 0.3 * np.sin(2 * np.pi * (500 + 300 * t))[:, None] + 0.1 * rng.normal(size=(n, channels))
  sf.write(path, x.astype(np.float32), sr, subtype=subtype)
  return str(path)


def _whole_file(p: Predictor, path: str, hop_s: float | None) -> tuple[np.ndarray, ...]:
  """The reference, as before streaming: the file decoded whole (`load_audio`), windowed by
  `cover_window_starts` / `pad_short` (`Predictor.windows`), run in batches of the same size."""
  wave = load_audio(path, p.sample_rate, silent="allow", max_seconds=None)
  hop = p.hop_samples(hop_s)
  windows = p.windows(wave, hop)
  outs = [p.run_windows(windows[i : i + BATCH]) for i in range(0, len(windows), BATCH)]
  probs, embs = (np.concatenate([o[k] for o in outs]) for k in (0, 1))
  return p.window_starts(wave.shape[0], hop), probs, embs, wave.shape[0]


def _check_equal(p: Predictor, scan, path: str, hop_s: float | None) -> None:
  starts, probs, embs, n = _whole_file(p, path, hop_s)
  assert scan.error is None and scan.file == path
  assert scan.duration_s == n / p.sample_rate
  # the same windows, the end-aligned one too
  np.testing.assert_array_equal(scan.start_s, starts / p.sample_rate)
  np.testing.assert_array_equal(scan.end_s, np.minimum(starts + p.clip_samples, n) / p.sample_rate)
  np.testing.assert_allclose(scan.probs, probs, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(scan.embeddings, embs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
  "name,sr,channels,subtype",
  [("long.wav", 22050, 1, "FLOAT"), ("long.flac", 22050, 1, "PCM_16"), ("stereo3.wav", 44100, 3, "PCM_24")],
)
@pytest.mark.parametrize("hop_s", [HOP_S, None])
def test_streaming_equals_the_whole_file(predictors, tmp_path, name, sr, channels, subtype, hop_s):
  p = predictors["pad"]
  path = _write(tmp_path / name, 7.3331, sr, channels, subtype)
  (scan,) = p.scan([path], hop_seconds=hop_s, batch_size=BATCH, block_frames=BLOCK)
  assert len(scan.start_s) == (19 if hop_s else 8)
  _check_equal(p, scan, path, hop_s)
  # and `scan_waves` of the decoded file (the path `evaluate` takes) runs the same loop to the same numbers
  wave = load_audio(path, 16000, silent="allow", max_seconds=None)
  (whole,) = p.scan_waves([(path, wave)], hop_seconds=hop_s, batch_size=BATCH)
  np.testing.assert_array_equal(whole.probs, scan.probs)
  np.testing.assert_array_equal(whole.embeddings, scan.embeddings)


@pytest.mark.parametrize("rule", ["pad", "loop", "native"])
def test_a_file_shorter_than_a_window_is_fitted_as_before(predictors, tmp_path, rule):
  p = predictors[rule]
  path = _write(tmp_path / "short.flac", 0.6123, 22050, 2, "PCM_16")
  (scan,) = p.scan([path], hop_seconds=HOP_S, batch_size=BATCH, block_frames=1000)
  assert scan.start_s.tolist() == [0.0] and scan.end_s.tolist() == [scan.duration_s]
  _check_equal(p, scan, path, HOP_S)


def test_a_failing_file_is_one_named_error_and_the_next_is_read(predictors, tmp_path, capsys):
  p = predictors["pad"]
  good = _write(tmp_path / "a.wav", 2.5, 16000)
  cut = pathlib.Path(_write(tmp_path / "cut.flac", 6.0, 22050, 1, "PCM_16"))
  cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])  # decodes ~3 s, then loses sync
  other = _write(tmp_path / "b.flac", 3.3, 22050, 2, "PCM_16")
  files = [good, str(cut), str(tmp_path / "missing.wav"), other]
  # batches of 3 span the files, so windows of the cut file are in flight when it fails
  scans = list(p.scan(files, hop_seconds=HOP_S, batch_size=3, block_frames=2000))
  assert [s.file for s in scans] == files
  assert [s.error is None for s in scans] == [True, False, False, True]
  assert "truncated or corrupt FLAC" in str(scans[1].error) and scans[1].error.path == str(cut)
  assert "no such file" in str(scans[2].error)
  _check_equal(p, scans[0], files[0], HOP_S)
  ref = _whole_file(p, files[3], HOP_S)
  np.testing.assert_array_equal(scans[3].start_s, ref[0] / 16000)
  np.testing.assert_allclose(scans[3].probs, ref[1], rtol=1e-6, atol=1e-7)


def test_progress_counts_the_audio(predictors, tmp_path):
  p = predictors["pad"]
  path = _write(tmp_path / "x.wav", 3.0, 22050)
  seconds: list[float] = []
  list(p.scan([path], block_frames=5000, on_audio=seconds.append))
  assert len(seconds) > 5 and sum(seconds) == pytest.approx(3.0, abs=1 / 16000)


def test_memory_holds_a_block_not_the_file(predictors, tmp_path, monkeypatch):
  """The windower never holds more than one block plus one window of audio, however long the file."""
  from animaljax.audio import windows

  biggest = []
  push = windows.CoverWindows.push

  def spy(self, block):
    biggest.append(self._buf.shape[0] + block.shape[0])  # what this push holds: the carry and the block
    return push(self, block)

  monkeypatch.setattr(windows.CoverWindows, "push", spy)
  p = predictors["pad"]
  path = _write(tmp_path / "x.wav", 20.0, 16000)
  (scan,) = p.scan([path], hop_seconds=HOP_S, block_frames=4000)
  assert len(scan.start_s) == 53 and len(biggest) == 80 and max(biggest) <= 4000 + p.clip_samples


def test_read_ahead_keeps_order_and_stops():
  assert list(streaming.read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]
  assert list(streaming.read_ahead(iter([]))) == []
