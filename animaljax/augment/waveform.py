"""Per-example waveform augmentations: random gain, time shift, crop and low-pass. Pure jnp with explicit keys.

Gain works on floating waveforms (int16 is scaled to [-1, 1] float32 first, the front end's convention);
shift and crop only move samples and keep the dtype.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp


def as_float(wave: jax.Array) -> jax.Array:
  """int16 samples scaled to float32 in [-1, 1) (the front end's convention); floating input as it is."""
  wave = jnp.asarray(wave)
  if jnp.issubdtype(wave.dtype, jnp.integer):
    return wave.astype(jnp.float32) / 32768.0
  return wave


def clip_lengths(wave: jax.Array) -> jax.Array:
  """(batch, time) -> (batch,) int32: one past each row's last nonzero sample (0 for a silent row): the clip's
  own length in a row the "mask" input rule zero-padded (`audio.windows.fit_short`)."""
  nonzero = jnp.asarray(wave) != 0
  last = nonzero.shape[1] - jnp.argmax(nonzero[:, ::-1], axis=1)
  return jnp.where(nonzero.any(axis=1), last, 0).astype(jnp.int32)


def keep_prefix(wave: jax.Array, lengths: jax.Array) -> jax.Array:
  """(batch, time) with every sample at or after its row's `lengths` set to zero: the padding of a row the "mask"
  input rule zero-padded (its clip's length: `clip_lengths`) kept silent."""
  pos = jnp.arange(wave.shape[1], dtype=jnp.int32)[None, :]
  return jnp.where(pos < lengths[:, None], wave, jnp.zeros((), wave.dtype))


def random_gain(key: jax.Array, wave: jax.Array, db_range: tuple[float, float] = (-6.0, 6.0)) -> jax.Array:
  """(batch, time) -> (batch, time) scaled by 10^(g / 20), g ~ U[lo, hi] dB per example.

  No clipping: the front end takes any float. `db_range=(0, 0)` returns the (float) input exactly.
  """
  wave = as_float(wave)
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
  wave = as_float(wave)
  b, t = wave.shape
  k_cut, k_p = jax.random.split(key)
  cut = jnp.asarray(cutoffs_hz, jnp.float32)[jax.random.randint(k_cut, (b,), 0, len(cutoffs_hz))]
  freqs = jnp.fft.rfftfreq(t, 1.0 / sample_rate).astype(jnp.float32)
  keep = freqs[None, :] <= cut[:, None]
  spec = jnp.fft.rfft(wave.astype(jnp.float32), axis=-1)
  low = jnp.fft.irfft(spec * keep, n=t, axis=-1).astype(wave.dtype)
  apply = jax.random.bernoulli(k_p, p, (b,)) & (cut < sample_rate / 2)
  return jnp.where(apply[:, None], low, wave)


def random_shorten(
  key: jax.Array,
  wave: jax.Array,
  sample_rate: float,
  seconds: tuple[float, float],
  p: float = 1.0,
  fill: Literal["loop", "pad", "mask"] = "loop",
) -> jax.Array:
  """(batch, time) -> (batch, time): with probability p per example, a random segment of L ~ U[seconds] s,
  repeated end to end (`fill="loop"`) or zero-padded after it (`"pad"`, `"mask"`) back to the row's length.

  What a short clip becomes under the input rule (`data.short_clips`), made from any training row: a folder where
  many clips are shorter than the window teaches the model that input mostly from its few short clips; this
  gives it from every clip. Segments as long as the row leave the example as it is; p = 0 returns `wave`.
  """
  if fill not in ("loop", "pad", "mask"):
    raise ValueError(f"fill must be 'loop', 'pad' or 'mask', got {fill!r}")
  b, t = wave.shape
  k_len, k_start, k_p = jax.random.split(key, 3)
  lo, hi = seconds
  length = jnp.round(jax.random.uniform(k_len, (b,), jnp.float32, lo, hi) * sample_rate).astype(jnp.int32)
  length = jnp.clip(length, 1, t)
  start = jnp.floor(jax.random.uniform(k_start, (b,)) * (t - length + 1)).astype(jnp.int32)
  start = jnp.minimum(start, t - length)
  pos = jnp.arange(t, dtype=jnp.int32)[None, :]
  if fill == "loop":
    src = start[:, None] + pos % length[:, None]
    out = jnp.take_along_axis(wave, src, axis=1)
  else:
    src = start[:, None] + jnp.minimum(pos, length[:, None] - 1)
    out = jnp.where(pos < length[:, None], jnp.take_along_axis(wave, src, axis=1), jnp.zeros((), wave.dtype))
  apply = jax.random.bernoulli(k_p, p, (b,)) & (length < t)
  return jnp.where(apply[:, None], out, wave)


def random_quantize(key: jax.Array, wave: jax.Array, bits: int = 8, p: float = 1.0) -> jax.Array:
  """(batch, time) -> (batch, time) float: with probability p per example, rounded to `bits`-bit PCM (steps of
  2^-(bits-1), clipped to the format's range), as a clip saved by a low-bit-depth recorder is. The rounding
  noise is white and its level fixed, so it buries quiet clips most. p = 0 returns the (float) input exactly.
  """
  wave = as_float(wave)
  scale = float(2 ** (bits - 1))
  quantized = (jnp.clip(jnp.round(wave * scale), -scale, scale - 1) / scale).astype(wave.dtype)
  apply = jax.random.bernoulli(key, p, (wave.shape[0],))
  return jnp.where(apply[:, None], quantized, wave)


def random_speed(key: jax.Array, wave: jax.Array, factors: tuple[float, float], p: float = 1.0) -> jax.Array:
  """(batch, time) -> (batch, time) float: with probability p per example, played faster or slower by a factor
  r drawn log-uniformly from `factors` (pitch and tempo move together, as a resampled recording's do):
  `out[i] = in[i * r]`, linearly interpolated, reading on from the row's start once it runs out (a row is a
  loop or a crop of its clip). Speed perturbation: the same call from a larger or smaller animal, or a
  recorder's clock. r = 1 and p = 0 return the (float) input exactly.
  """
  wave = as_float(wave)
  b, t = wave.shape
  k_r, k_p = jax.random.split(key)
  lo, hi = jnp.log(jnp.float32(factors[0])), jnp.log(jnp.float32(factors[1]))
  rate = jnp.exp(jax.random.uniform(k_r, (b,), jnp.float32, lo, hi))
  pos = jnp.arange(t, dtype=jnp.float32)[None, :] * rate[:, None]
  left = jnp.floor(pos)
  frac = (pos - left).astype(wave.dtype)
  left = left.astype(jnp.int32) % t
  a = jnp.take_along_axis(wave, left, axis=1)
  c = jnp.take_along_axis(wave, (left + 1) % t, axis=1)
  out = a + frac * (c - a)
  apply = jax.random.bernoulli(k_p, p, (b,))
  return jnp.where(apply[:, None], out, wave)
