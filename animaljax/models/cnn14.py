"""PANNs CNN6 / CNN10 / CNN14 encoders (Kong et al. 2020, qiuqiangkong/audioset_tagging_cnn `pytorch/models.py`).

The encoder takes log-mel features `(batch, frames, mels)` from the front end and returns a dict with the
`"embedding"` (the ReLU output of `fc1`, before PANNs' last dropout, which the classifier applies before its
head). PANNs' `bn0` (BatchNorm over mel bins as channels) lives here, so the front end stays parameter-free.

Parameter tree (the converter maps PANNs keys onto exactly these names):
  `bn0/{scale,bias}` (+ batch_stats `bn0/{mean,var}`),
  `conv_block{i}/{conv1/kernel, bn1, conv2/kernel, bn2}` (CNN6: `conv1` (5x5) + `bn1` only), `fc1/{kernel,bias}`.
Conv kernels are HWIO with H = time and W = mel: the input is laid out `(batch, time, mel, channels)`, the
channels-last twin of PANNs' `(batch, channels, time, mel)`; a torch weight `(O, I, kh, kw)` maps by
`transpose(2, 3, 1, 0)`.

Known difference from PyTorch: in training, flax updates the running variance with the biased batch variance,
torch with the unbiased one (factor n/(n-1), negligible for batch x frames in the thousands). Eval is exact.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

import flax.linen as nn
import jax.numpy as jnp

from animaljax.models import sed
from animaljax.models.conv import conv_general_dilated

# (kernel size, convs per block, channels per block, pool after each block) as in PANNs.
_VARIANTS: dict[str, tuple[int, int, tuple[int, ...], tuple[int, ...]]] = {
  "cnn6": (5, 1, (64, 128, 256, 512), (2, 2, 2, 2)),
  "cnn10": (3, 2, (64, 128, 256, 512), (2, 2, 2, 2)),
  "cnn14": (3, 2, (64, 128, 256, 512, 1024, 2048), (2, 2, 2, 2, 2, 1)),
}

# PANNs initialises convs and linears with Xavier-uniform, biases at zero (`init_layer`), BN at (1, 0).
_KERNEL_INIT = nn.initializers.xavier_uniform()


@dataclasses.dataclass(frozen=True)
class CnnConfig:
  """A PANNs CNN encoder.

  Attributes:
    variant: "cnn6" (4 blocks of one 5x5 conv), "cnn10" (4 blocks of two 3x3) or "cnn14" (6 blocks of two 3x3).
    width: multiplier on every channel count, including the embedding (2048 * width for CNN14, 512 * width
      for CNN6/CNN10); 1.0 is the published model, tests use 1/16 or 1/8.
    dropout: PANNs' dropouts (0.2 after each block, 0.5 before fc1 and before the head); False removes them.
    clip_norm: standardise each input's features by their own mean and standard deviation (over frames and
      mel bins) before `bn0`: a gain or level change of the recording, a constant shift of the log-mel, then
      does not reach the network. Not in PANNs (False for its weights).
    head: "clip" (PANNs' Cnn14: pooled over time before fc1) or a decision-level head, "decision_max" /
      "decision_att" (Cnn14_DecisionLevelMax / Att: framewise outputs; `models.sed`).
    pool_mask: pool over time only the steps that hold sound, leaving out digital silence such as the zeros a
      short clip is padded with (`data.short_clips=mask`): a step counts when any front-end frame it pools is
      audible (`audio.frontend.audible_frames`, passed in by the classifier as `frame_mask`). Clip head only.
      Not in PANNs (False for its weights).
  """

  variant: Literal["cnn6", "cnn10", "cnn14"] = "cnn14"
  width: float = 1.0
  dropout: bool = True
  clip_norm: bool = False
  head: str = "clip"
  pool_mask: bool = False

  def __post_init__(self):
    if self.pool_mask and self.head != "clip":
      raise ValueError(f"pool_mask applies to the clip head, not {self.head!r}")
    if self.variant not in _VARIANTS:
      raise ValueError(f"unknown CNN variant {self.variant!r}; valid: {sorted(_VARIANTS)}")
    if self.head not in sed.HEADS:
      raise ValueError(f"unknown head {self.head!r}; valid: {sed.HEADS}")
    if self.width <= 0:
      raise ValueError(f"width must be positive, got {self.width}")

  @property
  def min_frames(self) -> int:
    """The fewest input frames whose time axis survives every pooling step (one frame at the end)."""
    return math.prod(_VARIANTS[self.variant][3])

  @property
  def frame_ratio(self) -> int:
    """Front-end frames per step of the last block (32 for CNN14, 16 for CNN6/CNN10)."""
    return self.min_frames

  @property
  def channels(self) -> tuple[int, ...]:
    """Output channels of each conv block after the width multiplier."""
    return tuple(max(1, round(c * self.width)) for c in _VARIANTS[self.variant][2])

  @property
  def embed_dim(self) -> int:
    """Width of `fc1`, i.e. of `out["embedding"]` (PANNs ties it to the last block's channels)."""
    return self.channels[-1]


class ConvBlock(nn.Module):
  """`convs` x (conv without bias -> BatchNorm -> ReLU), then average pooling (PANNs ConvBlock/ConvBlock5x5).

  `(batch, time, mel, in) -> (batch, time // pool, mel // pool, features)`; pooling floors odd sizes like
  torch's `F.avg_pool2d(x, kernel_size=pool)`.
  """

  features: int
  kernel: int = 3
  convs: int = 2
  pool: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    pad = self.kernel // 2
    for i in range(1, self.convs + 1):
      x = nn.Conv(
        self.features,
        (self.kernel, self.kernel),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=_KERNEL_INIT,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        # XLA's CPU kernel gradient is slow on large maps; this one is matmuls there (see models/conv.py).
        conv_general_dilated=conv_general_dilated,
        name=f"conv{i}",
      )(x)
      x = _batch_norm(f"bn{i}", train)(x)
      x = nn.relu(x).astype(self.dtype)
    if self.pool > 1:
      x = nn.avg_pool(x, (self.pool, self.pool), strides=(self.pool, self.pool), padding="VALID")
    return x


def standardize_per_clip(x: jnp.ndarray, eps: float = 1e-5) -> jnp.ndarray:
  """`(batch, frames, bins)` -> each row minus its mean, over its standard deviation (both over frames and bins);
  a silent row (std 0) becomes zeros."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  std = jnp.std(x, axis=(1, 2), keepdims=True)
  return (x - mean) / (std + eps)


def _batch_norm(name: str, train: bool) -> nn.BatchNorm:
  # torch momentum 0.01 (weight of the new batch) is flax momentum 0.99 (weight of the running value).
  # Statistics and normalisation always in fp32, whatever the compute dtype.
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.99,
    epsilon=1e-5,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    name=name,
  )


class Cnn(nn.Module):
  """PANNs CNN6/CNN10/CNN14 encoder.

  Call: `features (batch, frames, mels) float -> {"embedding": (batch, embed_dim), "frame_embeddings":
  (batch, frames', channels)}` where `frame_embeddings` is the last block's output averaged over mel (before
  PANNs' max+mean pooling over time). Needs the "dropout" rng in train mode when `config.dropout`; in train
  mode BatchNorm uses batch statistics and updates the "batch_stats" collection (apply with
  `mutable=["batch_stats"]`).
  """

  config: CnnConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(
    self, features: jnp.ndarray, *, train: bool = False, frame_mask: jnp.ndarray | None = None
  ) -> dict[str, jnp.ndarray]:
    cfg = self.config
    kernel, convs, _, pools = _VARIANTS[cfg.variant]
    drop = cfg.dropout and train
    # PANNs floors each 2x2 pooling; a map pooled to zero length would make the max over time undefined.
    need = math.prod(pools)
    if features.ndim != 3 or min(features.shape[1:]) < need:
      raise ValueError(
        f"{cfg.variant} needs features (batch, frames, mels) with at least {need} frames and mels, got {features.shape}"
      )
    x = features.astype(jnp.float32)
    if cfg.clip_norm:
      x = standardize_per_clip(x)
    # bn0 normalises each mel bin over (batch, time): PANNs transposes mels into the channel axis for it.
    x = _batch_norm("bn0", train)(x)
    x = x[..., None].astype(self.dtype)  # (batch, time, mel, 1)
    for i, (ch, pool) in enumerate(zip(cfg.channels, pools, strict=True), start=1):
      x = ConvBlock(ch, kernel=kernel, convs=convs, pool=pool, dtype=self.dtype, name=f"conv_block{i}")(
        x, train=train
      )
      x = nn.Dropout(0.2, deterministic=not drop)(x)
    frames = jnp.mean(x, axis=2)  # mean over mel -> (batch, time', channels)
    mask = None
    if cfg.pool_mask:  # a step counts when any front-end frame it pools is the clip's own (pools floor)
      if frame_mask is None:
        raise ValueError("pool_mask needs the frame_mask of the input (audio.frontend.audible_frames)")
      steps, ratio = frames.shape[1], cfg.frame_ratio
      mask = frame_mask[:, : steps * ratio].reshape(-1, steps, ratio).any(axis=2)
    # Clip: max + mean over time -> fc1; decision-level heads: fc1 on every step (models/sed.py).
    return sed.tail(frames, embed_dim=cfg.embed_dim, head=cfg.head, drop=drop, dtype=self.dtype, mask=mask)
