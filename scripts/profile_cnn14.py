"""Where a CNN14 training step spends its time, stage by stage, JAX next to PyTorch (interleaved medians).

Stages of the step `scripts/bench_train.py` times as a whole:

  frontend      int16 waveform -> log-mel (JAX: framing + `jnp.fft.rfft` + mel matmul; torch: PANNs' STFT as
                two 1024-tap convolutions + mel matmul), forward only (it has no parameters)
  conv_block<i> bn0 (block 1) and the block's two 3x3 conv + BatchNorm + ReLU and its 2x2 pooling, forward and
                backward (gradients of the parameters and, from block 2 on, of the input) under a cotangent
  head          pooling over mel and time, fc1, the 527-class layer, soft-target cross-entropy, backward
  optimizer     global-norm clipping + AdamW on CNN14's 80.8 M parameters (optax in one jit / torch.optim)

Run with the sizes of the benchmark (`--seconds 5 --batch 4`); prints one line per stage and a JSON line.

  python scripts/profile_cnn14.py [--seconds 5] [--batch 4] [--reps 3] [--steps 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_train import interleaved_medians, steady_state  # noqa: E402

from animaljax.audio import frontend  # noqa: E402
from animaljax.models.cnn14 import ConvBlock, _batch_norm  # noqa: E402

CHANNELS = (64, 128, 256, 512, 1024, 2048)
POOLS = (2, 2, 2, 2, 2, 1)


class _Block(nn.Module):
  """bn0 (first block only) + one PANNs conv block, as inside `Cnn`."""

  features: int
  pool: int
  first: bool

  @nn.compact
  def __call__(self, x):
    if self.first:
      x = _batch_norm("bn0", True)(x[..., 0])[..., None]
    return ConvBlock(self.features, pool=self.pool)(x, train=True)


def jax_stages(wave: np.ndarray, batch: int) -> tuple[dict, list[tuple[int, ...]]]:
  """Zero-argument callables per stage, and the NHWC input shape of every block."""
  cfg = frontend.LogMelConfig.panns_32k()
  fe = jax.jit(lambda w: frontend.log_mel(w, cfg))
  feats = fe(wave)
  stages = {"frontend": lambda: fe(wave).block_until_ready()}
  x = np.asarray(feats)[..., None]
  shapes = []
  for i, (ch, pool) in enumerate(zip(CHANNELS, POOLS, strict=True), start=1):
    shapes.append(x.shape)
    block = _Block(ch, pool, i == 1)
    variables = block.init(jax.random.key(i), x)
    out, _ = block.apply(variables, x, mutable=["batch_stats"])
    cot = np.random.default_rng(i).standard_normal(out.shape).astype(np.float32)

    def loss(p, x, variables=variables, block=block, cot=cot):
      y, _ = block.apply({**variables, "params": p}, x, mutable=["batch_stats"])
      return jnp.sum(y * cot)

    # The step never differentiates the features (the front end has no parameters): block 1 skips that grad.
    grad = jax.jit(jax.grad(loss, argnums=0 if i == 1 else (0, 1)))
    stages[f"conv_block{i}"] = lambda g=grad, v=variables, x=x: jax.block_until_ready(g(v["params"], x))
    x = np.asarray(out)

  def head(p, x, y):
    f = jnp.mean(x, axis=2)
    e = nn.relu(nn.Dense(2048).apply({"params": p["fc1"]}, jnp.max(f, 1) + jnp.mean(f, 1)))
    logits = nn.Dense(527).apply({"params": p["out"]}, e)
    return optax.softmax_cross_entropy(logits, y).mean()

  hp = {
    "fc1": nn.Dense(2048).init(jax.random.key(0), jnp.zeros((1, 2048)))["params"],
    "out": nn.Dense(527).init(jax.random.key(1), jnp.zeros((1, 2048)))["params"],
  }
  y = jax.nn.one_hot(np.arange(batch) % 527, 527)
  hgrad = jax.jit(jax.grad(head, argnums=(0, 1)))
  stages["head"] = lambda: jax.block_until_ready(hgrad(hp, x, y))

  from animaljax.models import cnn14_config, make_model

  net = make_model(cnn14_config(527))
  params = jax.jit(net.init)(jax.random.key(0), np.zeros((1, wave.shape[1]), np.int16))["params"]
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3, weight_decay=1e-4))
  state = {"p": params, "o": tx.init(params)}
  grads = jax.tree.map(lambda a: jnp.full_like(a, 1e-3), params)

  def update(p, o, g):
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o

  update = jax.jit(update, donate_argnums=(0, 1))

  def opt():
    state["p"], state["o"] = update(state["p"], state["o"], grads)
    jax.block_until_ready(state["p"])

  stages["optimizer"] = opt
  return stages, shapes


def torch_stages(wave: np.ndarray, shapes: list[tuple[int, ...]], batch: int) -> dict:
  import torch
  from bench_torch import Cnn14Train

  torch.set_num_threads(os.cpu_count() or 1)
  net = Cnn14Train(527).net.train()
  w = torch.from_numpy(wave).float() / 32768.0
  stages = {}

  def fe():
    with torch.no_grad():
      x = net.logmel_extractor(net.spectrogram_extractor(w))
    return x

  stages["frontend"] = fe
  rng = np.random.default_rng(0)
  for i, (shape, pool) in enumerate(zip(shapes, POOLS, strict=True), start=1):
    x = torch.from_numpy(rng.standard_normal(shape).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    block = getattr(net, f"conv_block{i}")

    def run(x=x, block=block, pool=pool, first=i == 1):
      x = x.clone().requires_grad_(not first)
      h = net.bn0(x.transpose(1, 3)).transpose(1, 3) if first else x
      y = block(h, pool_size=(pool, pool))
      (y * torch.ones_like(y)).sum().backward()

    stages[f"conv_block{i}"] = run

  def head():
    x = torch.randn(batch, 2048, shapes[-1][1], shapes[-1][2], requires_grad=True)
    f = torch.mean(x, dim=3)
    e = torch.relu(net.fc1(torch.max(f, dim=2).values + torch.mean(f, dim=2)))
    torch.nn.functional.cross_entropy(net.fc_audioset(e), torch.arange(batch) % 527).backward()

  stages["head"] = head
  opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
  for p in net.parameters():
    p.grad = torch.full_like(p, 1e-3)

  def step():
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()

  stages["optimizer"] = step
  return stages


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seconds", type=float, default=5.0)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--steps", type=int, default=2, help="timed calls per round, after an untimed one")
  args = p.parse_args(argv)
  from animaljax.data.loader import raise_malloc_thresholds

  raise_malloc_thresholds()  # as the trainer's process (see bench_train.py)
  rng = np.random.default_rng(0)
  wave = (rng.standard_normal((args.batch, round(args.seconds * 32000))) * 3000).astype(np.int16)
  jx, shapes = jax_stages(wave, args.batch)
  th = torch_stages(wave, shapes, args.batch)
  out = {"seconds": args.seconds, "batch": args.batch, "loadavg_start": os.getloadavg()[0]}
  for name in jx:
    # Rounds as bench_train's: one untimed call, then `--steps` timed (both frameworks share this process).
    rounds = {
      side: functools.partial(steady_state, fns[name], lambda: None, args.steps)
      for side, fns in (("jax", jx), ("torch", th))
    }
    med = interleaved_medians(rounds, args.reps)
    out[name] = {"jax_ms": round(med["jax"] * 1e3, 1), "torch_ms": round(med["torch"] * 1e3, 1)}
    print(f"{name:12s} jax {med['jax'] * 1e3:9.1f} ms  torch {med['torch'] * 1e3:9.1f} ms", flush=True)
  out["loadavg_end"] = os.getloadavg()[0]
  print(json.dumps(out))
  return out


if __name__ == "__main__":
  main()
