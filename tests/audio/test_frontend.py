"""Front ends against their references: librosa (log-mel) and kaldi-native-fbank (Kaldi fbank).

Tolerances. Random signals have a small dynamic range and must match to 1e-3 dB / 1e-3 nats everywhere. Real
clips have bins 100+ dB below the frame's peak; there the reference and we differ by float32 round-off
(librosa multiplies the frames by a float64 window, so its FFT runs in float64; ours runs in float32 by
design), so on real clips we check 1e-3 (dB or nats) on bins within 40 dB of their frame's peak and, on every
bin, the power error relative to the frame's peak power (1e-4, i.e. round-off level).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animaljax.audio import frontend as fe

librosa = pytest.importorskip("librosa")
knf = pytest.importorskip("kaldi_native_fbank")

# Every check runs jitted (the way the model runs it; eager op-by-op dispatch is also much slower here).
log_mel = jax.jit(fe.log_mel, static_argnums=1)
kaldi_fbank = jax.jit(fe.kaldi_fbank, static_argnums=1)
features = jax.jit(fe.features, static_argnums=1)

# Clips picked for their large in-frame dynamic range (the hardest for float32) plus an ordinary one.
REAL_CLIPS = ["1-69422-A-3.flac", "3-178096-A-6.flac", "1-100032-A-0.flac"]


# ----------------------------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------------------------
def librosa_log_mel(y: np.ndarray, cfg: fe.LogMelConfig) -> np.ndarray:
  """(time,) -> (frames, n_mels), the exact librosa call the front end promises to match."""
  mel = librosa.feature.melspectrogram(
    y=y,
    sr=cfg.sample_rate,
    n_fft=cfg.n_fft,
    hop_length=cfg.hop_length,
    win_length=cfg.win_length,
    window="hann",
    center=cfg.center,
    pad_mode="reflect",
    power=2.0,
    n_mels=cfg.n_mels,
    fmin=cfg.fmin,
    fmax=cfg.fmax,
  )
  return librosa.power_to_db(mel, ref=1.0, amin=cfg.amin, top_db=None).T


def knf_fbank(y: np.ndarray, cfg: fe.FbankConfig) -> np.ndarray:
  """(time,) already scaled as knf should see it -> (frames, bins) raw log fbank from kaldi-native-fbank."""
  opts = knf.FbankOptions()
  opts.frame_opts.samp_freq = cfg.sample_rate
  opts.frame_opts.dither = 0.0
  opts.frame_opts.window_type = cfg.window
  opts.frame_opts.frame_length_ms = cfg.frame_length_ms
  opts.frame_opts.frame_shift_ms = cfg.frame_shift_ms
  opts.frame_opts.preemph_coeff = cfg.preemphasis
  opts.frame_opts.remove_dc_offset = cfg.remove_dc_offset
  opts.frame_opts.snip_edges = cfg.snip_edges
  opts.frame_opts.round_to_power_of_two = cfg.round_to_power_of_two
  opts.mel_opts.num_bins = cfg.num_mel_bins
  opts.mel_opts.low_freq = cfg.low_freq
  opts.mel_opts.high_freq = cfg.high_freq
  opts.use_energy = cfg.use_energy
  opts.htk_compat = cfg.htk_compat
  opts.energy_floor = cfg.energy_floor
  fbank = knf.OnlineFbank(opts)
  fbank.accept_waveform(cfg.sample_rate, y.astype(np.float64).tolist())
  fbank.input_finished()
  return np.stack([np.asarray(fbank.get_frame(i)) for i in range(fbank.num_frames_ready)])


def check_real(ours: np.ndarray, ref: np.ndarray, *, db: bool) -> None:
  """The float32 criteria for real clips described in the module docstring."""
  assert ours.shape == ref.shape
  to_power = (lambda v: 10.0 ** (v / 10.0)) if db else np.exp
  near_peak = ref - ref.max(axis=1, keepdims=True) > -(40.0 if db else 4.0 * np.log(10.0))
  err = np.abs(ours - ref)
  assert err[near_peak].max() < 1e-3, err[near_peak].max()
  peak = to_power(ref.max(axis=1, keepdims=True))
  rel_power = np.abs(to_power(ours) - to_power(ref)) / peak
  assert rel_power.max() < 1e-4, rel_power.max()


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
  return (np.random.default_rng(0).standard_normal(32000) * 0.1).astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Shape contract
# ----------------------------------------------------------------------------------------------------------------
FRONTENDS = {
  "logmel32k": fe.LogMelConfig.panns_32k(),
  "logmel16k": fe.LogMelConfig.panns_16k(),
  "logmel32k_nocenter": fe.LogMelConfig.panns_32k(center=False),
  "logmel16k_matmul": fe.LogMelConfig.panns_16k(stft_impl="matmul"),
  "fbank_povey": fe.FbankConfig(),
  "fbank_ast": fe.FbankConfig.ast(),
  "fbank_nosnip_energy": fe.FbankConfig(snip_edges=False, use_energy=True),
}


@pytest.mark.parametrize("length", [100, 400, 16001])
@pytest.mark.parametrize("dtype", ["int16", "float32", "bfloat16"])
@pytest.mark.parametrize("name", list(FRONTENDS))
def test_shape_contract(name: str, dtype: str, length: int) -> None:
  """(batch, time) -> (batch, num_frames(time), bins) float32 under jit, or ValueError when too short."""
  cfg = FRONTENDS[name]
  rng = np.random.default_rng(length)
  if dtype == "int16":
    wave = jnp.asarray(rng.integers(-3000, 3000, (2, length)), jnp.int16)
  else:
    wave = jnp.asarray(rng.standard_normal((2, length)) * 0.1, dtype)
  frames = fe.num_frames(length, cfg)
  too_short = frames < 1 or (isinstance(cfg, fe.LogMelConfig) and cfg.center and length <= cfg.n_fft // 2)
  fn = jax.jit(lambda w: fe.features(w, cfg))
  if too_short:
    with pytest.raises(ValueError, match="too short|shorter than|no Kaldi frame"):
      fn(wave)
    return
  out = fn(wave)
  assert out.shape == (2, frames, fe.num_bins(cfg))
  assert out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))


def test_num_frames_formulas() -> None:
  """Frame counts of the references: librosa 1 + n // hop (centred), Kaldi 1 + (n - 400) // 160."""
  assert fe.num_frames(160000, fe.LogMelConfig.panns_16k()) == 1001
  assert fe.num_frames(320000, fe.LogMelConfig.panns_32k()) == 1001
  assert fe.num_frames(160000, fe.FbankConfig.ast()) == 998
  assert fe.num_frames(399, fe.FbankConfig()) == 0


