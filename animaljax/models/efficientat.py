"""EfficientAT's MobileNetV3 audio taggers `mn04`..`mn40` (Schmid et al., ICASSP 2023; fschmid56/EfficientAT).

The torchvision MobileNetV3-Large layout, as EfficientAT's `models/mn/model.py` configures it for one-channel
log-mel input (`audio.efficientat_frontend`, 128 bins at 32 kHz):

  features.0   conv 3x3 stride 2 (1 -> 16) + BN + hardswish
  features.1-15  inverted residual blocks (input, kernel, expanded, output, SE, activation, stride):
    (16,3,16,16,-,RE,1) (16,3,64,24,-,RE,2) (24,3,72,24,-,RE,1) (24,5,72,40,SE,RE,2) (40,5,120,40,SE,RE,1) x2
    (40,3,240,80,-,HS,2) (80,3,200,80,-,HS,1) (80,3,184,80,-,HS,1) x2 (80,3,480,112,SE,HS,1)
    (112,3,672,112,SE,HS,1) (112,5,672,160,SE,HS,2) (160,5,960,160,SE,HS,1) x2
    each `block` = [expand 1x1 + BN + act (omitted where expanded == input)], depthwise kxk (stride) + BN + act,
    [squeeze-excitation], project 1x1 + BN; plus the input where stride 1 and input == output channels.
  features.16  conv 1x1 (160 -> 960) + BN + hardswish
  classifier: global average pool -> [2] Linear(960, 1280) -> hardswish -> [4] Dropout(0.2) -> [5] Linear(1280,
    527).
Channel counts are `make_divisible(c * width_mult, 8)` (width_mult 0.4, 0.5, 1, 2, 3, 4 for mn04..mn40).
EfficientAT's squeeze-excitation (its `ConcurrentSEBlock` with the published `se_dims="c"`, i.e. one channel SE)
differs from torchvision's: two Linear layers (`conc_se_layers.0.fc1`, `fc2`; squeeze `make_divisible(expanded // 4,
8)`), ReLU and a plain sigmoid (not hard-sigmoid) gate. BatchNorm eps 1e-3, momentum 0.01 (torch).

In this package the encoder ends at `classifier.2` + hardswish: that vector is `out["embedding"]`
(`embed_dim`, 1280 for mn10), and the classifier's head (dropout 0.2 + Dense) is `classifier.5`, so fine-tuning
keeps the pretrained `classifier.2` as EfficientAT's own fine-tuning does. `out["pooled"]` is what EfficientAT
returns as its features (the pooled `features.16`, 960 channels for mn10) and `out["frame_embeddings"]` that map
averaged over frequency `(batch, ceil(frames / 32), pooled_dim)`.

Layout: log-mel `(batch, frames, mels)` becomes the image `(batch, mels, frames, 1)` (H = frequency, W = time,
as EfficientAT's `(batch, 1, mels, frames)`), so torch OIHW kernels map to HWIO by a transpose. Parameter tree =
the torch state-dict names with "." -> "/" (`features/4/block/2/conc_se_layers/0/fc1/kernel`, `classifier/2/...`).
The dynamic `dymn` variants live in `models/efficientat_dynamic.py` and share this config.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from animaljax.models.cnn14 import standardize_per_clip
from animaljax.models.imagenet_blocks import conv, make_divisible

# width_mult of each published model (EfficientAT's NAME_TO_WIDTH).
WIDTHS = {"mn04": 0.4, "mn05": 0.5, "mn10": 1.0, "mn20": 2.0, "mn30": 3.0, "mn40": 4.0}
DYNAMIC_WIDTHS = {"dymn04": 0.4, "dymn10": 1.0, "dymn20": 2.0}
# MobileNetV3-Large blocks at width 1: (input, kernel, expanded, output, SE, hardswish, stride).
BLOCKS = (
  (16, 3, 16, 16, False, False, 1),
  (16, 3, 64, 24, False, False, 2),
  (24, 3, 72, 24, False, False, 1),
  (24, 5, 72, 40, True, False, 2),
  (40, 5, 120, 40, True, False, 1),
  (40, 5, 120, 40, True, False, 1),
  (40, 3, 240, 80, False, True, 2),
  (80, 3, 200, 80, False, True, 1),
  (80, 3, 184, 80, False, True, 1),
  (80, 3, 184, 80, False, True, 1),
  (80, 3, 480, 112, True, True, 1),
  (112, 3, 672, 112, True, True, 1),
  (112, 5, 672, 160, True, True, 2),
  (160, 5, 960, 160, True, True, 1),
  (160, 5, 960, 160, True, True, 1),
)
_LAST_CHANNEL = 1280
_LINEAR_INIT = nn.initializers.normal(0.01)  # EfficientAT's nn.Linear init


@dataclasses.dataclass(frozen=True)
class EfficientAtConfig:
  """An EfficientAT MobileNetV3 (`mn*`) or dynamic MobileNet (`dymn*`).

  Attributes:
    variant: one of `WIDTHS` or `DYNAMIC_WIDTHS` (mn04 .. mn40, dymn04, dymn10, dymn20).
    width: an extra multiplier on the variant's width_mult (1.0 = the published model; tests use less).
    dropout: the head's dropout (0.2, EfficientAT's `classifier.4`) in training.
    clip_norm: standardise each input's log-mel per clip first (`CnnConfig.clip_norm`); EfficientAT has none.
    temperature: dymn only: the softmax temperature of the dynamic convolutions' kernel attention (1.0, where
      EfficientAT's schedule ends and what it sets for pretrained models).
  """

  variant: str = "mn10"
  width: float = 1.0
  dropout: bool = True
  clip_norm: bool = False
  temperature: float = 1.0

  def __post_init__(self):
    if self.variant not in WIDTHS and self.variant not in DYNAMIC_WIDTHS:
      raise ValueError(
        f"unknown EfficientAT variant {self.variant!r}; valid: {sorted(WIDTHS | DYNAMIC_WIDTHS)}"
      )
    if self.width <= 0 or self.temperature <= 0:
      raise ValueError(f"width and temperature must be positive, got {self.width}, {self.temperature}")

  @property
  def dynamic(self) -> bool:
    return self.variant in DYNAMIC_WIDTHS

  @property
  def width_mult(self) -> float:
    return (DYNAMIC_WIDTHS if self.dynamic else WIDTHS)[self.variant] * self.width

  def channels(self, c: int) -> int:
    """A width-1 channel count at this width (EfficientAT's `adjust_channels`)."""
    return make_divisible(c * self.width_mult, 8)

  @property
  def blocks(self) -> tuple[tuple[int, int, int, int, bool, bool, int], ...]:
    """`BLOCKS` with the channel counts at this width."""
    return tuple(
      (self.channels(i), k, self.channels(e), self.channels(o), se, hs, s) for i, k, e, o, se, hs, s in BLOCKS
    )

  @property
  def pooled_dim(self) -> int:
    """Channels of the last conv (`features.16` / `out_c`): 6x the last block's."""
    return 6 * self.blocks[-1][3]

  @property
  def embed_dim(self) -> int:
    """`classifier.2`'s width = `out["embedding"]` (1280 for mn10)."""
    return self.channels(_LAST_CHANNEL)

  @property
  def head_dropout(self) -> float:
    return 0.2

  @property
  def min_frames(self) -> int:
    """Every conv pads, so one frame survives the five stride-2 layers."""
    return 1


def batch_norm(name: str, train: bool) -> nn.BatchNorm:
  # EfficientAT: BatchNorm2d(eps=0.001, momentum=0.01) = flax momentum 0.99; statistics in fp32.
  return nn.BatchNorm(
    use_running_average=not train, momentum=0.99, epsilon=1e-3, dtype=jnp.float32, param_dtype=jnp.float32,
    name=name,
  )  # fmt: skip


def activation(x: jnp.ndarray, hardswish: bool) -> jnp.ndarray:
  return nn.hard_swish(x) if hardswish else nn.relu(x)


def dense(features: int, name: str, dtype: Any, bias: bool = True) -> nn.Dense:
  return nn.Dense(
    features, use_bias=bias, kernel_init=_LINEAR_INIT, dtype=dtype, param_dtype=jnp.float32, name=name
  )


class ConvNormAct(nn.Module):
  """torchvision's `ConvNormActivation`: children "0" (conv, no bias) and "1" (BatchNorm), then the activation
  (`act`: "hs", "re" or "" for none). `(b, h, w, c) -> (b, ceil(h / stride), ceil(w / stride), features)`."""

  features: int
  kernel: int
  stride: int = 1
  groups: int = 1
  act: str = "hs"
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    x = conv(self.features, self.kernel, "0", self.dtype, stride=self.stride, groups=self.groups)(
      x.astype(self.dtype)
    )
    x = batch_norm("1", train)(x)
    if self.act:
      x = activation(x, self.act == "hs")
    return x.astype(self.dtype)


class _SqueezeExcitation(nn.Module):
  """EfficientAT's channel `SqueezeExcitation`: mean over (freq, time) -> fc1 -> ReLU -> fc2 -> sigmoid gate."""

  squeeze: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    s = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(self.dtype)
    s = nn.relu(dense(self.squeeze, "fc1", self.dtype)(s))
    s = nn.sigmoid(dense(x.shape[-1], "fc2", self.dtype)(s))
    return (x * s).astype(self.dtype)


class _SELayers(nn.Module):
  """`conc_se_layers`, a ModuleList holding the one channel SE layer ("0")."""

  squeeze: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return _SqueezeExcitation(self.squeeze, self.dtype, name="0")(x)


class _ConcurrentSE(nn.Module):
  """`ConcurrentSEBlock` with one (channel) SE layer: the max over one output is that output."""

  squeeze: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return _SELayers(self.squeeze, self.dtype, name="conc_se_layers")(x)


class _BlockLayers(nn.Module):
  """An `InvertedResidual`'s `block` Sequential (children "0", "1", ... as torch numbers them)."""

  spec: tuple[int, int, int, int, bool, bool, int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    inp, kernel, expanded, out, se, hs, stride = self.spec
    act, i = "hs" if hs else "re", 0
    if expanded != inp:
      x = ConvNormAct(expanded, 1, act=act, dtype=self.dtype, name=str(i))(x, train=train)
      i += 1
    x = ConvNormAct(expanded, kernel, stride, expanded, act, self.dtype, name=str(i))(x, train=train)
    i += 1
    if se:
      squeeze = make_divisible(expanded // 4, 8)
      x = _ConcurrentSE(squeeze, self.dtype, name=str(i))(x)
      i += 1
    return ConvNormAct(out, 1, act="", dtype=self.dtype, name=str(i))(x, train=train)


class InvertedResidual(nn.Module):
  """`features.{1..15}`: the block layers (`block`) plus the input where stride 1 and channels match."""

  spec: tuple[int, int, int, int, bool, bool, int]
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    y = _BlockLayers(self.spec, self.dtype, name="block")(x, train=train)
    inp, out, stride = self.spec[0], self.spec[3], self.spec[6]
    return (y + x).astype(self.dtype) if stride == 1 and inp == out else y


class _Features(nn.Module):
  config: EfficientAtConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    blocks = self.config.blocks
    x = ConvNormAct(blocks[0][0], 3, 2, dtype=self.dtype, name="0")(x, train=train)
    for i, spec in enumerate(blocks, start=1):
      x = InvertedResidual(spec, self.dtype, name=str(i))(x, train=train)
    return ConvNormAct(self.config.pooled_dim, 1, dtype=self.dtype, name=str(len(blocks) + 1))(x, train=train)


class _Classifier(nn.Module):
  """`classifier.2` (+ hardswish): the part of EfficientAT's classifier kept in the encoder."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pooled: jnp.ndarray) -> jnp.ndarray:
    return nn.hard_swish(dense(self.features, "2", self.dtype)(pooled))


def as_image(features: jnp.ndarray, config: EfficientAtConfig, dtype: Any) -> jnp.ndarray:
  """Log-mel `(batch, frames, mels)` -> `(batch, mels, frames, 1)` in `dtype` (optionally clip-normalised)."""
  if features.ndim != 3:
    raise ValueError(f"{config.variant} needs features (batch, frames, mels), got {features.shape}")
  x = features.astype(jnp.float32)
  if config.clip_norm:
    x = standardize_per_clip(x)
  return jnp.swapaxes(x, 1, 2)[..., None].astype(dtype)


def pool_and_embed(x: jnp.ndarray, config: EfficientAtConfig, dtype: Any) -> dict[str, jnp.ndarray]:
  """The last feature map `(batch, mels', frames', C)` -> the encoder's outputs (inside a compact module)."""
  frames = jnp.mean(x.astype(jnp.float32), axis=1)  # over frequency -> (batch, frames', C)
  pooled = jnp.mean(frames, axis=1)
  embedding = _Classifier(config.embed_dim, dtype, name="classifier")(pooled.astype(dtype))
  return {"embedding": embedding, "pooled": pooled, "frame_embeddings": frames}


class EfficientAtMobileNet(nn.Module):
  """EfficientAT `mn*` encoder.

  Call: `features (batch, frames, mels) -> {"embedding": (batch, embed_dim), "pooled": (batch, pooled_dim),
  "frame_embeddings": (batch, ceil(frames / 32), pooled_dim)}`. Train mode needs `mutable=["batch_stats"]`.
  """

  config: EfficientAtConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    if self.config.dynamic:
      raise ValueError(f"{self.config.variant} is a dynamic MobileNet: build it with EfficientAtDynamic")
    x = as_image(features, self.config, self.dtype)
    x = _Features(self.config, self.dtype, name="features")(x, train=train)
    return pool_and_embed(x, self.config, self.dtype)
