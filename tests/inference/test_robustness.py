"""Robustness curves: held-out noise mixed at exact SNRs, the same mixtures for every model and SNR, scored through
`evaluate`'s own path (real ESC-50 clips, real wind)."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from predict_support import LABELS

from animaljax import evaluate as evaluate_cmd
from animaljax.inference import robustness


@pytest.fixture(scope="module")
def noise(wind_root) -> list[np.ndarray]:
  return robustness.noise_recordings(wind_root, 16000)[:4]


def test_mixtures_are_exact_seeded_and_shared_across_snrs(noise):
  rng = np.random.default_rng(0)
  wave = (0.1 * rng.normal(size=12345)).astype(np.float32)
  residuals = {}
  for snr in (20.0, 5.0, -3.0):
    mixed = robustness.mixer(noise, snr, seed=7)("clip-a.wav", wave)
    residual = mixed.astype(np.float64) - wave
    measured = 10 * np.log10(np.mean(wave.astype(np.float64) ** 2) / np.mean(residual**2))
    assert measured == pytest.approx(snr, abs=1e-3)
    residuals[snr] = residual
  # The same noise and offset at every SNR: the residuals differ by a gain only.
  ratio = residuals[5.0] / np.where(residuals[20.0] == 0, np.nan, residuals[20.0])
  assert np.nanstd(ratio) < 1e-3 * np.nanmean(np.abs(ratio))
  again = robustness.mixer(noise, 5.0, seed=7)("clip-a.wav", wave)
  np.testing.assert_array_equal(again, wave + residuals[5.0].astype(np.float32))
  other = robustness.mixer(noise, 5.0, seed=7)("clip-b.wav", wave)
  assert not np.allclose(other, again)  # another clip draws its own noise or offset


def test_bad_noise_and_snr_are_one_line_errors(tmp_path):
  with pytest.raises(ValueError, match="--snr must be"):
    robustness.parse_snrs("10,loud")
  with pytest.raises(FileNotFoundError, match="not a folder"):
    robustness.noise_recordings(tmp_path / "nope", 16000)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="holds no audio"):
    robustness.noise_recordings(tmp_path / "empty", 16000)


def test_curve_through_the_evaluate_command(bundle, esc50_root, wind_root, tmp_path):
  tree = tmp_path / "tree"
  for i, clip in enumerate(sorted((esc50_root / "audio").glob("*.flac"))[:8]):
    (tree / LABELS[i % 4]).mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, tree / LABELS[i % 4] / clip.name)
  noise_dir = tmp_path / "noise"
  noise_dir.mkdir()
  for clip in sorted(wind_root.glob("3-*.flac"))[:3]:  # held-out wind (fold 3)
    shutil.copy(clip, noise_dir / clip.name)
  out = tmp_path / "ev"
  code = evaluate_cmd.main(["--model", str(bundle), "--files", str(tree), "--noise", str(noise_dir), "--snr",
                            "100,0,-20", "--out", str(out), "--quiet"])  # fmt: skip
  assert code == 0
  rows = list(csv.DictReader((out / robustness.CURVE_CSV).open()))
  assert [r["snr_db"] for r in rows] == ["clean", "100", "0", "-20"]
  assert all(int(r["num_examples"]) == 8 for r in rows)
  clean = json.loads((out / "metrics.json").read_text())
  assert float(rows[0]["accuracy"]) == pytest.approx(
    clean["accuracy"]
  )  # the clean row is evaluate's own score
  assert float(rows[1]["accuracy"]) == pytest.approx(clean["accuracy"])  # noise 100 dB down changes nothing
  assert (out / robustness.CURVE_PNG).read_bytes()[:4] == b"\x89PNG"
  record = json.loads((out / robustness.CURVE_JSON).read_text())
  assert [r["snr_db"] for r in record["curve"]] == [None, 100.0, 0.0, -20.0]
  # A second run draws the very same mixtures: the same curve.
  again = tmp_path / "again"
  assert evaluate_cmd.main(["--model", str(bundle), "--files", str(tree), "--noise", str(noise_dir), "--snr",
                            "100,0,-20", "--out", str(again), "--quiet"]) == 0  # fmt: skip
  assert (again / robustness.CURVE_CSV).read_text() == (out / robustness.CURVE_CSV).read_text()
