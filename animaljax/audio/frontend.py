"""On-device audio front ends: log-mel (PANNs/librosa) and Kaldi-compatible fbank (AST).

Both are pure `jnp` functions of a waveform and a frozen config, with no parameters, so the classifier can run
them inside the jitted step (training, export and demo all take raw waveforms). Shape contract for every front
end and setting:

  wave (batch, time) int16 | float  ->  features (batch, frames, bins) float32,  frames = num_frames(time, cfg)

* int16 input is scaled by 1/32768 into [-1, 1]; float input (any float dtype, bf16 included) is used as is.
* The front end always computes in float32 (`jnp.fft` has no bf16 and log energies need the range), whatever
  the dtype of the model that follows.
* A clip too short for a single frame raises `ValueError` at trace time (shapes are static under jit); the data
  pipeline pads clips to a fixed length, so this only fires on a configuration error.

Filterbanks, windows and DFT matrices are built once with numpy (librosa for the Slaney mel) and enter the
traced computation as constants.

Precision (measured on ESC-50 clips against librosa / kaldi-native-fbank): bins within 40 dB of their frame's
peak agree to < 1e-3 dB (log-mel, fft) and < 1e-3 nats (fbank); bins 100+ dB below the peak differ by up to
~0.05 dB (fft) / ~0.15 dB (matmul), float32 round-off of the transform (librosa windows in float64, so its FFT
runs in float64). In power terms the error stays below 2e-5 of the frame's peak.

AST's setting (128 bins from 20 Hz, 512-point FFT) leaves mel bin 3 without any FFT bin: like torchaudio (and
so AST) it stays at log(eps); Kaldi and kaldi-native-fbank refuse that configuration.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio.efficientat_frontend import EfficientAtMelConfig, efficientat_mel
from animaljax.audio.efficientat_frontend import num_frames as _efficientat_frames

StftImpl = Literal["fft", "matmul"]
_INT16_SCALE = 1.0 / 32768.0
# Kaldi floors mel energies (and the raw energy) at float epsilon before the log.
_KALDI_EPS = float(np.finfo(np.float32).eps)


# ----------------------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LogMelConfig:
  """librosa-compatible log-mel: periodic Hann STFT, power 2, Slaney mel, `10 log10(max(mel, amin))`.

  `stft_impl="matmul"` replaces `rfft` by a real-DFT matmul (window folded in), often faster on accelerators.
  """

  sample_rate: int = 32000
  n_fft: int = 1024
  hop_length: int = 320
  win_length: int | None = None  # None = n_fft
  n_mels: int = 64
  fmin: float = 50.0
  fmax: float = 14000.0
  amin: float = 1e-10
  center: bool = True
  pad_mode: str = "reflect"
  stft_impl: StftImpl = "fft"

  @classmethod
  def panns_32k(cls, **overrides) -> LogMelConfig:
    """PANNs CNN14 at 32 kHz: n_fft 1024, hop 320 (10 ms), 64 mels, 50-14,000 Hz."""
    return cls(**overrides)

  @classmethod
  def panns_16k(cls, **overrides) -> LogMelConfig:
    """PANNs CNN14 16 kHz variant: n_fft 512, hop 160 (10 ms), 64 mels, 50-8,000 Hz."""
    kw = dict(sample_rate=16000, n_fft=512, hop_length=160, fmin=50.0, fmax=8000.0)
    return cls(**{**kw, **overrides})

  @classmethod
  def panns_8k(cls, **overrides) -> LogMelConfig:
    """PANNs Cnn14_8k: n_fft 256, hop 80 (10 ms), 64 mels, 50-4,000 Hz."""
    kw = dict(sample_rate=8000, n_fft=256, hop_length=80, fmin=50.0, fmax=4000.0)
    return cls(**{**kw, **overrides})


@dataclasses.dataclass(frozen=True)
class FbankConfig:
  """Kaldi `compute-fbank-feats` options (as kaldi-native-fbank / torchaudio.compliance.kaldi.fbank).

  The waveform is taken in [-1, 1] and multiplied by `scale` (AST feeds [-1, 1]: scale 1; Kaldi tools feed
  int16-range samples: scale 32768, which shifts every log energy by 2 ln 32768 except where the floor binds).
  `normalize` applies AST's `(x - mean) / (2 * std)` after the log. `dither > 0` needs a PRNG key.
  """

  sample_rate: int = 16000
  frame_length_ms: float = 25.0
  frame_shift_ms: float = 10.0
  num_mel_bins: int = 128
  preemphasis: float = 0.97
  remove_dc_offset: bool = True
  dither: float = 0.0
  window: Literal["povey", "hanning", "hamming", "rectangular"] = "povey"
  low_freq: float = 20.0
  high_freq: float = 0.0  # <= 0: offset from Nyquist, as Kaldi
  snip_edges: bool = True
  round_to_power_of_two: bool = True
  use_energy: bool = False
  htk_compat: bool = True  # with use_energy: energy last (True) or first (False)
  use_log_fbank: bool = True
  energy_floor: float = 0.0
  normalize: bool = True
  mean: float = -4.2677393
  std: float = 4.5689974
  scale: float = 1.0
  subtract_clip_mean: bool = False  # AST's `waveform - waveform.mean()` on the whole clip
  stft_impl: StftImpl = "fft"

  @classmethod
  def ast(cls, **overrides) -> FbankConfig:
    """AST's recipe: torchaudio kaldi fbank, hanning window, 128 bins, clip mean removed, AudioSet norm."""
    kw = dict(window="hanning", subtract_clip_mean=True, htk_compat=True, use_energy=False)
    return cls(**{**kw, **overrides})

  @property
  def frame_length(self) -> int:
    """Window length in samples (Kaldi truncates `samp_freq * 0.001 * ms`)."""
    return int(self.sample_rate * 0.001 * self.frame_length_ms)

  @property
  def frame_shift(self) -> int:
    return int(self.sample_rate * 0.001 * self.frame_shift_ms)

  @property
  def padded_length(self) -> int:
    n = self.frame_length
    return 1 << (n - 1).bit_length() if self.round_to_power_of_two else n


