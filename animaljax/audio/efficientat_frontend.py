"""EfficientAT's log-mel front end (`AugmentMelSTFT` in evaluation mode), in `jnp`.

Schmid et al., "Efficient Large-Scale Audio Tagging via Transformer-to-CNN Knowledge Distillation" (ICASSP 2023;
fschmid56/EfficientAT `models/preprocess.py`). Every published `mn*` / `dymn*` model was trained on exactly this
input, so the converted models take raw waveforms and give EfficientAT's outputs. Per clip:

  1. pre-emphasis as a valid 2-tap convolution: `y[n] = x[n + 1] - 0.97 x[n]` (one sample shorter);
  2. `torch.stft(center=True)`: reflect padding of n_fft // 2 on both sides, frames every `hop_length` samples,
     a *symmetric* Hann window of `win_length` samples centred in the `n_fft`-point frame;
  3. power spectrum `re^2 + im^2`;
  4. Kaldi mel triangles (`torchaudio.compliance.kaldi.get_mel_banks`, no VTLN warping) over the first n_fft // 2
     FFT bins, a zero row for the Nyquist bin; `fmin`..`fmax` (EfficientAT: 0 Hz and sr / 2 - 1000 Hz, the centre
     of its training-time fmax jitter, which evaluation mode switches off);
  5. `log(mel + 1e-5)`, then EfficientAT's "fast normalisation" `(x + 4.5) / 5`.

Shape contract as `audio.frontend`: `wave (batch, time) int16 | float -> (batch, frames, n_mels) float32` with
`frames = 1 + (time - 1) // hop_length` (the pre-emphasis costs one sample). The training-time parts of
`AugmentMelSTFT` (random fmin/fmax shifts, frequency/time masking) are not here: SpecAugment runs in the
trainer's `feature_fn`, as for every other front end.

This module imports nothing from the package (`audio.frontend` dispatches to it).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class EfficientAtMelConfig:
  """EfficientAT's `AugmentMelSTFT` settings (defaults: the published AudioSet models, 32 kHz, 128 bins)."""

  sample_rate: int = 32000
  n_fft: int = 1024
  win_length: int = 800
  hop_length: int = 320
  n_mels: int = 128
  fmin: float = 0.0
  fmax: float = 15000.0  # EfficientAT's None -> sr // 2 - fmax_aug_range // 2 = 16000 - 1000
  preemphasis: float = 0.97
  log_offset: float = 1e-5
  norm_shift: float = 4.5
  norm_scale: float = 5.0

  def __post_init__(self):
    if self.win_length > self.n_fft:
      raise ValueError(f"win_length {self.win_length} > n_fft {self.n_fft}")
    if not 0.0 <= self.fmin < self.fmax <= self.sample_rate / 2:
      raise ValueError(f"need 0 <= fmin < fmax <= {self.sample_rate / 2}, got {self.fmin}, {self.fmax}")

  @property
  def center(self) -> bool:
    """Frames are centred (`torch.stft(center=True)`): what `bundle.exported` asks before giving the exported
    forward a symbolic time axis. Not a setting: EfficientAT always centres."""
    return True

  @property
  def min_samples(self) -> int:
    """The shortest clip: after pre-emphasis it must exceed the reflect padding (torch's rule)."""
    return self.n_fft // 2 + 2


def num_frames(num_samples: int, cfg: EfficientAtMelConfig) -> int:
  """Frames for `num_samples` samples; 0 when the clip is too short for the reflect padding."""
  if num_samples < cfg.min_samples:
    return 0
  return 1 + (num_samples - 1) // cfg.hop_length


@functools.lru_cache(maxsize=16)
def mel_banks(n_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float) -> np.ndarray:
  """Kaldi's mel triangles (HTK mel `1127 ln(1 + f / 700)`, equally spaced centres between fmin and fmax):
  `(n_fft // 2 + 1, n_mels)` float32, the last (Nyquist) row zero as EfficientAT pads it.

  Built in float64. torchaudio's float32 build (`torchaudio.compliance.kaldi.get_mel_banks`, which EfficientAT
  calls) is not reproducible bit for bit (its float32 log differs from a correctly rounded one by an ulp); the
  two differ by up to 2e-5 at the triangles' edges, 2e-5 in the normalised log-mel.
  """
  lo, hi = 1127.0 * math.log(1.0 + fmin / 700.0), 1127.0 * math.log(1.0 + fmax / 700.0)
  delta = (hi - lo) / (n_mels + 1)
  left = lo + delta * np.arange(n_mels)[None, :]
  centre, right = left + delta, left + 2.0 * delta
  m = 1127.0 * np.log(1.0 + np.arange(n_fft // 2)[:, None] * (sample_rate / n_fft) / 700.0)
  banks = np.maximum(0.0, np.minimum((m - left) / (centre - left), (right - m) / (right - centre)))
  return np.concatenate([banks, np.zeros((1, n_mels))], axis=0).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _symmetric_hann(n: int) -> np.ndarray:
  """`torch.hann_window(n, periodic=False)`."""
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / (n - 1))).astype(np.float32)


def _frames(x: jax.Array, length: int, hop: int, count: int) -> jax.Array:
  """(batch, time) -> (batch, count, length), frame i = x[:, i * hop : i * hop + length], by slicing
  hop-sized rows of one reshape (no gather)."""
  rows = -(-length // hop)
  need = (count + rows - 1) * hop
  x = jnp.pad(x, ((0, 0), (0, max(0, need - x.shape[1]))))[:, :need]
  chunks = x.reshape(x.shape[0], count + rows - 1, hop)
  return jnp.concatenate([chunks[:, i : i + count] for i in range(rows)], axis=-1)[..., :length]


def efficientat_mel(wave: jax.Array, cfg: EfficientAtMelConfig = EfficientAtMelConfig()) -> jax.Array:
  """(batch, time) int16 | float -> (batch, frames, n_mels) float32, as `AugmentMelSTFT.eval()`."""
  wave = jnp.asarray(wave)
  if wave.ndim != 2:
    raise ValueError(f"front end expects wave of shape (batch, time), got {wave.shape}")
  if wave.shape[1] < cfg.min_samples:
    raise ValueError(
      f"clip of {wave.shape[1]} samples too short for EfficientAT's front end ({cfg.min_samples})"
    )
  if jnp.issubdtype(wave.dtype, jnp.integer):
    x = wave.astype(jnp.float32) / 32768.0
  else:
    x = wave.astype(jnp.float32)
  x = x[:, 1:] - cfg.preemphasis * x[:, :-1]
  pad = cfg.n_fft // 2
  count = 1 + x.shape[1] // cfg.hop_length
  x = jnp.pad(x, ((0, 0), (pad, pad)), mode="reflect")
  # The window sits centred in the n_fft frame; its zero margins change the DFT's phase only, so the
  # `win_length` samples under it are transformed (zero-padded to n_fft) and the power is the same.
  offset = (cfg.n_fft - cfg.win_length) // 2
  frames = _frames(x[:, offset:], cfg.win_length, cfg.hop_length, count)
  spec = jnp.fft.rfft(frames * jnp.asarray(_symmetric_hann(cfg.win_length)), n=cfg.n_fft, axis=-1)
  power = jnp.real(spec) ** 2 + jnp.imag(spec) ** 2
  banks = mel_banks(cfg.n_mels, cfg.n_fft, cfg.sample_rate, float(cfg.fmin), float(cfg.fmax))
  mel = jnp.matmul(power, jnp.asarray(banks), precision=jax.lax.Precision.HIGHEST)
  return (jnp.log(mel + cfg.log_offset) + cfg.norm_shift) / cfg.norm_scale
