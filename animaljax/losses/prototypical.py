"""Prototypical-network loss (Snell et al. 2017): queries classified by distance to class-mean prototypes.

Pure jnp: the ProtoNet trainer's step. The few-shot *evaluation* on cached embeddings is numpy
(`animaljax.metrics.fewshot`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def prototype_logits(support: jax.Array, support_label: jax.Array, query: jax.Array, n_way: int) -> jax.Array:
  """Negative squared Euclidean distances of queries to class prototypes.

  Args:
    support: (S, D) support embeddings; support_label: (S,) int in `0..n_way-1`; query: (Q, D).

  Returns:
    (Q, n_way) logits `-||q - mean_c||^2`, the prototype `mean_c` being the mean of class c's support rows.
  """
  onehot = jax.nn.one_hot(support_label, n_way, dtype=jnp.float32)  # (S, N)
  protos = (onehot.T @ support.astype(jnp.float32)) / jnp.maximum(onehot.sum(0), 1.0)[:, None]
  query = query.astype(jnp.float32)
  # ||q||^2 - 2 q.p + ||p||^2: one matmul instead of a (Q, N, D) difference tensor.
  sq = jnp.sum(query**2, -1, keepdims=True) - 2.0 * query @ protos.T + jnp.sum(protos**2, -1)[None]
  return -jnp.maximum(sq, 0.0)


def prototypical_loss(
  support: jax.Array, support_label: jax.Array, query: jax.Array, query_label: jax.Array, n_way: int
) -> tuple[jax.Array, jax.Array]:
  """Mean softmax cross-entropy of the queries over `prototype_logits`, and the query accuracy (scalars)."""
  logits = prototype_logits(support, support_label, query, n_way)
  log_p = jax.nn.log_softmax(logits)
  loss = -jnp.mean(jnp.take_along_axis(log_p, query_label[:, None], axis=1))
  accuracy = jnp.mean((logits.argmax(-1) == query_label).astype(jnp.float32))
  return loss, accuracy
