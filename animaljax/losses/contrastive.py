"""Contrastive losses: NT-Xent (SimCLR) on the projections of two views of the same clips.

Pure jnp on the *global* batch: under `jax.jit` with the batch sharded over the mesh's `data` axis, the
`(2B, 2B)` similarity matrix spans every device's rows (XLA inserts the all-gather), so every anchor is
contrasted with the negatives of the whole global batch, not only those on its own device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float = 0.1) -> jax.Array:
  """Normalised temperature-scaled cross-entropy (Chen et al. 2020, SimCLR) of two views.

  Rows `z1[i]` and `z2[i]` are the two views of clip `i` (a positive pair); every other of the `2B - 2`
  rows is a negative. With `z = l2_normalise(concat(z1, z2))` and `s = z z^T / temperature`, anchor `a` with
  positive `p(a)` costs `-s[a, p(a)] + logsumexp_{k != a} s[a, k]`; the loss is the mean over all `2B` anchors.
  This equals `optax.losses.ntxent(concat(z1, z2), concat(arange(B), arange(B)), temperature)` (optax 0.2.8
  averages over the positive pairs, which here are the anchors).

  Args:
    z1, z2: (B, D) projections of the first and second view, B >= 2.
    temperature: softmax temperature (SimCLR uses 0.1-0.5; smaller weights hard negatives more).

  Returns:
    Scalar fp32 loss; `log(2B - 1)` when all rows are equal, 0 in the limit of perfect separation.
  """
  if z1.shape != z2.shape or z1.ndim != 2:
    raise ValueError(f"nt_xent expects two (B, D) arrays of one shape, got {z1.shape} and {z2.shape}")
  b = z1.shape[0]
  z = jnp.concatenate([z1, z2]).astype(jnp.float32)
  # eps inside the norm: an all-zero projection (a silent clip through a ReLU MLP) must not give NaN.
  z = z * jax.lax.rsqrt(jnp.sum(z * z, axis=-1, keepdims=True) + 1e-12)
  sim = z @ z.T / temperature
  n = 2 * b
  self_mask = jnp.eye(n, dtype=bool)
  sim = jnp.where(self_mask, -jnp.inf, sim)  # an anchor is never its own negative
  positive = (jnp.arange(n) + b) % n
  pos_sim = jnp.take_along_axis(sim, positive[:, None], axis=1)[:, 0]
  return jnp.mean(jax.nn.logsumexp(sim, axis=1) - pos_sim)
