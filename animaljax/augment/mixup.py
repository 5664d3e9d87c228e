"""Mixup: `lam * x + (1 - lam) * x[perm]` on waveforms, features or labels, with lam ~ Beta(alpha, alpha).

Two recipes use it differently:
* PANNs mixes *log-mel features* (after bn0, inside the model) of consecutive pairs (x[0::2], x[1::2]) with
  one lam ~ Beta(1.0, 1.0) per pair, and the loss sees the mixed targets; `feature_fn` in the classifier is the
  hook for that.
* AST mixes *waveforms* (before fbank) with a random other clip, lam ~ Beta(10, 10), labels
  `lam * y + (1 - lam) * y_other`.
Here one draw gives a per-example lam and a batch permutation; apply the same (lam, perm) to the inputs and to
the (one-hot or multi-hot, float) labels. Inputs must be floating point: mixing int16 waveforms would silently
change their scale for the front end, so convert first (`animaljax.audio.frontend.to_float`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_mixup(key: jax.Array, batch_size: int, alpha: float) -> tuple[jax.Array, jax.Array]:
  """Draw mixing weights and partners.

  Returns:
    lam (batch,) float32 ~ Beta(alpha, alpha) and perm (batch,) int32, a random permutation of the batch.
    `alpha <= 0` gives the identity: lam = 1 and perm = arange.
  """
  if alpha <= 0:
    return jnp.ones((batch_size,), jnp.float32), jnp.arange(batch_size, dtype=jnp.int32)
  k_lam, k_perm = jax.random.split(key)
  lam = jax.random.beta(k_lam, alpha, alpha, (batch_size,), jnp.float32)
  perm = jax.random.permutation(k_perm, batch_size).astype(jnp.int32)
  return lam, perm


def mixup(x: jax.Array, lam: jax.Array, perm: jax.Array) -> jax.Array:
  """(batch, ...) float -> (batch, ...): `lam * x + (1 - lam) * x[perm]`, lam broadcast over trailing axes.

  Works for waveforms (batch, time), features (batch, frames, bins) and labels (batch, classes).
  With lam = 1 the result is `x` exactly.
  """
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(
      f"mixup needs floating-point input, got {x.dtype}; convert int16 audio / integer labels first"
    )
  lam = lam.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
  return lam * x + (1 - lam) * x[perm]
