"""PANNs MobileNetV1 / MobileNetV2 encoders (Kong et al. 2020, audioset_tagging_cnn `pytorch/models.py`).

PANNs' MobileNets differ from the ImageNet ones: every strided layer is a stride-1 convolution followed by
`nn.AvgPool2d(stride)` (before its BatchNorm), and the single input channel is the log-mel after `bn0`.

MobileNetV1 (`features` = 14 `nn.Sequential`s, ReLU):
  features.0  = conv_bn(1, 32, 2):  [0] conv 3x3, [1] AvgPool2d(2), [2] BN, [3] ReLU
  features.k  = conv_dw(in, out, s): [0] depthwise 3x3 (groups=in), [1] AvgPool2d(s), [2] BN, [3] ReLU,
                                     [4] conv 1x1, [5] BN, [6] ReLU
  with (in, out, s) = (32, 64, 1) (64, 128, 2) (128, 128, 1) (128, 256, 2) (256, 256, 1) (256, 512, 2)
  5 x (512, 512, 1) (512, 1024, 2) (1024, 1024, 1); then fc1 1024 -> 1024.
MobileNetV2 (ReLU6; `features` = 19 items):
  features.0  = conv_bn(1, 32, 2) as above (ReLU6)
  features.1-17 = InvertedResidual blocks with settings (t, c, n, s) = (1, 16, 1, 1) (6, 24, 2, 2) (6, 32, 3, 2)
    (6, 64, 4, 2) (6, 96, 3, 2) (6, 160, 3, 1) (6, 320, 1, 1); a block's `conv` Sequential is
    t == 1: [0] depthwise 3x3, [1] AvgPool2d(s), [2] BN, [3] ReLU6, [4] conv 1x1, [5] BN
    t > 1:  [0] conv 1x1 expand, [1] BN, [2] ReLU6, [3] depthwise 3x3, [4] AvgPool2d(s), [5] BN, [6] ReLU6,
            [7] conv 1x1 project, [8] BN
    plus the input where stride 1 and in == out channels;
  features.18 = conv_1x1_bn(320, 1280): [0] conv 1x1, [1] BN, [2] ReLU6; then fc1 1280 -> 1024.
Both: features -> mean over mel -> max + mean over time -> dropout 0.5 -> fc1 -> ReLU = embedding (1024).
Five stride-2 stages: 32x over time and mel.

Parameter tree = the torch state-dict names with "." -> "/" (`features/3/4/kernel`, `features/5/conv/7/kernel`),
so `torch_weights._panns_key` maps it unchanged. Depthwise kernels are HWIO `(3, 3, 1, channels)`.

Assumptions (not checkable from a checkpoint, which holds no strides): MobileNetV2's strides are PANNs' (the
96-channel stage strides 2 and the 160-channel stage 1, unlike torchvision); a dropout of 0.5 sits before fc1 as
in CNN14 (train mode only). `width` follows PANNs' MobileNetV2 `width_mult` rule (`int(c * width)`, the last
1280 channels only ever widened) for both; 1.0 is the published model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax.numpy as jnp

from animaljax.models.cnn14 import standardize_per_clip
from animaljax.models.conv import conv_general_dilated

# MobileNetV1: (out channels, stride) of conv_bn then of each conv_dw.
_V1 = (
  ((32, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
  + ((512, 1),) * 5
  + ((1024, 2), (1024, 1))
)
# MobileNetV2: (expand ratio t, channels c, repeats n, first stride s).
_V2 = (
  (1, 16, 1, 1),
  (6, 24, 2, 2),
  (6, 32, 3, 2),
  (6, 64, 4, 2),
  (6, 96, 3, 2),
  (6, 160, 3, 1),
  (6, 320, 1, 1),
)
_V2_LAST = 1280
_EMBED = 1024  # fc1's width in both
_KERNEL_INIT = nn.initializers.xavier_uniform()  # PANNs' init_layer


@dataclasses.dataclass(frozen=True)
class MobileNetConfig:
  """A PANNs MobileNet encoder.

  Attributes:
    variant: "mobilenetv1" or "mobilenetv2".
    width: PANNs' `width_mult` on the feature channels (1.0 = published); the embedding stays 1024.
    dropout: the 0.5 dropouts before fc1 and before the head.
    clip_norm: standardise each input's features per clip before `bn0` (`CnnConfig.clip_norm`; not PANNs).
  """

  variant: Literal["mobilenetv1", "mobilenetv2"] = "mobilenetv1"
  width: float = 1.0
  dropout: bool = True
  clip_norm: bool = False

  def __post_init__(self):
    if self.variant not in ("mobilenetv1", "mobilenetv2"):
      raise ValueError(f"unknown MobileNet variant {self.variant!r}; valid: ['mobilenetv1', 'mobilenetv2']")
    if self.width <= 0:
      raise ValueError(f"width must be positive, got {self.width}")

  def scale(self, c: int) -> int:
    """`c` channels after the width multiplier (PANNs: `int(c * width_mult)`)."""
    return max(1, int(c * self.width))

  @property
  def min_frames(self) -> int:
    """The fewest input frames (and mel bins) that survive the five 2x2 poolings."""
    return 32

  @property
  def embed_dim(self) -> int:
    """Width of `fc1` = of `out["embedding"]`."""
    return _EMBED


def _batch_norm(name: str, train: bool) -> nn.BatchNorm:
  # torch momentum 0.01 = flax momentum 0.99; statistics and normalisation in fp32 (as cnn14).
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.99, epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.float32,
    name=name,
  )  # fmt: skip


def _conv(features: int, kernel: int, name: str, dtype: Any, groups: int = 1) -> nn.Conv:
  pad = kernel // 2
  return nn.Conv(
    features, (kernel, kernel), padding=((pad, pad), (pad, pad)), use_bias=False, feature_group_count=groups,
    kernel_init=_KERNEL_INIT, dtype=dtype, param_dtype=jnp.float32, conv_general_dilated=conv_general_dilated,
    name=name,
  )  # fmt: skip


def _pool(x: jnp.ndarray, stride: int) -> jnp.ndarray:
  """torch `nn.AvgPool2d(stride)`: kernel = stride = `stride`, floor on odd sizes (identity for 1)."""
  if stride == 1:
    return x
  return nn.avg_pool(x, (stride, stride), strides=(stride, stride), padding="VALID")


class _Seq(nn.Module):
  """One of PANNs' `nn.Sequential`s of conv / AvgPool2d / BN / activation, children named by their index.

  `layers` lists `(kind, arg)` in torch order: ("conv", (features, kernel, groups)), ("pool", stride),
  ("bn", None), ("relu", None), ("relu6", None).
  """

  layers: tuple[tuple[str, Any], ...]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    for i, (kind, arg) in enumerate(self.layers):
      if kind == "conv":
        features, kernel, groups = arg
        x = _conv(features, kernel, str(i), self.dtype, groups)(x.astype(self.dtype))
      elif kind == "pool":
        x = _pool(x, arg)
      elif kind == "bn":
        x = _batch_norm(str(i), train)(x)
      elif kind == "relu":
        x = nn.relu(x)
      else:
        x = jnp.clip(x, 0.0, 6.0)  # ReLU6
    return x.astype(self.dtype)


class _InvertedResidual(nn.Module):
  """PANNs' `InvertedResidual` (its layers in `conv`), plus the input where stride 1 and channels match."""

  inp: int
  oup: int
  stride: int
  expand: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    hidden = round(self.inp * self.expand)
    dw = [("conv", (hidden, 3, hidden)), ("pool", self.stride), ("bn", None), ("relu6", None)]
    project = [("conv", (self.oup, 1, 1)), ("bn", None)]
    expand = [] if self.expand == 1 else [("conv", (hidden, 1, 1)), ("bn", None), ("relu6", None)]
    out = _Seq(tuple(expand + dw + project), self.dtype, name="conv")(x, train=train)
    if self.stride == 1 and self.inp == self.oup:
      out = (x + out).astype(self.dtype)
    return out


