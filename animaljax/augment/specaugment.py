"""SpecAugment (time and frequency masking) on features, vectorised over the batch.

Follows PANNs' `SpecAugmentation` (time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
freq_stripes_num=2): every example draws its own masks; a mask's width is uniform in [0, width] and its start
uniform over the positions where it fits. Masks are built with iota comparisons, so there is no Python loop
over the batch and everything jits with static shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _band_mask(key: jax.Array, batch: int, size: int, num: int, width: int) -> jax.Array:
  """(batch, size) bool: True inside any of `num` random bands of width U[0, width] per example."""
  if num <= 0 or width <= 0 or size <= 0:
    return jnp.zeros((batch, size), bool)
  width = min(width, size)
  k_w, k_s = jax.random.split(key)
  widths = jax.random.randint(k_w, (batch, num), 0, width + 1)
  # Start uniform in [0, size - w] for each drawn w (so the band always fits).
  starts = jnp.floor(jax.random.uniform(k_s, (batch, num)) * (size - widths + 1)).astype(jnp.int32)
  pos = jnp.arange(size)[None, None, :]
  inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
  return jnp.any(inside, axis=1)


def spec_augment(
  key: jax.Array,
  feats: jax.Array,
  *,
  time_masks: int = 2,
  time_width: int = 64,
  freq_masks: int = 2,
  freq_width: int = 8,
  mask_value: float = 0.0,
) -> jax.Array:
  """Mask random time and frequency bands of each example.

  Args:
    key: PRNG key.
    feats: (batch, frames, bins) features.
    time_masks, time_width: number of time bands per example and their maximum width in frames.
    freq_masks, freq_width: the same along bins.
    mask_value: value written inside the bands (0.0 as PANNs, on log-mel after its bn0).

  Returns:
    (batch, frames, bins), same dtype; `time_masks = freq_masks = 0` returns `feats` unchanged.
  """
  if feats.ndim != 3:
    raise ValueError(f"spec_augment expects (batch, frames, bins), got {feats.shape}")
  b, t, f = feats.shape
  k_t, k_f = jax.random.split(key)
  t_mask = _band_mask(k_t, b, t, time_masks, time_width)
  f_mask = _band_mask(k_f, b, f, freq_masks, freq_width)
  mask = t_mask[:, :, None] | f_mask[:, None, :]
  return jnp.where(mask, jnp.asarray(mask_value, feats.dtype), feats)
