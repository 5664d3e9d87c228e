"""Kernel gradients of CNN14's 3x3 convolutions on CPU: XLA's, `animaljax.models.conv`'s, PyTorch's (oneDNN).

For each convolution of CNN14 on 5 s clips at 32 kHz (batch 4 by default) times, interleaved (median ms):

  xla      the kernel gradient XLA derives from `lax.conv_general_dilated` (a convolution over the map)
  ours     the path the CPU training step takes (`conv.kernel_grad_path`): `_kernel_grad_chunked` on large maps,
           `_kernel_grad_stacked` where the kernel outweighs the map, else XLA's own (then it equals `xla`)
  torch    `torch.ops.aten.convolution_backward` with only the weight gradient requested

  python scripts/profile_conv_grads.py [--batch 4] [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

import jax
import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_train import interleaved_medians  # noqa: E402

from animaljax.data.loader import raise_malloc_thresholds  # noqa: E402
from animaljax.models import conv  # noqa: E402

# (time frames, mel bins, in channels, out channels) of CNN14's convs with >= 64 channels, 5 s at 32 kHz.
SHAPES = (
  (501, 64, 64, 64), (250, 32, 64, 128), (250, 32, 128, 128), (125, 16, 128, 256), (125, 16, 256, 256),
  (62, 8, 256, 512), (62, 8, 512, 512), (31, 4, 512, 1024), (15, 2, 1024, 2048),
)  # fmt: skip
PAD = ((1, 1), (1, 1))


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--reps", type=int, default=5)
  args = p.parse_args(argv)
  raise_malloc_thresholds()  # as the trainer's process
  torch.set_num_threads(os.cpu_count() or 1)
  rows = {}
  for h, w, ci, co in SHAPES:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, h, w, ci)).astype(np.float32)
    g = rng.standard_normal((args.batch, h, w, co)).astype(np.float32)
    kernel = np.zeros((3, 3, ci, co), np.float32)
    xj, gj = jax.device_put(x), jax.device_put(g)
    xla = jax.jit(lambda x, g, k=kernel: jax.vjp(lambda x, k: conv._xla_conv(x, k, PAD, None), x, k)[1](g)[1])
    # The training step's choice (`conv.kernel_grad_path`): stacked, chunked, or XLA's own.
    path = conv.kernel_grad_path(x.shape, kernel.shape, g.shape, PAD)
    ours_fn = {"stacked": conv._kernel_grad_stacked, "chunked": conv._kernel_grad_chunked}.get(path)
    ours = xla if ours_fn is None else jax.jit(lambda x, g, f=ours_fn: f(x, g, PAD, (3, 3), None))
    np.testing.assert_allclose(np.asarray(ours(xj, gj)), np.asarray(xla(xj, gj)), rtol=1e-3, atol=1e-2)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
    wt = torch.zeros(co, ci, 3, 3)
    args_t = (gt, xt, wt, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, False, True])
    times = interleaved_medians(
      {
        "xla": lambda f=xla, a=(xj, gj): jax.block_until_ready(f(*a)),
        "ours": lambda f=ours, a=(xj, gj): jax.block_until_ready(f(*a)),
        "torch": lambda a=args_t: torch.ops.aten.convolution_backward(*a),
      },
      args.reps,
      0.1,
    )
    name = f"{ci}->{co} {h}x{w}"
    rows[name] = {k: round(v * 1000, 1) for k, v in times.items()} | {"path": path}
    print(
      f"{name:>18}  "
      + "  ".join(f"{k} {v:7.1f} ms" for k, v in rows[name].items() if k != "path")
      + f"  ({path})"
    )
  print(json.dumps({"batch": args.batch, **rows}))
  return rows


if __name__ == "__main__":
  main()
