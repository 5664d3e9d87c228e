"""How an ensemble's members should run: one train step (forward + backward, train mode) of N CNN members over
stacked weights, by `nn.vmap`, a rolled `nn.scan`, and the fully unrolled `nn.scan` that `models.ensemble` uses,
next to one member alone. Interleaved rounds; ratios to the single member of the same round.

  python scripts/bench_ensemble.py [--members 3] [--encoder cnn10] [--width 0.25] [--rounds 2] [--skip-rolled]
"""

from __future__ import annotations

import argparse
import json
import time

import flax.linen as nn
import jax

from animaljax.models.classifier import encoder_config
from animaljax.models.cnn14 import Cnn
from animaljax.models.ensemble import as_scan_step

AXES = {"params": 0, "batch_stats": 0}


def build(kind: str, config, members: int) -> nn.Module:
  """A module `(features, train) -> scalar` for one way of running `members` copies of `Cnn(config)`."""

  class Bench(nn.Module):
    @nn.compact
    def __call__(self, features, train):
      if kind == "single":
        return Cnn(config, name="encoder")(features, train=train)["embedding"].sum()
      if kind == "vmap":

        class Positional(Cnn):
          def __call__(self, x, train):
            return super().__call__(x, train=train)

        lifted = nn.vmap(
          Positional, variable_axes=AXES, split_rngs={"params": True, "dropout": True}, in_axes=None,
          out_axes=0, axis_size=members,
        )  # fmt: skip
        return lifted(config, name="encoder")(features, train)["embedding"].sum()
      lifted = nn.scan(
        as_scan_step(Cnn, True), variable_axes=AXES, split_rngs={"params": True, "dropout": True},
        in_axes=(nn.broadcast, nn.broadcast), length=members, unroll=members if kind == "scan_unrolled" else 1,
      )  # fmt: skip
      _, out = lifted(config, name="encoder")(None, features, train)
      return out["embedding"].sum()

  return Bench()


def step_seconds(kind: str, config, members: int, features: jax.Array, repeats: int = 3) -> float:
  model = build(kind, config, members)
  variables = model.init(jax.random.key(0), features, False)

  def loss(params, stats):
    value, _ = model.apply(
      {"params": params, "batch_stats": stats}, features, True, mutable=["batch_stats"],
      rngs={"dropout": jax.random.key(1)},
    )  # fmt: skip
    return value

  grad = jax.jit(jax.grad(loss))
  jax.block_until_ready(grad(variables["params"], variables["batch_stats"]))  # compile
  start = time.perf_counter()
  for _ in range(repeats):
    jax.block_until_ready(grad(variables["params"], variables["batch_stats"]))
  return (time.perf_counter() - start) / repeats


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--members", type=int, default=3)
  p.add_argument("--encoder", default="cnn10")
  p.add_argument("--width", type=float, default=0.25)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--seconds", type=float, default=2.0, help="clip length at 16 kHz (10 ms frames)")
  p.add_argument("--rounds", type=int, default=2)
  p.add_argument("--skip-rolled", action="store_true", help="leave out the rolled scan (the slowest)")
  args = p.parse_args()
  config = encoder_config(args.encoder, width=args.width)
  features = jax.random.normal(jax.random.key(0), (args.batch, int(args.seconds * 100) + 1, 64))
  kinds = ["single", "vmap", "scan_unrolled"] + ([] if args.skip_rolled else ["scan_rolled"])
  for round_ in range(args.rounds):
    times = {kind: step_seconds(kind, config, args.members, features) for kind in kinds}
    ratios = {kind: round(t / times["single"], 2) for kind, t in times.items()}
    print(
      json.dumps({"round": round_, "seconds": {k: round(v, 3) for k, v in times.items()}, "x_single": ratios})
    )


if __name__ == "__main__":
  main()
