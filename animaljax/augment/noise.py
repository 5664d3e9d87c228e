"""Additive noise at a controlled signal-to-noise ratio.

SNR is defined on mean power over the clip: `10 log10(mean(signal^2) / mean((g * noise)^2))`, and the noise
gain g is solved exactly for the requested SNR. Integer (int16) waveforms are scaled to [-1, 1] float32 first,
the convention of the front end; the result is float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from animaljax.augment.waveform import as_float


def mix_at_snr(signal: jax.Array, noise: jax.Array, snr_db: jax.Array) -> jax.Array:
  """(batch, time) + (batch, time) at (batch,) dB -> (batch, time) `signal + g * noise`.

  g = sqrt(P_signal / (P_noise * 10^(snr_db / 10))). A silent signal or silent noise (zero power) returns the
  signal unchanged, without NaN.
  """
  signal, noise = as_float(signal), as_float(noise)
  dtype = jnp.promote_types(signal.dtype, noise.dtype)
  # Powers and gain in fp32 at least: squares of bf16 audio lose most of their digits.
  s32, n32 = signal.astype(jnp.float32), noise.astype(jnp.float32)
  p_s = jnp.mean(s32 * s32, axis=-1)
  p_n = jnp.mean(n32 * n32, axis=-1)
  ok = (p_s > 0) & (p_n > 0)
  snr = jnp.asarray(snr_db, jnp.float32)
  gain = jnp.sqrt(jnp.where(ok, p_s, 1.0) / (jnp.where(ok, p_n, 1.0) * 10.0 ** (snr / 10.0)))
  gain = jnp.where(ok, gain, 0.0)
  mixed = (s32 + gain[:, None] * n32).astype(dtype)
  return jnp.where(ok[:, None], mixed, signal.astype(dtype))


def random_noise_mix(
  key: jax.Array,
  signal: jax.Array,
  noise_bank: jax.Array,
  snr_db_range: tuple[float, float] = (0.0, 20.0),
  p: float = 1.0,
  lengths: jax.Array | None = None,
) -> jax.Array:
  """Add a random noise clip to each example at a random SNR, with probability p.

  Args:
    key: PRNG key.
    signal: (batch, time) waveform.
    noise_bank: (num_noises, noise_time) noise clips (on device). Each example picks one, starting at a random
      offset; a clip longer than `time` is cropped, a shorter one is tiled (wrapping around).
    snr_db_range: (lo, hi) dB, SNR uniform in it per example.
    p: probability that an example gets noise; the others are returned unchanged.
    lengths: optional (batch,) samples of each row's own clip (`waveform.clip_lengths`): the noise stops
      there, so a zero-padded short clip keeps its silent padding, and the SNR holds over the clip itself.

  Returns:
    (batch, time) float; with p = 0 exactly the (float) signal.
  """
  signal = as_float(signal)
  noise_bank = as_float(noise_bank)
  b, t = signal.shape
  n, nt = noise_bank.shape
  k_idx, k_off, k_snr, k_p = jax.random.split(key, 4)
  idx = jax.random.randint(k_idx, (b,), 0, n)
  # Crop (any offset that keeps the window inside) or tile (any phase) with one modular gather.
  max_off = nt - t + 1 if nt >= t else nt
  off = jax.random.randint(k_off, (b,), 0, max_off)
  pos = (off[:, None] + jnp.arange(t)[None, :]) % nt
  noise = noise_bank[idx[:, None], pos]
  if lengths is not None:
    noise = jnp.where(jnp.arange(t)[None, :] < lengths[:, None], noise, jnp.zeros((), noise.dtype))
  lo, hi = snr_db_range
  snr = jax.random.uniform(k_snr, (b,), jnp.float32, lo, hi)
  mixed = mix_at_snr(signal, noise, snr)
  apply = jax.random.bernoulli(k_p, p, (b,))
  return jnp.where(apply[:, None], mixed, signal.astype(mixed.dtype))
