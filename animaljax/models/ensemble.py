"""Ensembles: N copies of a PANNs-style encoder and its head, initialised apart and trained side by side.

`ClassifierConfig.members = N > 1` makes the classifier's `encoder` and `head` `nn.vmap`s over a leading member
axis: every parameter and BatchNorm statistic gets a first dimension of N (the tree keeps its names, so
checkpoints, exports, `_head_size` and weight merging see the usual layout), members share the front end and
its augmentation, and each draws its own initial weights and dropout. Why an ensemble and not a wider model:
on the small, noisy folders of issue 15 averaging a few independently initialised networks gained where twice
the width did not (BENCHMARKS.md). Why written here rather than taken from a library: it is ten lines of
`nn.vmap`, and a separate model per member would triple every loader, export and inference path.

Outputs: `logits` are the mean of the members' logits (a geometric mean of their probabilities, the same rule
for softmax and sigmoid heads); `out["member_logits"]` `(N, batch, classes)` is what the trainer's loss reads,
so each member learns as it would alone; `out["embedding"]` concatenates the members' embeddings `(batch, N*D)`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

_AXES = {"params": 0, "batch_stats": 0}


@functools.cache
def _positional(cls: type[nn.Module]) -> type[nn.Module]:
  """`cls` with `train` as a positional argument (`nn.vmap` passes no keyword arguments on)."""

  class Positional(cls):
    def __call__(self, features, train):  # noqa: D102
      return super().__call__(features, train=train)

  Positional.__name__ = Positional.__qualname__ = cls.__name__
  return Positional


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
  classifier's compact `__call__` (it creates the `encoder` and `head` submodules there)."""
  lift = functools.partial(nn.vmap, variable_axes=_AXES, out_axes=0, axis_size=members)
  encoder = lift(_positional(encoder_cls), split_rngs={"params": True, "dropout": True}, in_axes=None)
  out = encoder(encoder_config, dtype=dtype, name="encoder")(features, train)
  embedding = out["embedding"]  # (members, batch, D)
  drop = nn.Dropout(dropout_rate, deterministic=not (train and encoder_config.dropout))
  head = lift(nn.Dense, split_rngs={"params": True}, in_axes=0)
  member_logits = head(num_classes, dtype=dtype, param_dtype=jnp.float32, name="head")(drop(embedding))
  member_logits = member_logits.astype(jnp.float32)
  batch = embedding.shape[1]
  return member_logits.mean(0), {
    "embedding": jnp.moveaxis(embedding, 0, 1).reshape(batch, -1),
    "member_logits": member_logits,
  }