def test_int16_is_scaled(noise: np.ndarray) -> None:
  ints = np.round(noise * 32768).astype(np.int16)
  for cfg in (fe.LogMelConfig.panns_16k(), fe.FbankConfig()):
    a = features(jnp.asarray(ints)[None], cfg)
    b = features(jnp.asarray(ints.astype(np.float32) / 32768)[None], cfg)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_bf16_wave_gives_fp32_features_close_to_fp32(noise: np.ndarray) -> None:
  for cfg in (fe.LogMelConfig.panns_16k(), fe.FbankConfig.ast()):
    f32 = features(jnp.asarray(noise)[None], cfg)
    bf16 = features(jnp.asarray(noise, jnp.bfloat16)[None], cfg)
    assert bf16.dtype == jnp.float32
    # bf16 keeps 8 bits of mantissa: a ~0.4% sample error, a few hundredths of a dB / nat on average.
    scale = 10.0 if isinstance(cfg, fe.LogMelConfig) else 1.0 / (2 * cfg.std)
    assert float(jnp.mean(jnp.abs(f32 - bf16))) < 0.05 * scale


# ----------------------------------------------------------------------------------------------------------------
# Log-mel against librosa
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", ["fft", "matmul"])
@pytest.mark.parametrize(
  "overrides",
  [
    dict(),
    dict(sample_rate=16000, n_fft=512, hop_length=160, fmax=8000.0),
    dict(center=False),
    dict(win_length=800),
  ],
  ids=["32k", "16k", "nocenter", "win800"],
)
def test_log_mel_matches_librosa_random(noise: np.ndarray, impl: str, overrides: dict) -> None:
  cfg = fe.LogMelConfig(stft_impl=impl, **overrides)
  y = noise[: cfg.sample_rate]
  ours = np.asarray(log_mel(jnp.asarray(y)[None], cfg))[0]
  ref = librosa_log_mel(y, cfg)
  assert ours.shape == ref.shape
  np.testing.assert_allclose(ours, ref, atol=1e-3, rtol=0)


@pytest.mark.parametrize("clip", REAL_CLIPS)
def test_log_mel_matches_librosa_real(esc50_root, clip: str) -> None:
  y44, sr = librosa.load(esc50_root / "audio" / clip, sr=None, mono=True)
  for cfg in (fe.LogMelConfig.panns_32k(), fe.LogMelConfig.panns_16k(stft_impl="matmul")):
    y = librosa.resample(y44, orig_sr=sr, target_sr=cfg.sample_rate).astype(np.float32)
    ours = np.asarray(log_mel(jnp.asarray(y)[None], cfg))[0]
    check_real(ours, librosa_log_mel(y, cfg), db=True)


