"""Per-example waveform augmentations: random gain, time shift, crop and low-pass. Pure jnp with explicit keys.

Gain works on floating waveforms (int16 is scaled to [-1, 1] float32 first, the front end's convention);
shift and crop only move samples and keep the dtype.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp


def random_gain(key: jax.Array, wave: jax.Array, db_range: tuple[float, float] = (-6.0, 6.0)) -> jax.Array:
  """(batch, time) -> (batch, time) scaled by 10^(g / 20), g ~ U[lo, hi] dB per example.

  No clipping: the front end takes any float. `db_range=(0, 0)` returns the (float) input exactly.
  """
  wave = jnp.asarray(wave)
  if jnp.issubdtype(wave.dtype, jnp.integer):
    wave = wave.astype(jnp.float32) / 32768.0
  lo, hi = db_range
  gain_db = jax.random.uniform(key, (wave.shape[0],), jnp.float32, lo, hi)
  gain = 10.0 ** (gain_db / 20.0)
  return (wave * gain[:, None].astype(wave.dtype)).astype(wave.dtype)


def random_time_shift(
  key: jax.Array, wave: jax.Array, max_shift: int, mode: Literal["roll", "zero"] = "roll"
) -> jax.Array:
  """(batch, time) -> (batch, time) shifted right by s ~ U{-max_shift..max_shift} samples per example.

  mode "roll" wraps the samples around; "zero" fills the vacated samples with zeros. `max_shift=0` is the
  identity.
  """
  if mode not in ("roll", "zero"):
    raise ValueError(f"mode must be 'roll' or 'zero', got {mode!r}")
  b, t = wave.shape
  shift = jax.random.randint(key, (b,), -max_shift, max_shift + 1)
  src = jnp.arange(t)[None, :] - shift[:, None]  # output[i] = input[i - s]
  out = jnp.take_along_axis(wave, src % t, axis=1)
  if mode == "zero":
    out = jnp.where((src >= 0) & (src < t), out, jnp.zeros((), wave.dtype))
  return out


def random_crop(key: jax.Array, wave: jax.Array, length: int) -> jax.Array:
  """(batch, time) -> (batch, length): a window at a per-example start uniform in [0, time - length]."""
  b, t = wave.shape
  if not 0 < length <= t:
    raise ValueError(f"crop length {length} must be in (0, {t}]")
  start = jax.random.randint(key, (b,), 0, t - length + 1)
  return jax.vmap(lambda w, s: jax.lax.dynamic_slice(w, (s,), (length,)))(wave, start)


def random_lowpass(
  key: jax.Array, wave: jax.Array, sample_rate: float, cutoffs_hz: tuple[float, ...], p: float = 1.0
) -> jax.Array:
  """(batch, time) -> (batch, time) float: with probability p per example, everything above a cutoff drawn
  from `cutoffs_hz` removed (an ideal low-pass: the row's rFFT bins above the cutoff set to zero).

  What a clip recorded at a lower native rate looks like after resampling up to `sample_rate`: a corpus that
  mixes 8, 11.025, 16 and 22.05 kHz recordings within a class has clips with nothing above 4 or 5.5 kHz, and a
  model trained only on the full-band ones leans on content those clips lack. Cutoffs at or above Nyquist
  leave the example as it is; p = 0 returns the (float) input exactly.
  """
  wave = jnp.asarray(wave)
  if jnp.issubdtype(wave.dtype, jnp.integer):
    wave = wave.astype(jnp.float32) / 32768.0
  b, t = wave.shape
  k_cut, k_p = jax.random.split(key)
  cut = jnp.asarray(cutoffs_hz, jnp.float32)[jax.random.randint(k_cut, (b,), 0, len(cutoffs_hz))]
  freqs = jnp.fft.rfftfreq(t, 1.0 / sample_rate).astype(jnp.float32)
  keep = freqs[None, :] <= cut[:, None]
  spec = jnp.fft.rfft(wave.astype(jnp.float32), axis=-1)
  low = jnp.fft.irfft(spec * keep, n=t, axis=-1).astype(wave.dtype)
  apply = jax.random.bernoulli(k_p, p, (b,)) & (cut < sample_rate / 2)
  return jnp.where(apply[:, None], low, wave)
