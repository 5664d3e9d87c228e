"""`scripts/bench_train.py` end to end on shrunken models: every figure present, the torch worker's protocol."""

from __future__ import annotations

import math
import pathlib
import sys

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