# ----------------------------------------------------------------------------------------------------------------
# Kaldi fbank against kaldi-native-fbank
# ----------------------------------------------------------------------------------------------------------------
# knf (like Kaldi) refuses 128 bins from 20 Hz with a 512-point FFT (bin 3 contains no FFT bin; torchaudio, and
# so AST, silently leaves it at log(eps)), so the 128-bin comparisons start at 60 Hz.
@pytest.mark.parametrize("impl", ["fft", "matmul"])
@pytest.mark.parametrize("scale", [1.0, 32768.0])
@pytest.mark.parametrize("window", ["povey", "hanning", "hamming", "rectangular"])
def test_fbank_matches_knf_random(noise: np.ndarray, window: str, scale: float, impl: str) -> None:
  cfg = fe.FbankConfig(window=window, num_mel_bins=80, normalize=False, scale=scale, stft_impl=impl)
  y = noise[:16000]
  ours = np.asarray(kaldi_fbank(jnp.asarray(y)[None], cfg))[0]
  np.testing.assert_allclose(ours, knf_fbank(y * scale, cfg), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
  "overrides",
  [
    dict(num_mel_bins=128, low_freq=60.0),
    dict(snip_edges=False),
    dict(use_energy=True, htk_compat=False),
    dict(use_energy=True, htk_compat=True, energy_floor=1.0),
    dict(high_freq=-400.0, preemphasis=0.0, remove_dc_offset=False, round_to_power_of_two=False),
    dict(sample_rate=8000, frame_length_ms=32.0, frame_shift_ms=12.5),
  ],
  ids=["128bins", "nosnip", "energy_first", "energy_last_floor", "options", "8k"],
)
def test_fbank_options_match_knf(noise: np.ndarray, overrides: dict) -> None:
  cfg = fe.FbankConfig(**{"num_mel_bins": 40, "normalize": False, **overrides})
  y = noise[:12345] + 0.05  # a DC offset, which remove_dc_offset must take out
  ours = np.asarray(kaldi_fbank(jnp.asarray(y)[None], cfg))[0]
  np.testing.assert_allclose(ours, knf_fbank(y, cfg), atol=1e-3, rtol=0)


def test_fbank_scale_shifts_log_energies(noise: np.ndarray) -> None:
  """Kaldi-range input (x 32768) adds 2 ln 32768 to every log energy where the floor does not bind."""
  y = jnp.asarray(noise[:16000])[None]
  unit = kaldi_fbank(y, fe.FbankConfig(normalize=False))
  big = kaldi_fbank(y, fe.FbankConfig(normalize=False, scale=32768.0))
  floor = np.log(np.finfo(np.float32).eps)
  at_floor = np.asarray(unit) <= floor + 1e-6
  # With 128 bins from 20 Hz one triangle holds no FFT bin (bin 3): it sits at the floor for both scales.
  assert at_floor.any() and np.all(np.asarray(big)[at_floor] <= floor + 1e-6)
  np.testing.assert_allclose(np.asarray(big - unit)[~at_floor], 2 * np.log(32768.0), atol=1e-3)


def test_ast_recipe_matches_knf(noise: np.ndarray) -> None:
  """FbankConfig.ast(): hanning, clip mean removed, AudioSet normalisation (x - mean) / (2 std)."""
  cfg = fe.FbankConfig.ast(low_freq=60.0)
  y = noise[:16000] + 0.2
  ours = np.asarray(kaldi_fbank(jnp.asarray(y)[None], cfg))[0]
  raw = knf_fbank(y - y.mean(), dataclasses.replace(cfg, normalize=False))
  np.testing.assert_allclose(ours, (raw - cfg.mean) / (2 * cfg.std), atol=1e-3 / (2 * cfg.std), rtol=0)


@pytest.mark.parametrize("clip", REAL_CLIPS)
def test_fbank_matches_knf_real(esc50_root, clip: str) -> None:
  y44, sr = librosa.load(esc50_root / "audio" / clip, sr=None, mono=True)
  y = librosa.resample(y44, orig_sr=sr, target_sr=16000).astype(np.float32)
  for window, impl in (("povey", "fft"), ("hanning", "matmul")):
    cfg = fe.FbankConfig(window=window, num_mel_bins=128, low_freq=60.0, normalize=False, stft_impl=impl)
    ours = np.asarray(kaldi_fbank(jnp.asarray(y)[None], cfg))[0]
    check_real(ours, knf_fbank(y, cfg), db=False)


def test_fbank_dither_needs_key(noise: np.ndarray) -> None:
  cfg = fe.FbankConfig(dither=1.0, normalize=False)
  y = jnp.asarray(noise[:4000])[None]
  with pytest.raises(ValueError, match="PRNG key"):
    kaldi_fbank(y, cfg)
  a = kaldi_fbank(y, cfg, key=jax.random.key(0))
  b = kaldi_fbank(y, cfg, key=jax.random.key(1))
  plain = kaldi_fbank(y, dataclasses.replace(cfg, dither=0.0))
  assert not np.allclose(np.asarray(a), np.asarray(b))
  # Dither 1.0 on a [-1, 1] signal swamps it; 1e-4 (-60 dB against its 0.1 rms) barely moves the features.
  small = kaldi_fbank(y, dataclasses.replace(cfg, dither=1e-4), key=jax.random.key(0))
  assert float(jnp.mean(jnp.abs(small - plain))) < 0.01 < float(jnp.mean(jnp.abs(a - plain)))


def test_unknown_config_and_bad_shapes() -> None:
  with pytest.raises(TypeError):
    fe.features(jnp.zeros((1, 16000)), object())
  with pytest.raises(ValueError, match="batch, time"):
    log_mel(jnp.zeros((16000,)))
  with pytest.raises(ValueError, match="window"):
    kaldi_fbank(jnp.zeros((1, 16000)), fe.FbankConfig(window="blackmanish"))
