"""CPU benchmark: JAX/Flax CNN14 and AST-base next to PyTorch models of the same architecture, in one run.

For each model: forward (eval) and forward+backward (train mode, softmax cross-entropy, grads w.r.t. all
parameters) seconds per clip, median of `--reps` timed runs after one warm-up (the JAX warm-up includes the
compile), the speed ratio torch_time / jax_time (>= 1: JAX faster) and XLA's FLOPs per clip (cost analysis of
the compiled function; a multiply-add counts 2, taps in zero padding are not counted).

  CNN14:    waveform (batch, 10 s at 32 kHz) -> log-mel front end -> CNN14 -> 527 logits (front end included on
            both sides: the torch reference computes its STFT as a convolution).
  AST-base: normalised fbank (batch, 1024, 128) -> AST -> 527 logits (the torch reference has no torch front
            end, so both sides start from the same fbank).

The PyTorch models are the parity references in `tests/reference/` (`panns_torch.Cnn14`, `ast_torch.ASTModel`).
torch runs with `torch.set_num_threads(2)` (the machine's cores). The machine is shared: read the ratios, not the
absolute times. The last line of output is one JSON object.

  python scripts/bench_models.py [--quick] [--reps N] [--cnn-batch 4] [--ast-batch 2]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from animaljax.models import Ast, AstConfig, cnn14_config, make_model
from animaljax.models.classifier import AstHead

REPO = pathlib.Path(__file__).resolve().parents[1]
NUM_CLASSES = 527


def _median_seconds(fn, reps: int) -> float:
  fn()  # warm-up (and compile)
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return statistics.median(times)


def _xla_flops(jitted, *args) -> float:
  cost = jitted.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get("flops", float("nan")))


def _ce(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels).mean()


# ----------------------------------------------------------------------------------------------------------------
# JAX
# ----------------------------------------------------------------------------------------------------------------
def bench_jax_cnn14(wave: np.ndarray, labels: np.ndarray, reps: int) -> dict:
  model = make_model(cnn14_config(NUM_CLASSES))
  variables = jax.jit(model.init)(jax.random.key(0), wave[:1])
  params, stats = variables["params"], variables["batch_stats"]
  fwd = jax.jit(lambda p, s, w: model.apply({"params": p, "batch_stats": s}, w)[0])

  def loss(p, s, w, y, key):
    logits, upd = model.apply(
      {"params": p, "batch_stats": s}, w, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
    )
    return _ce(logits[0], y), upd

  grad = jax.jit(jax.grad(loss, has_aux=True))
  key = jax.random.key(1)
  return _jax_times(fwd, grad, (params, stats, wave), (params, stats, wave, labels, key), wave.shape[0], reps)


class AstOnFbank(nn.Module):
  """AST encoder + head on fbank, the JAX twin of the torch `ASTModel` (no front end on either side)."""

  config: AstConfig

  @nn.compact
  def __call__(self, fbank: jax.Array) -> jax.Array:
    return AstHead(NUM_CLASSES, name="head")(Ast(self.config, name="encoder")(fbank)["embedding"])


def bench_jax_ast(fbank: np.ndarray, labels: np.ndarray, reps: int) -> dict:
  net = AstOnFbank(AstConfig(size="base", input_frames=fbank.shape[1]))
  params = jax.jit(net.init)(jax.random.key(0), fbank[:1])["params"]
  fwd = jax.jit(lambda p, x: net.apply({"params": p}, x))
  grad = jax.jit(jax.grad(lambda p, x, y: _ce(net.apply({"params": p}, x), y)))
  return _jax_times(fwd, grad, (params, fbank), (params, fbank, labels), fbank.shape[0], reps)


def _jax_times(fwd, grad, fwd_args, grad_args, batch: int, reps: int) -> dict:
  t_fwd = _median_seconds(lambda: jax.block_until_ready(fwd(*fwd_args)), reps)
  t_bwd = _median_seconds(lambda: jax.block_until_ready(grad(*grad_args)), reps)
  return {
    "fwd_s_per_clip": t_fwd / batch,
    "fwd_bwd_s_per_clip": t_bwd / batch,
    "xla_fwd_gflop_per_clip": _xla_flops(fwd, *fwd_args) / batch / 1e9,
    "xla_fwd_bwd_gflop_per_clip": _xla_flops(grad, *grad_args) / batch / 1e9,
  }


# ----------------------------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------------------------
def _torch_times(model, x, labels, reps: int) -> dict:
  import torch

  x, y = torch.from_numpy(x), torch.from_numpy(labels).long()

  def fwd():
    model.eval()
    with torch.no_grad():
      out = model(x)
    return out

  def fwd_bwd():
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(x)
    logits = out["logits"] if isinstance(out, dict) else out
    torch.nn.functional.cross_entropy(logits, y).backward()

  return {
    "fwd_s_per_clip": _median_seconds(fwd, reps) / x.shape[0],
    "fwd_bwd_s_per_clip": _median_seconds(fwd_bwd, reps) / x.shape[0],
  }


def bench_torch(name: str, x: np.ndarray, labels: np.ndarray, reps: int) -> dict:
  import torch

  torch.set_num_threads(2)
  sys.path.insert(0, str(REPO / "tests"))
  if name == "cnn14":
    from reference.panns_torch import Cnn14

    model = Cnn14(classes_num=NUM_CLASSES)
  else:
    from reference.ast_torch import ASTModel

    model = ASTModel(label_dim=NUM_CLASSES, input_tdim=x.shape[1])
  return _torch_times(model, x, labels, reps)


# ----------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="2 s clips, 2 reps: a smoke run")
  parser.add_argument(
    "--reps", type=int, default=None, help="timed runs per measurement (default 3, quick 2)"
  )
  parser.add_argument("--cnn-batch", type=int, default=4)
  parser.add_argument("--ast-batch", type=int, default=2)
  parser.add_argument("--models", default="cnn14,ast", help="comma-separated subset of cnn14,ast")
  parser.add_argument("--no-torch", action="store_true", help="JAX only")
  args = parser.parse_args(argv)
  reps = args.reps or (2 if args.quick else 3)
  seconds = 2.0 if args.quick else 10.0
  rng = np.random.default_rng(0)
  result: dict = {
    "quick": args.quick,
    "reps": reps,
    "clip_seconds": seconds,
    "jax_backend": jax.default_backend(),
  }

  for name in args.models.split(","):
    if name == "cnn14":
      batch = args.cnn_batch
      x = (0.1 * rng.standard_normal((batch, int(seconds * 32000)))).astype(np.float32)
      jax_res = bench_jax_cnn14(x, labels := rng.integers(0, NUM_CLASSES, batch), reps)
    elif name == "ast":
      batch = args.ast_batch
      # AST pads/cuts its fbank to 1024 frames for 10 s; quick mode uses the frames of the shorter clip.
      frames = 1024 if not args.quick else int(seconds * 100) - 2
      x = rng.standard_normal((batch, frames, 128)).astype(np.float32) * 0.5
      jax_res = bench_jax_ast(x, labels := rng.integers(0, NUM_CLASSES, batch), reps)
    else:
      raise SystemExit(f"unknown model {name!r}; valid: cnn14, ast")
    entry = {"batch": batch, "jax": jax_res}
    if not args.no_torch:
      torch_res = bench_torch(name, x, labels, reps)
      entry["torch"] = torch_res
      entry["speed_ratio_fwd"] = torch_res["fwd_s_per_clip"] / jax_res["fwd_s_per_clip"]
      entry["speed_ratio_fwd_bwd"] = torch_res["fwd_bwd_s_per_clip"] / jax_res["fwd_bwd_s_per_clip"]
    result[name] = entry
    print(f"{name}: {json.dumps(entry)}", flush=True)
  print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