def _v1_layers(cfg: MobileNetConfig) -> list[tuple[tuple[str, Any], ...]]:
  layers, inp = [], 1
  for k, (c, s) in enumerate(_V1):
    out = cfg.scale(c)
    if k == 0:  # conv_bn
      layers.append((("conv", (out, 3, 1)), ("pool", s), ("bn", None), ("relu", None)))
    else:  # conv_dw
      dw = (("conv", (inp, 3, inp)), ("pool", s), ("bn", None), ("relu", None))
      layers.append(dw + (("conv", (out, 1, 1)), ("bn", None), ("relu", None)))
    inp = out
  return layers


class MobileNet(nn.Module):
  """PANNs MobileNetV1/V2 encoder.

  Call: `features (batch, frames, mels) -> {"embedding": (batch, 1024), "frame_embeddings": (batch,
  frames / 32, channels)}` (`frame_embeddings`: the last feature map averaged over mel; 1024 channels for V1,
  1280 for V2). Train mode needs the "dropout" rng when `config.dropout` and `mutable=["batch_stats"]`.
  """

  config: MobileNetConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    cfg = self.config
    if features.ndim != 3 or min(features.shape[1:]) < cfg.min_frames:
      raise ValueError(
        f"{cfg.variant} needs features (batch, frames, mels) with at least {cfg.min_frames} frames and mels, "
        f"got {features.shape}"
      )
    x = features.astype(jnp.float32)
    if cfg.clip_norm:
      x = standardize_per_clip(x)
    x = _batch_norm("bn0", train)(x)  # over mel bins, as PANNs' transposed bn0
    x = x[..., None].astype(self.dtype)  # (batch, time, mel, 1)
    x = _MobileNetFeatures(cfg, self.dtype, name="features")(x, train=train)
    frames = jnp.mean(x, axis=2)  # over mel -> (batch, time', channels)
    x = jnp.max(frames, axis=1) + jnp.mean(frames, axis=1)
    x = nn.Dropout(0.5, deterministic=not (cfg.dropout and train))(x)
    x = nn.Dense(
      cfg.embed_dim, kernel_init=_KERNEL_INIT, dtype=self.dtype, param_dtype=jnp.float32, name="fc1"
    )(x)
    return {"embedding": nn.relu(x), "frame_embeddings": frames}


class _MobileNetFeatures(nn.Module):
  """PANNs' `features` Sequential: items named "0", "1", ..."""

  config: MobileNetConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    cfg = self.config
    if cfg.variant == "mobilenetv1":
      for k, layers in enumerate(_v1_layers(cfg)):
        x = _Seq(layers, self.dtype, name=str(k))(x, train=train)
      return x
    inp = cfg.scale(32)
    x = _Seq((("conv", (inp, 3, 1)), ("pool", 2), ("bn", None), ("relu6", None)), self.dtype, name="0")(
      x, train=train
    )
    k = 1
    for t, c, n, s in _V2:
      out = cfg.scale(c)
      for i in range(n):
        x = _InvertedResidual(inp, out, s if i == 0 else 1, t, self.dtype, name=str(k))(x, train=train)
        inp, k = out, k + 1
    last = cfg.scale(_V2_LAST) if cfg.width > 1.0 else _V2_LAST
    return _Seq((("conv", (last, 1, 1)), ("bn", None), ("relu6", None)), self.dtype, name=str(k))(
      x, train=train
    )
