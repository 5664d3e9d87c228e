"""Ensembles: N copies of a PANNs-style encoder and its head, initialised apart and trained side by side.

`ClassifierConfig.members = N > 1` makes the classifier's `encoder` and `head` `nn.scan`s over a leading member
axis: every parameter and BatchNorm statistic gets a first dimension of N (the tree keeps its names, so
checkpoints, exports, `_head_size` and weight merging see the usual layout), members share the front end and
its augmentation, and each draws its own initial weights and dropout. Averaging independently initialised
networks is the usual cheap cut in variance; measured on issue 15's small degraded folder it was worth little
(three members trained together lost a seed to one model; averaging three separate runs gained a point or two,
BENCHMARKS.md). Why written here rather than taken from a library: it is a few lines of `nn.scan`, and a
separate model per member would triple every loader, export and inference path.

Outputs: `logits` are the mean of the members' logits (a geometric mean of their probabilities, the same rule
for softmax and sigmoid heads); `out["member_logits"]` `(N, batch, classes)` is what the trainer's loss reads
(the mean of the members' own losses: each member is fitted to the targets, not their average);
`out["embedding"]` concatenates the members' embeddings `(batch, N*D)`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

_AXES = {"params": 0, "batch_stats": 0}


@functools.cache
def as_scan_step(cls: type[nn.Module], broadcast_input: bool) -> type[nn.Module]:
  """`cls` with the `nn.scan` signature `(carry, x[, train]) -> (carry, out)` and no extra level of names."""

  if broadcast_input:

    class Step(cls):
      def __call__(self, carry, features, train):  # noqa: D102
        return carry, super().__call__(features, train=train)

  else:

    class Step(cls):
      def __call__(self, carry, x):  # noqa: D102
        return carry, super().__call__(x)

  Step.__name__ = Step.__qualname__ = cls.__name__
  return Step


def members_forward(
  encoder_cls: type[nn.Module],
  encoder_config,
  num_classes: int,
  members: int,
  features: jax.Array,
  *,
  train: bool,
  dropout_rate: float,
  dtype,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The ensemble's encoder + dropout + Dense head over `features` (batch, frames, bins); call it inside the
  classifier's compact `__call__` (it creates the `encoder` and `head` submodules there).

  Members run one after another in a fully unrolled `nn.scan` over the stacked weights: XLA sees N ordinary
  networks. (`nn.vmap` over the weights turns every convolution into a grouped one, 12x slower than one member
  on the CPU for a 3-member CNN10, and a rolled scan 66x; unrolled, it is 2.5-2.75x: `BENCHMARKS.md`.)
  """
  lift = functools.partial(nn.scan, variable_axes=_AXES, length=members, unroll=members)
  encoder = lift(
    as_scan_step(encoder_cls, True), split_rngs={"params": True, "dropout": True},
    in_axes=(nn.broadcast, nn.broadcast),
  )  # fmt: skip
  _, out = encoder(encoder_config, dtype=dtype, name="encoder")(None, features, train)
  embedding = out["embedding"]  # (members, batch, D)
  drop = nn.Dropout(dropout_rate, deterministic=not (train and encoder_config.dropout))
  head = lift(as_scan_step(nn.Dense, False), split_rngs={"params": True}, in_axes=0)
  _, member_logits = head(num_classes, dtype=dtype, param_dtype=jnp.float32, name="head")(
    None, drop(embedding)
  )
  member_logits = member_logits.astype(jnp.float32)
  batch = embedding.shape[1]
  return member_logits.mean(0), {
    "embedding": jnp.moveaxis(embedding, 0, 1).reshape(batch, -1),
    "member_logits": member_logits,
  }
