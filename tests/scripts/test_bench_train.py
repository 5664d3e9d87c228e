"""`scripts/bench_train.py` end to end on shrunken models: every figure present, the torch worker's protocol."""

from __future__ import annotations

import math
import pathlib
import sys

import numpy as np
import pytest

pytest.importorskip("torch", reason="the benchmark's PyTorch side needs torch (the dev extra installs it)")

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import bench_train  # noqa: E402


def test_quick_smoke_reports_every_figure():
  result = bench_train.main(
    "--quick --models cnn14 --width 0.125 --seconds 1 --reps 1 --steps 1 --no-pipeline".split()
  )
  for key in (
    "cnn14_train_jax_over_torch", "cnn14_infer_jax_over_torch", "cnn14_1s_fp32_train_clips_per_s",
    "cnn14_1s_train_torch_eager_clips_per_s", "mfu_cnn14_1s_fp32_train", "cnn14_1s_fp32_train_gflop_per_clip",
    "peak_bytes_per_clip_cnn14_1s_fp32_train", "matmul_ceiling_tflops",
  ):  # fmt: skip
    assert math.isfinite(result[key]) and result[key] > 0, key
  assert result["versions"]["torch"].startswith("2.")
  # The torch side computes the same AST features as ours (checked in the worker process).
  assert result["torch_fbank_max_abs_diff"] < 1e-3


def test_worker_reports_errors_and_keeps_serving(tmp_path):
  worker = bench_train.TorchWorker(None)
  try:
    with pytest.raises(bench_train.TorchWorkerError, match="unknown request"):
      worker.ask(cmd="dance")
    with pytest.raises(bench_train.TorchWorkerError, match="unknown model"):
      import numpy as np

      np.savez(tmp_path / "d.npz", audio=np.zeros((2, 16000), np.int16), label=np.zeros(2, np.int32))
      worker.ask(
        cmd="load", model="resnet", data=str(tmp_path / "d.npz"), num_classes=3, mode="eager",
        device="cpu", width=0.125, ast_size="tiny",
      )  # fmt: skip
    assert worker.ask(cmd="quit") is True
  finally:
    worker.close()
  assert worker.proc.wait(timeout=30) == 0


class _FakeWorkload:
  """A built encoder without the compile: `round` reports fixed seconds per step (as a timed round does)."""

  def __init__(self, name, seconds, dtype, batch, remat=""):
    slow = 2.0 if name == "cnn14" else 1.0
    self.seconds = {"train": 0.5 * slow, "infer": 0.1 * slow}
    self.variables = {"params": {"w": np.zeros((3, 4)), "b": np.zeros(5)}}
    self.flop_counts = {"train": 3e9 * batch, "infer": 1e9 * batch}

  def round(self, kind, steps):
    return bench_train.WorkerSeconds(self.seconds[kind])


def test_encoder_table_reports_each_encoder_against_cnn14(monkeypatch):
  assert bench_train.parse_encoders("all") == list(bench_train.ENCODERS)  # the registry, so new ones appear
  with pytest.raises(SystemExit, match="unknown encoder"):
    bench_train.parse_encoders("cnn6,resnet99")
  monkeypatch.setattr(bench_train, "build_jax", _FakeWorkload)
  result = bench_train.main("--encoders cnn6,cnn14 --seconds 1 --batch 2 --reps 2 --steps 1".split())
  assert (result["cnn6_train_clips_per_s"], result["cnn6_infer_clips_per_s"]) == (4.0, 20.0)  # 2 clips / s
  assert (result["cnn6_train_vs_cnn14"], result["cnn6_infer_vs_cnn14"]) == (2.0, 2.0)  # CNN14 takes 2x longer
  assert (result["cnn14_train_vs_cnn14"], result["cnn14_params"], result["cnn6_params"]) == (1.0, 17, 17)
  assert (result["cnn6_train_gflop_per_clip"], result["cnn6_infer_gflop_per_clip"]) == (3.0, 1.0)
  table = bench_train.markdown_table(result, ["cnn6", "cnn14"])
  assert "| `cnn6` | 17 | 1.00 | 3.00 | 4.00 | 2.00 | 20.00 | 2.00 |" in table
