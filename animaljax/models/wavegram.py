"""PANNs Wavegram-CNN14 and Wavegram-Logmel-CNN14 encoders (Kong et al. 2020, `pytorch/models.py`).

The wavegram is a 2-D "spectrogram" learnt from the waveform by 1-D convolutions:

  wave (batch, time) -> pre_conv0 (Conv1d 1->64, kernel 11, stride 5, padding 5, no bias) -> pre_bn0 -> ReLU
  -> pre_block1 (64), pre_block2 (128), pre_block3 (128): each ConvPreWavBlock = conv1 (kernel 3, padding 1)
     -> bn1 -> ReLU -> conv2 (kernel 3, dilation 2, padding 2) -> bn2 -> ReLU -> max pool 4
  -> (batch, L, 128) channels split into 4 groups of 32 "frequency" rows: (batch, L, 32, 4), i.e. PANNs'
     `reshape(batch, -1, 32, L).transpose(2, 3)` (channel c = 32 * group + row)
  -> pre_block4 (a CNN14 ConvBlock 4 -> 64) with (2, 1) average pooling: (batch, L / 2, 32, 64).

At 32 kHz, L / 2 = time / 640 steps of 20 ms, the same grid as the log-mel after `conv_block1` (64 mels ->
32, 10 ms frames -> 20 ms). Wavegram-CNN14 feeds the wavegram to `conv_block2` (64 -> 128); Wavegram-Logmel-CNN14
runs the log-mel through `bn0` and `conv_block1` and concatenates it with the wavegram along channels
(log-mel first), so its `conv_block2` takes 128 channels. Then both are CNN14: conv_block2..6 (pools 2, 2, 2, 2,
1), dropout 0.2 after each, and `sed.tail` (clip or decision-level).

PANNs' Wavegram-CNN14 also declares `bn0` and `conv_block1` without using them; they are not built here (the
converter skips those keys). Where the two paths differ by a step in length (clips that are not a multiple of
the hop), both are cut to the shorter (PANNs would fail).

Parameter tree: `pre_conv0/kernel`, `pre_bn0`, `pre_block{1,2,3}/{conv1,bn1,conv2,bn2}`,
`pre_block4/{conv1,bn1,conv2,bn2}`, (Logmel) `bn0`, `conv_block1`; `conv_block2..6`, `fc1`. 1-D conv kernels
are (kernel, in, out): a torch Conv1d weight (out, in, kernel) maps by `transpose(2, 1, 0)`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from animaljax.models import sed
from animaljax.models.cnn14 import ConvBlock

_KERNEL_INIT = nn.initializers.xavier_uniform()
_CHANNELS = (64, 128, 256, 512, 1024, 2048)  # conv_block1..6 as CNN14
_ROWS = 32  # the wavegram's "frequency" rows


@dataclasses.dataclass(frozen=True)
class WavegramConfig:
  """A PANNs wavegram encoder.

  Attributes:
    logmel: Wavegram-Logmel-CNN14 (True: the front end must give 64 mel bins) or Wavegram-CNN14 (False).
    width: multiplier on every channel count (1.0 = published); the last pre-block keeps a multiple of 32
      channels (at least 32), since its channels are cut into 32-row groups.
    dropout: PANNs' dropouts; head: `sed.HEADS` (PANNs published only "clip" for these).
  """

  logmel: bool = False
  width: float = 1.0
  dropout: bool = True
  head: str = "clip"

  def __post_init__(self):
    if self.width <= 0:
      raise ValueError(f"width must be positive, got {self.width}")
    if self.head not in sed.HEADS:
      raise ValueError(f"unknown head {self.head!r}; valid: {sed.HEADS}")

  @property
  def channels(self) -> tuple[int, ...]:
    """conv_block1..6 output channels after the width multiplier."""
    return tuple(max(1, round(c * self.width)) for c in _CHANNELS)

  @property
  def pre_channels(self) -> tuple[int, int, int, int]:
    """pre_conv0, pre_block1, pre_block2, pre_block3 output channels (64, 64, 128, 128 at width 1)."""
    small = max(1, round(64 * self.width))
    rows = _ROWS * max(1, round(4 * self.width))
    return small, small, rows, rows

  @property
  def embed_dim(self) -> int:
    return self.channels[-1]

  @property
  def frame_ratio(self) -> int:
    """Front-end frames (10 ms hop) per step of the last block: 32, as CNN14."""
    return 32

  @property
  def min_frames(self) -> int:
    """Front-end frames of the shortest input (33 frames = 32 hops = 640 * 16 samples at 32 kHz): the
    wavegram needs time / 640 >= 16 for the four 2x pools after it."""
    return 33


def _bn(name: str, train: bool) -> nn.BatchNorm:
  # As cnn14: torch momentum 0.01 = flax 0.99; statistics and normalisation in fp32.
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.99, epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.float32,
    name=name,
  )  # fmt: skip


def _conv1d(features: int, kernel: int, *, stride: int = 1, dilation: int = 1, name: str, dtype: Any):
  pad = dilation * (kernel // 2)
  return nn.Conv(
    features, (kernel,), strides=(stride,), padding=((pad, pad),), kernel_dilation=(dilation,), use_bias=False,
    kernel_init=_KERNEL_INIT, dtype=dtype, param_dtype=jnp.float32, name=name,
  )  # fmt: skip


class ConvPreWavBlock(nn.Module):
  """`(batch, L, in) -> (batch, L // pool, features)`: conv(3) -> BN -> ReLU -> conv(3, dilation 2) -> BN -> ReLU
  -> max pool (floors odd lengths like torch's `max_pool1d`)."""

  features: int
  pool: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    x = _conv1d(self.features, 3, name="conv1", dtype=self.dtype)(x)
    x = nn.relu(_bn("bn1", train)(x)).astype(self.dtype)
    x = _conv1d(self.features, 3, dilation=2, name="conv2", dtype=self.dtype)(x)
    x = nn.relu(_bn("bn2", train)(x)).astype(self.dtype)
    return nn.max_pool(x, (self.pool,), strides=(self.pool,), padding="VALID")


class Wavegram(nn.Module):
  """Wavegram-(Logmel-)CNN14 encoder.

  Call: `(features (batch, frames, mels), wave (batch, time) float) -> {"embedding": (batch, D),
  "frame_embeddings": (batch, T', C), ...}` (`sed.tail`). Train mode as `cnn14.Cnn`. `mix_fn` (train mode
  only): mixup's batch mixing, applied to the wavegram after `pre_block4` as PANNs does (`do_mixup(a1)`); the
  log-mel branch arrives already augmented and mixed (`Classifier`'s `feature_fn`).
  """

  config: WavegramConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, features: jnp.ndarray, wave: jnp.ndarray, *, train: bool = False, mix_fn=None
  ) -> dict[str, jnp.ndarray]:
    cfg = self.config
    drop = cfg.dropout and train
    c0, c1, c2, c3 = cfg.pre_channels
    x = wave.astype(jnp.float32)[..., None].astype(self.dtype)  # (batch, time, 1)
    x = _conv1d(c0, 11, stride=5, name="pre_conv0", dtype=self.dtype)(x)
    x = nn.relu(_bn("pre_bn0", train)(x)).astype(self.dtype)
    for i, ch in enumerate((c1, c2, c3), start=1):
      x = ConvPreWavBlock(ch, dtype=self.dtype, name=f"pre_block{i}")(x, train=train)
    b, steps, _ = x.shape
    x = x.reshape(b, steps, c3 // _ROWS, _ROWS).transpose(0, 1, 3, 2)  # (batch, L, 32, groups)
    x = ConvBlock(cfg.channels[0], pool=1, dtype=self.dtype, name="pre_block4")(x, train=train)
    wavegram = nn.avg_pool(x, (2, 1), strides=(2, 1), padding="VALID")
    if wavegram.shape[1] < 16:
      raise ValueError(
        f"a waveform of {wave.shape[-1]} samples is too short for the wavegram (>= 10240 needed)"
      )
    if train and mix_fn is not None:
      wavegram = mix_fn(wavegram)

    if cfg.logmel:
      if features.shape[-1] != 2 * _ROWS:
        raise ValueError(f"Wavegram-Logmel-CNN14 needs 64 mel bins, got {features.shape[-1]}")
      m = _bn("bn0", train)(features.astype(jnp.float32))[..., None].astype(self.dtype)
      m = ConvBlock(cfg.channels[0], pool=2, dtype=self.dtype, name="conv_block1")(m, train=train)
      steps = min(m.shape[1], wavegram.shape[1])
      x = jnp.concatenate([m[:, :steps], wavegram[:, :steps]], axis=-1)
    else:
      x = wavegram
    for i, (ch, pool) in enumerate(zip(cfg.channels[1:], (2, 2, 2, 2, 1), strict=True), start=2):
      x = nn.Dropout(0.2, deterministic=not drop)(x)
      x = ConvBlock(ch, pool=pool, dtype=self.dtype, name=f"conv_block{i}")(x, train=train)
    x = nn.Dropout(0.2, deterministic=not drop)(x)
    frames = jnp.mean(x, axis=2)  # over the 32 -> 2 rows
    return sed.tail(frames, embed_dim=cfg.embed_dim, head=cfg.head, drop=drop, dtype=self.dtype)
