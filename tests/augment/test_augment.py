"""Augmentations: behaviour, identity settings, per-example independence, eager == jit, finiteness."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animaljax import augment

KEY = jax.random.key(42)
# Outside the eager-vs-jit test everything runs jitted: eager op-by-op dispatch (Beta sampling above all) is slow.
sample_mixup = jax.jit(augment.sample_mixup, static_argnums=(1, 2))
spec_augment = jax.jit(augment.spec_augment, static_argnames=("time_width", "freq_width", "mask_value"))


def _wave(b: int = 4, t: int = 2000, seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).standard_normal((b, t)) * 0.1, jnp.float32)


def _feats(b: int = 4, t: int = 200, f: int = 64, seed: int = 1) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).standard_normal((b, t, f)) - 5.0, jnp.float32)


# Every augmentation as (key, x) -> y with its default-ish setting and its identity setting.
CASES = {
  "spec_augment": (
    lambda k, x: augment.spec_augment(k, x),
    lambda k, x: augment.spec_augment(k, x, time_masks=0, freq_masks=0),
    _feats,
  ),
  "mixup_wave": (
    lambda k, x: augment.mixup(x, *augment.sample_mixup(k, x.shape[0], 0.4)),
    lambda k, x: augment.mixup(x, *augment.sample_mixup(k, x.shape[0], 0.0)),
    _wave,
  ),
  "mixup_feats": (
    lambda k, x: augment.mixup(x, *augment.sample_mixup(k, x.shape[0], 1.0)),
    lambda k, x: augment.mixup(x, *augment.sample_mixup(k, x.shape[0], -1.0)),
    _feats,
  ),
  "gain": (
    lambda k, x: augment.random_gain(k, x),
    lambda k, x: augment.random_gain(k, x, db_range=(0.0, 0.0)),
    _wave,
  ),
  "shift_roll": (
    lambda k, x: augment.random_time_shift(k, x, 300),
    lambda k, x: augment.random_time_shift(k, x, 0),
    _wave,
  ),
  "shift_zero": (
    lambda k, x: augment.random_time_shift(k, x, 300, mode="zero"),
    lambda k, x: augment.random_time_shift(k, x, 0, mode="zero"),
    _wave,
  ),
  "shorten": (
    lambda k, x: augment.random_shorten(k, x, 1000.0, (0.1, 1.0)),
    lambda k, x: augment.random_shorten(k, x, 1000.0, (0.1, 1.0), p=0.0),
    _wave,
  ),
  "speed": (
    lambda k, x: augment.random_speed(k, x, (0.8, 1.25)),
    lambda k, x: augment.random_speed(k, x, (1.0, 1.0)),
    _wave,
  ),
  "quantize": (
    lambda k, x: augment.random_quantize(k, x, bits=8),
    lambda k, x: augment.random_quantize(k, x, bits=8, p=0.0),
    _wave,
  ),
  "noise_mix": (
    lambda k, x: augment.random_noise_mix(k, x, _wave(3, 700, seed=5), (0.0, 10.0)),
    lambda k, x: augment.random_noise_mix(k, x, _wave(3, 700, seed=5), (0.0, 10.0), p=0.0),
    _wave,
  ),
}


@pytest.mark.parametrize("name", [n for n in CASES if n != "mixup_feats"])  # mixup_wave covers eager mixup
def test_eager_equals_jit_and_finite(name: str) -> None:
  fn, _, make = CASES[name]
  x = make()
  eager = fn(KEY, x)
  jitted = jax.jit(fn)(KEY, x)
  assert eager.shape == x.shape and eager.dtype == x.dtype
  np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), rtol=1e-6, atol=1e-7)
  assert bool(jnp.all(jnp.isfinite(jitted)))
  assert not np.array_equal(np.asarray(jitted), np.asarray(x)), "the non-identity setting changed nothing"


@pytest.mark.parametrize("name", list(CASES))
def test_identity_settings_return_input_exactly(name: str) -> None:
  _, identity, make = CASES[name]
  x = make()
  np.testing.assert_array_equal(np.asarray(identity(KEY, x)), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(jax.jit(identity)(KEY, x)), np.asarray(x))


# ----------------------------------------------------------------------------------------------------------------
# SpecAugment
# ----------------------------------------------------------------------------------------------------------------
def test_spec_augment_masks_whole_bands_per_example() -> None:
  x = _feats(b=64, t=300, f=64)
  y = np.asarray(spec_augment(KEY, x, time_width=40, freq_width=8, mask_value=-99.0))
  masked = y == -99.0
  time_rows = masked.all(axis=2)  # (B, T): frames masked across every bin
  freq_cols = masked.all(axis=1)  # (B, F)
  # Every masked cell lies in a fully masked frame or a fully masked bin (masks are whole bands).
  assert np.array_equal(masked, time_rows[:, :, None] | freq_cols[:, None, :])
  # At most 2 bands of at most the width: at most 2 * width masked frames / bins per example.
  assert time_rows.sum(1).max() <= 80 and freq_cols.sum(1).max() <= 16
  # Unmasked cells untouched.
  np.testing.assert_array_equal(y[~masked], np.asarray(x)[~masked])
  # Independent per example: the masks differ across the batch, and some examples get some masking.
  assert len({tuple(r) for r in time_rows}) > 32 and time_rows.any()
  # Widths reach the maximum region, so starts must be constrained to fit (a band never runs off the end).
  assert 20 < time_rows.sum(1).mean() < 60


def test_spec_augment_width_larger_than_axis() -> None:
  x = _feats(b=8, t=10, f=4)
  y = spec_augment(KEY, x, time_width=64, freq_width=8)
  assert y.shape == x.shape and bool(jnp.all(jnp.isfinite(y)))


# ----------------------------------------------------------------------------------------------------------------
# Mixup
# ----------------------------------------------------------------------------------------------------------------
def test_mixup_combines_inputs_and_labels_consistently() -> None:
  b = 4000  # the size and alpha of the Beta test below: one compilation of the (slow to compile) sampler
  lam, perm = sample_mixup(KEY, b, 10.0)
  assert lam.shape == (b,) and perm.shape == (b,)
  assert bool(jnp.all((lam >= 0) & (lam <= 1)))
  assert sorted(np.asarray(perm).tolist()) == list(range(b))
  x = _wave(b, 20)
  labels = jax.nn.one_hot(jnp.arange(b) % 5, 5)
  mx, my = augment.mixup(x, lam, perm), augment.mixup(labels, lam, perm)
  lam_np, perm_np = np.asarray(lam), np.asarray(perm)
  np.testing.assert_allclose(
    np.asarray(mx),
    lam_np[:, None] * np.asarray(x) + (1 - lam_np[:, None]) * np.asarray(x)[perm_np],
    atol=1e-6,
  )
  np.testing.assert_allclose(np.asarray(my).sum(1), 1.0, atol=1e-6)  # mixed one-hot stays a distribution
  feats = _feats(b, 7, 3)
  mf = augment.mixup(feats, lam, perm)
  np.testing.assert_allclose(
    np.asarray(mf[3]),
    lam_np[3] * np.asarray(feats[3]) + (1 - lam_np[3]) * np.asarray(feats[perm_np[3]]),
    atol=1e-6,
  )


def test_mixup_beta_parameter_shapes_lam() -> None:
  """Beta(10, 10) (AST's) concentrates near 0.5: std sqrt(1 / 84) = 0.109 (uniform: 0.289)."""
  lam, _ = sample_mixup(KEY, 4000, 10.0)
  assert abs(float(lam.mean()) - 0.5) < 0.02 and 0.1 < float(lam.std()) < 0.12


def test_mixup_rejects_integers() -> None:
  with pytest.raises(TypeError, match="floating"):
    augment.mixup(jnp.zeros((2, 10), jnp.int16), jnp.ones(2), jnp.arange(2))


# ----------------------------------------------------------------------------------------------------------------
# Noise at SNR
# ----------------------------------------------------------------------------------------------------------------
def _measured_snr(signal: jax.Array, mixed: jax.Array) -> np.ndarray:
  s, m = np.asarray(signal, np.float64), np.asarray(mixed, np.float64)
  return 10 * np.log10(np.mean(s**2, axis=1) / np.mean((m - s) ** 2, axis=1))


def test_mix_at_snr_exact() -> None:
  signal, noise = _wave(6, 4000, seed=2), _wave(6, 4000, seed=3) * 3.0
  snr = jnp.asarray([-10.0, -3.0, 0.0, 5.0, 20.0, 40.0])
  mixed = jax.jit(augment.mix_at_snr)(signal, noise, snr)
  np.testing.assert_allclose(_measured_snr(signal, mixed), np.asarray(snr), atol=0.1)


def test_mix_at_snr_silent_inputs_are_guarded() -> None:
  signal = _wave(3, 1000).at[0].set(0.0)
  noise = _wave(3, 1000, seed=9).at[1].set(0.0)
  mixed = augment.mix_at_snr(signal, noise, jnp.zeros(3))
  assert bool(jnp.all(jnp.isfinite(mixed)))
  np.testing.assert_array_equal(np.asarray(mixed[:2]), np.asarray(signal[:2]))
  assert not np.array_equal(np.asarray(mixed[2]), np.asarray(signal[2]))


@pytest.mark.parametrize("noise_len", [700, 3000])  # shorter than the clip (tiled) and longer (cropped)
def test_random_noise_mix_hits_the_snr_range(noise_len: int) -> None:
  signal = _wave(32, 2000)
  bank = _wave(5, noise_len, seed=7)
  mixed = jax.jit(lambda k, s: augment.random_noise_mix(k, s, bank, (3.0, 12.0)))(KEY, signal)
  snr = _measured_snr(signal, mixed)
  assert snr.min() > 3.0 - 0.1 and snr.max() < 12.0 + 0.1 and snr.std() > 1.0
  # The added noise is g * (a crop, or a wrap-around tiling, of one bank clip): find it by brute force.
  added = np.asarray(mixed - signal, np.float64)
  rows = np.asarray(bank, np.float64)
  for ex in range(2):
    found = False
    for r in rows:
      cands = r[(np.arange(noise_len)[:, None] + np.arange(2000)[None, :]) % noise_len]  # (offsets, 2000)
      if noise_len >= 2000:
        cands = cands[: noise_len - 2000 + 1]  # a long clip is cropped, never wrapped
      g = cands @ added[ex] / np.sum(cands**2, axis=1)
      resid = np.max(np.abs(cands * g[:, None] - added[ex]), axis=1)
      found |= bool(np.min(resid) < 1e-5 * np.max(np.abs(added[ex])))
    assert found, f"example {ex}: added noise is not a scaled crop/tiling of a bank clip"


def test_random_noise_mix_probability() -> None:
  signal = _wave(400, 64)
  bank = _wave(2, 64, seed=3)
  mixed = jax.jit(augment.random_noise_mix, static_argnums=(3, 4))(KEY, signal, bank, (0.0, 0.0), 0.3)
  changed = np.any(np.asarray(mixed) != np.asarray(signal), axis=1)
  assert 0.2 < changed.mean() < 0.4


def test_int16_waveforms_are_scaled() -> None:
  ints = jnp.asarray(np.random.default_rng(0).integers(-2000, 2000, (2, 500)), jnp.int16)
  as_float = ints.astype(jnp.float32) / 32768
  np.testing.assert_array_equal(np.asarray(augment.random_gain(KEY, ints, (0.0, 0.0))), np.asarray(as_float))
  np.testing.assert_allclose(
    np.asarray(augment.mix_at_snr(ints, ints[::-1], jnp.array([5.0, 5.0]))),
    np.asarray(augment.mix_at_snr(as_float, as_float[::-1], jnp.array([5.0, 5.0]))),
  )


# ----------------------------------------------------------------------------------------------------------------
# Waveform
# ----------------------------------------------------------------------------------------------------------------
def test_random_gain_range_per_example() -> None:
  x = _wave(64, 100)
  y = augment.random_gain(KEY, x, (-6.0, 6.0))
  db = 20 * np.log10(np.asarray(y)[:, 0] / np.asarray(x)[:, 0])
  assert db.min() >= -6.001 and db.max() <= 6.001 and db.std() > 2.0
  np.testing.assert_allclose(
    np.asarray(y) / np.asarray(x), np.repeat(10 ** (db / 20)[:, None], 100, 1), rtol=1e-5
  )


@pytest.mark.parametrize("mode", ["roll", "zero"])
def test_random_time_shift(mode: str) -> None:
  t = 1000
  x = jnp.tile(jnp.arange(1, t + 1, dtype=jnp.float32), (32, 1))  # sample value = position + 1
  y = np.asarray(augment.random_time_shift(KEY, x, 50, mode=mode))
  base = np.arange(1, t + 1, dtype=np.float32)

  def shifted(s: int) -> np.ndarray:  # output[i] = input[i - s]
    out = np.roll(base, s)
    if mode == "zero":
      out[: max(s, 0)] = 0
      out[t + min(s, 0) :] = 0
    return out

  shifts = []
  for row in y:
    matches = [s for s in range(-50, 51) if np.array_equal(row, shifted(s))]
    assert len(matches) == 1, "each row must be the input shifted by one s in [-50, 50]"
    shifts.append(matches[0])
  assert len(set(shifts)) > 10


def test_random_crop() -> None:
  t = 500
  x = jnp.tile(jnp.arange(t, dtype=jnp.int16), (16, 1))
  crop = functools.partial(augment.random_crop, length=120)
  y = np.asarray(crop(KEY, x))
  np.testing.assert_array_equal(y, np.asarray(jax.jit(crop)(KEY, x)))
  assert y.shape == (16, 120) and y.dtype == np.int16
  starts = y[:, 0]
  np.testing.assert_array_equal(y, starts[:, None] + np.arange(120)[None, :])
  assert starts.min() >= 0 and starts.max() <= t - 120 and len(set(starts.tolist())) > 8
  np.testing.assert_array_equal(np.asarray(augment.random_crop(KEY, x, t)), np.asarray(x))
  with pytest.raises(ValueError):
    augment.random_crop(KEY, x, t + 1)


# ----------------------------------------------------------------------------------------------------------------
# Short segments and low bit depth (issue 15's messy folders)
# ----------------------------------------------------------------------------------------------------------------
def _segment_of(row: np.ndarray, wave: np.ndarray, fill: str) -> tuple[int, int] | None:
  """(start, length) of the segment of `wave` that `row` is, looped or padded to its length; None if none is."""
  t = len(wave)
  for length in range(1, t):
    for start in range(t - length + 1):
      seg = wave[start : start + length]
      if fill == "loop":
        want = np.resize(seg, t)
      else:
        want = np.concatenate([seg, np.zeros(t - length, wave.dtype)])
      if np.array_equal(row, want):
        return start, length
  return None


@pytest.mark.parametrize("fill", ["loop", "pad"])
def test_random_shorten_makes_a_short_clip_of_a_random_segment(fill: str) -> None:
  """Each changed row is exactly one segment of its input of a length in the range, looped or zero-padded as the
  input rule fills a short clip; p is honoured and the other rows are untouched."""
  sr, t = 100.0, 120  # 1.2 s rows at 100 Hz keep the exhaustive segment search small
  x = np.asarray(_wave(400, t, seed=3))
  fn = jax.jit(lambda k, w: augment.random_shorten(k, w, sr, (0.2, 0.8), p=0.5, fill=fill))
  out = np.asarray(fn(KEY, jnp.asarray(x)))
  changed = np.abs(out - x).max(1) > 0
  assert abs(changed.mean() - 0.5) < 4 * np.sqrt(0.25 / 400)
  np.testing.assert_array_equal(out[~changed], x[~changed])
  found = [_segment_of(out[i], x[i], fill) for i in np.flatnonzero(changed)[:40]]
  assert all(f is not None for f in found)
  lengths = np.array([length for _, length in found])
  starts = np.array([start for start, _ in found])
  assert lengths.min() >= 20 and lengths.max() <= 80 and lengths.std() > 8  # 0.2-0.8 s, spread over the range
  assert starts.max() > 30  # segments from anywhere in the row, not only its start


def test_random_shorten_leaves_rows_no_longer_than_the_range_and_rejects_bad_fill() -> None:
  x = _wave(8, 100)
  np.testing.assert_array_equal(np.asarray(augment.random_shorten(KEY, x, 100.0, (1.0, 2.0))), np.asarray(x))
  with pytest.raises(ValueError, match="fill"):
    augment.random_shorten(KEY, x, 100.0, (0.1, 0.5), fill="tile")


def test_random_quantize_rounds_to_the_bit_depth_with_probability_p() -> None:
  x = np.asarray(_wave(2000, 300, seed=4)) * 3  # some samples beyond full scale: clipped as PCM is
  out = np.asarray(jax.jit(lambda k, w: augment.random_quantize(k, w, bits=8, p=0.3))(KEY, jnp.asarray(x)))
  changed = np.abs(out - x).max(1) > 0
  assert abs(changed.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 2000)
  np.testing.assert_array_equal(out[~changed], x[~changed])
  q = out[changed] * 128
  np.testing.assert_array_equal(q, np.round(q))  # on the 8-bit grid
  assert q.min() >= -128 and q.max() <= 127
  inside = np.abs(x[changed]) < 0.99
  assert np.abs(out[changed] - x[changed])[inside].max() <= 0.5 / 128 + 1e-7  # rounding, not truncation
  pcm = (np.asarray(_wave(4, 300, seed=5)) * 32768).astype(np.int16)
  np.testing.assert_array_equal(
    np.asarray(augment.random_quantize(KEY, jnp.asarray(pcm), bits=16)), pcm.astype(np.float32) / 32768
  )


def test_random_speed_resamples_a_tone_by_the_drawn_factor_with_probability_p() -> None:
  """A 200 Hz tone played at factor r comes out at 200 r Hz (its FFT peak), r within the range and spread over
  it; p is honoured and the other rows are untouched."""
  sr, t = 8000, 4000
  tone = np.sin(2 * np.pi * 200 * np.arange(t) / sr).astype(np.float32)
  x = np.tile(tone, (600, 1))
  out = np.asarray(jax.jit(lambda k, w: augment.random_speed(k, w, (0.8, 1.25), p=0.5))(KEY, jnp.asarray(x)))
  changed = np.abs(out - x).max(1) > 1e-6
  assert abs(changed.mean() - 0.5) < 4 * np.sqrt(0.25 / 600)
  np.testing.assert_array_equal(out[~changed], x[~changed])
  head = out[changed][:, : int(t / 1.25)]  # before any row runs out of input
  spectrum = np.abs(np.fft.rfft(head * np.hanning(head.shape[1]), n=8 * head.shape[1], axis=1))
  peak_hz = np.argmax(spectrum, axis=1) * sr / (8 * head.shape[1])
  factor = peak_hz / 200
  assert factor.min() > 0.8 - 0.01 and factor.max() < 1.25 + 0.01
  assert factor.min() < 0.85 and factor.max() > 1.18  # the whole range is drawn