FrontendConfig = LogMelConfig | FbankConfig | EfficientAtMelConfig  # the last: EfficientAT's own


# ----------------------------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------------------------
def num_frames(num_samples: int, cfg: FrontendConfig) -> int:
  """Number of frames the front end produces for `num_samples` samples (<= 0 means too short)."""
  if isinstance(cfg, LogMelConfig):
    if cfg.center:
      return 1 + num_samples // cfg.hop_length
    return 1 + (num_samples - cfg.n_fft) // cfg.hop_length if num_samples >= cfg.n_fft else 0
  if isinstance(cfg, FbankConfig):
    if cfg.snip_edges:
      n = cfg.frame_length
      return 1 + (num_samples - n) // cfg.frame_shift if num_samples >= n else 0
    return (num_samples + cfg.frame_shift // 2) // cfg.frame_shift
  if isinstance(cfg, EfficientAtMelConfig):
    return _efficientat_frames(num_samples, cfg)
  raise TypeError(f"unknown front-end config {type(cfg).__name__}")


def audible_frames(features: jax.Array, cfg: FrontendConfig) -> jax.Array:
  """(batch, frames, bins) log-mel -> (batch, frames) bool: the frames that are not digital silence, i.e. with
  some bin above the log-mel floor `10 log10(amin)` that an all-zero frame sits at exactly (the zeros
  `audio.windows.fit_short(..., "mask")` pads a short clip with). The first frame always counts, so an all-zero
  row keeps one frame and no pooling over it is empty. Taken from the features, so a pipeline split after the
  front end (the TFLite int8 one) masks as the whole model does.
  """
  if not isinstance(cfg, LogMelConfig):
    raise ValueError(f"audible frames need a log-mel front end, got {type(cfg).__name__}")
  floor = 10.0 * math.log10(cfg.amin) + 1e-3  # dB; an all-zero frame is exactly at 10 log10(amin)
  audible = jnp.max(features, axis=-1) > floor
  return audible | (jnp.arange(features.shape[1]) == 0)[None, :]


def to_float(wave: jax.Array) -> jax.Array:
  """(batch, time) int16 | float -> float32 in the waveform's natural range (int16 scaled by 1/32768)."""
  wave = jnp.asarray(wave)
  if jnp.issubdtype(wave.dtype, jnp.integer):
    return wave.astype(jnp.float32) * _INT16_SCALE
  return wave.astype(jnp.float32)


def _check_wave(wave: jax.Array) -> None:
  if wave.ndim != 2:
    raise ValueError(f"front end expects wave of shape (batch, time), got {wave.shape}")


def _frame(x: jax.Array, frame_length: int, hop: int, n_frames: int) -> jax.Array:
  """(batch, time) -> (batch, n_frames, frame_length), frame i starting at sample i * hop.

  Without a gather: cut the signal into hop-sized chunks and concatenate k = ceil(frame_length / hop)
  consecutive chunks (slices of one reshape), then trim to frame_length.
  """
  k = -(-frame_length // hop)
  need = (n_frames + k - 1) * hop
  if x.shape[1] < need:  # only samples past the last frame's end are padded; they are trimmed below
    x = jnp.pad(x, ((0, 0), (0, need - x.shape[1])))
  chunks = x[:, :need].reshape(x.shape[0], n_frames + k - 1, hop)
  frames = jnp.concatenate([chunks[:, i : i + n_frames] for i in range(k)], axis=-1)
  return frames[..., :frame_length]


@functools.lru_cache(maxsize=32)
def _dft_matrices(window: tuple[float, ...], n_fft: int) -> tuple[np.ndarray, np.ndarray]:
  """Windowed real-DFT matrices (len(window), n_fft // 2 + 1): frames @ cos, frames @ sin = re, -im.

  A window shorter than n_fft is the zero-padded transform (only its non-zero rows are kept).
  """
  n = np.arange(len(window), dtype=np.float64)[:, None]
  k = np.arange(n_fft // 2 + 1, dtype=np.float64)[None, :]
  ang = 2.0 * np.pi * ((n * k) % n_fft) / n_fft  # the modulo keeps the angle small and exact
  w = np.asarray(window, dtype=np.float64)[:, None]
  return (w * np.cos(ang)).astype(np.float32), (w * np.sin(ang)).astype(np.float32)


def _power_spectrum(frames: jax.Array, window: np.ndarray, n_fft: int, impl: StftImpl) -> jax.Array:
  """(batch, frames, win) -> |DFT_n_fft(frames * window)|^2 (batch, frames, n_fft // 2 + 1), fp32."""
  if impl == "fft":
    spec = jnp.fft.rfft(frames * jnp.asarray(window, jnp.float32), n=n_fft, axis=-1)
    return jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
  if impl == "matmul":
    cos, sin = _dft_matrices(tuple(float(v) for v in window), n_fft)
    # HIGHEST: the default fp32 matmul on GPUs/TPUs may run in TF32/bf16 passes, far off librosa in dB.
    hi = jax.lax.Precision.HIGHEST
    re = jnp.matmul(frames, jnp.asarray(cos), precision=hi)
    im = jnp.matmul(frames, jnp.asarray(sin), precision=hi)
    return re * re + im * im
  raise ValueError(f"stft_impl must be 'fft' or 'matmul', got {impl!r}")


# ----------------------------------------------------------------------------------------------------------------
# Log-mel (PANNs)
# ----------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _slaney_mel(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
  """librosa's Slaney mel filterbank transposed: (n_fft // 2 + 1, n_mels) float32."""
  import librosa  # lazy: only needed when a graph is built, and its import is slow

  mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=False)
  return np.ascontiguousarray(mel.T, dtype=np.float32)


@functools.lru_cache(maxsize=16)
def _hann_periodic(win_length: int, n_fft: int) -> np.ndarray:
  """Periodic Hann window (scipy `get_window('hann', fftbins=True)`), centred in n_fft as librosa pads it."""
  n = np.arange(win_length)
  win = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
  left = (n_fft - win_length) // 2
  return np.pad(win, (left, n_fft - win_length - left)).astype(np.float32)


def log_mel(wave: jax.Array, cfg: LogMelConfig = LogMelConfig()) -> jax.Array:
  """(batch, time) int16|float -> (batch, frames, n_mels) float32 log-mel in dB (ref 1.0, no top_db).

  Matches `librosa.power_to_db(librosa.feature.melspectrogram(y, ..., window="hann", power=2.0), ref=1.0,
  amin=cfg.amin, top_db=None)` frame for frame.
  """
  wave = jnp.asarray(wave)
  _check_wave(wave)
  x = to_float(wave)
  win_length = cfg.win_length or cfg.n_fft
  if win_length > cfg.n_fft:
    raise ValueError(f"win_length {win_length} > n_fft {cfg.n_fft}")
  n_samples = x.shape[1]
  n_frames = num_frames(n_samples, cfg)
  if cfg.center:
    pad = cfg.n_fft // 2
    if cfg.pad_mode == "reflect" and n_samples <= pad:
      raise ValueError(f"clip of {n_samples} samples too short for reflect padding of {pad} (n_fft // 2)")
    x = jnp.pad(x, ((0, 0), (pad, pad)), mode=cfg.pad_mode)
  elif n_frames < 1:
    raise ValueError(f"clip of {n_samples} samples shorter than one window (n_fft {cfg.n_fft})")
  frames = _frame(x, cfg.n_fft, cfg.hop_length, n_frames)
  power = _power_spectrum(frames, _hann_periodic(win_length, cfg.n_fft), cfg.n_fft, cfg.stft_impl)
  mel_fb = _slaney_mel(cfg.sample_rate, cfg.n_fft, cfg.n_mels, float(cfg.fmin), float(cfg.fmax))
  mel = jnp.matmul(power, jnp.asarray(mel_fb), precision=jax.lax.Precision.HIGHEST)
  return 10.0 * jnp.log10(jnp.maximum(mel, cfg.amin))


# ----------------------------------------------------------------------------------------------------------------
# Kaldi fbank (AST)
# ----------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _kaldi_window(kind: str, n: int) -> np.ndarray:
  """Kaldi's symmetric windows (feature-window.cc), float32 (n,)."""
  a = 2.0 * np.pi / (n - 1)
  i = np.arange(n, dtype=np.float64)
  if kind == "hanning":
    w = 0.5 - 0.5 * np.cos(a * i)
  elif kind == "povey":  # "like hamming but goes to zero at the edges"
    w = (0.5 - 0.5 * np.cos(a * i)) ** 0.85
  elif kind == "hamming":
    w = 0.54 - 0.46 * np.cos(a * i)
  elif kind == "rectangular":
    w = np.ones(n)
  else:
    raise ValueError(f"unknown Kaldi window {kind!r}; use povey, hanning, hamming or rectangular")
  return w.astype(np.float32)


def _kaldi_mel(x: np.ndarray | float) -> np.ndarray:
  return 1127.0 * np.log(1.0 + np.asarray(x, np.float64) / 700.0)


@functools.lru_cache(maxsize=16)
def _kaldi_mel_banks(
  num_bins: int, padded_length: int, sample_rate: int, low_freq: float, high_freq: float
) -> np.ndarray:
  """Kaldi MelBanks (mel-computations.cc): triangles in the HTK mel domain, (padded // 2 + 1, num_bins).

  Kaldi only uses the first padded // 2 FFT bins; the Nyquist row stays zero so the full power spectrum fits.
  """
  nyquist = 0.5 * sample_rate
  high = high_freq if high_freq > 0.0 else nyquist + high_freq
  if not 0.0 <= low_freq < high <= nyquist:
    raise ValueError(f"bad mel range low_freq={low_freq}, high_freq={high_freq} for rate {sample_rate}")
  mel_low, mel_high = _kaldi_mel(low_freq), _kaldi_mel(high)
  delta = (mel_high - mel_low) / (num_bins + 1)
  left = mel_low + delta * np.arange(num_bins)
  center, right = left + delta, left + 2.0 * delta
  n_fft_bins = padded_length // 2
  mel = _kaldi_mel(np.arange(n_fft_bins) * (sample_rate / padded_length))[:, None]
  up = (mel - left) / (center - left)
  down = (right - mel) / (right - center)
  w = np.where((mel > left) & (mel < right), np.where(mel <= center, up, down), 0.0)
  return np.concatenate([w, np.zeros((1, num_bins))], axis=0).astype(np.float32)


def kaldi_fbank(
  wave: jax.Array, cfg: FbankConfig = FbankConfig(), *, key: jax.Array | None = None
) -> jax.Array:
  """(batch, time) int16|float in [-1, 1] -> (batch, frames, num_mel_bins [+1 energy]) float32 log fbank.

  Kaldi's per-frame pipeline: dither, remove DC, raw log energy, pre-emphasis, window, zero-pad to the FFT
  size, power spectrum, mel triangles, `log(max(x, eps))`. Then AST's normalisation when `cfg.normalize`.
  `key` is needed only for `dither > 0` (Gaussian dither, as Kaldi's).
  """
  wave = jnp.asarray(wave)
  _check_wave(wave)
  x = to_float(wave)
  if cfg.subtract_clip_mean:
    x = x - jnp.mean(x, axis=1, keepdims=True)
  x = x * cfg.scale
  n_samples = x.shape[1]
  n_frames = num_frames(n_samples, cfg)
  length, shift = cfg.frame_length, cfg.frame_shift
  if n_frames < 1:
    raise ValueError(f"clip of {n_samples} samples gives no Kaldi frame (frame length {length})")
  if cfg.snip_edges:
    frames = _frame(x, length, shift, n_frames)
  else:
    # Kaldi centres frame i at i * shift + shift // 2 and reflects out-of-range samples (s < 0 -> -s - 1),
    # i.e. numpy's "symmetric" padding.
    first = shift // 2 - length // 2
    left = max(0, -first)
    right = max(0, (n_frames - 1) * shift + first + length - n_samples)
    xp = jnp.pad(x, ((0, 0), (left, right)), mode="symmetric")
    frames = _frame(xp[:, first + left :], length, shift, n_frames)

  if cfg.dither > 0.0:
    if key is None:
      raise ValueError("FbankConfig.dither > 0 needs a PRNG key")
    frames = frames + cfg.dither * jax.random.normal(key, frames.shape, jnp.float32)
  if cfg.remove_dc_offset:
    frames = frames - jnp.mean(frames, axis=-1, keepdims=True)
  if cfg.use_energy:
    log_energy = jnp.log(jnp.maximum(jnp.sum(frames * frames, axis=-1), _KALDI_EPS))
    if cfg.energy_floor > 0.0:
      log_energy = jnp.maximum(log_energy, np.log(cfg.energy_floor))
  if cfg.preemphasis != 0.0:
    # x[i] -= c * x[i - 1] for i > 0 and x[0] -= c * x[0], all from the original samples.
    prev = jnp.concatenate([frames[..., :1], frames[..., :-1]], axis=-1)
    frames = frames - cfg.preemphasis * prev

  power = _power_spectrum(frames, _kaldi_window(cfg.window, length), cfg.padded_length, cfg.stft_impl)
  banks = _kaldi_mel_banks(
    cfg.num_mel_bins, cfg.padded_length, cfg.sample_rate, float(cfg.low_freq), float(cfg.high_freq)
  )
  feats = jnp.matmul(power, jnp.asarray(banks), precision=jax.lax.Precision.HIGHEST)
  if cfg.use_log_fbank:
    feats = jnp.log(jnp.maximum(feats, _KALDI_EPS))
  if cfg.use_energy:
    e = log_energy[..., None]
    feats = jnp.concatenate([feats, e] if cfg.htk_compat else [e, feats], axis=-1)
  if cfg.normalize:
    feats = (feats - cfg.mean) / (2.0 * cfg.std)
  return feats


def features(wave: jax.Array, cfg: FrontendConfig, *, key: jax.Array | None = None) -> jax.Array:
  """Dispatch on the config type: (batch, time) -> (batch, frames, bins) float32."""
  if isinstance(cfg, LogMelConfig):
    return log_mel(wave, cfg)
  if isinstance(cfg, FbankConfig):
    return kaldi_fbank(wave, cfg, key=key)
  if isinstance(cfg, EfficientAtMelConfig):
    return efficientat_mel(wave, cfg)
  raise TypeError(f"unknown front-end config {type(cfg).__name__}; expected LogMelConfig or FbankConfig")


def num_bins(cfg: FrontendConfig) -> int:
  """Feature width: n_mels, or num_mel_bins (+1 with use_energy)."""
  if isinstance(cfg, LogMelConfig):
    return cfg.n_mels
  if isinstance(cfg, FbankConfig):
    return cfg.num_mel_bins + int(cfg.use_energy)
  if isinstance(cfg, EfficientAtMelConfig):
    return cfg.n_mels
  raise TypeError(f"unknown front-end config {type(cfg).__name__}")
