"""ImageNet-style ResNet18 / ResNet34 / ResNeSt-50d over a log-mel "image" (the ESC-50 and bird-song recipes).

Layer for layer as timm's `resnet18`, `resnet34` (= torchvision's) and `resnest50d`, with one input channel:
log-mel `(batch, frames, mels)` -> [`clip_norm`] -> `bn0` (BatchNorm over mel bins as channels, as PANNs and the
BirdCLEF timm recipes put in front of the backbone) -> `(batch, time, mel, 1)` -> stem -> `layer1`..`layer4`
-> mean over mel = `frame_embeddings (batch, frames / 32, C)` -> mean over time = `embedding (batch, C)` (timm's
global average pool; C = 512 for the ResNets, 2048 for ResNeSt-50d). `fc` is not part of the encoder: the
classifier's head replaces it (after the classifier's dropout 0.5 when `dropout`).

Stems: ResNet: `conv1` 7x7 stride 2 (padding 3) -> `bn1` -> ReLU -> 3x3/2 max pool (padding 1). ResNeSt-50d
("deep" stem, width 32): `conv1` = Sequential(3x3/2 32, BN, ReLU, 3x3 32, BN, ReLU, 3x3 64) (torch indices 0, 1,
3, 4, 6) -> `bn1` -> ReLU -> the same max pool.
Blocks: ResNet: `BasicBlock` [2, 2, 2, 2] / [3, 4, 6, 3], the stride in `conv1`; a shortcut
`downsample = Sequential(conv1x1 stride s, BN)` (`downsample.0`, `.1`) where the shape changes. ResNeSt-50d:
`ResNestBottleneck` [3, 4, 6, 3] (`models/imagenet_blocks.py`). Stage 1 has stride 1, stages 2-4 stride 2.

Parameter tree = timm's state-dict names with "." -> "/" under `encoder` (`conv1`, `bn1`,
`layer{i}/{j}/conv1`, `layer{i}/{j}/downsample/{k}`, ResNeSt's `conv1/{0,1,3,4,6}` and
`layer{i}/{j}/conv2/{conv,bn0,fc1,bn1,fc2}`) plus our `bn0`, so `models/imagenet_weights.py` maps ImageNet
weights by name. Conv kernels are HWIO with H = time, W = mel.

Assumptions: BatchNorm as torch's default (momentum 0.1, eps 1e-5); convs initialised as timm (Kaiming normal,
fan out), the last BatchNorm scale of each block zero (timm's `zero_init_last`); `width` (not in timm; 1.0 is
the published model) scales every channel count, as `CnnConfig.width` does.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax.numpy as jnp

from animaljax.models.cnn14 import standardize_per_clip
from animaljax.models.imagenet_blocks import (
  BasicBlock,
  DeepStem,
  ResNestBottleneck,
  batch_norm,
  conv,
  max_pool_3x3_s2,
)

# (block kind, blocks per stage) as timm.
_VARIANTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
  "resnet18": ("basic", (2, 2, 2, 2)),
  "resnet34": ("basic", (3, 4, 6, 3)),
  "resnest50": ("resnest", (3, 4, 6, 3)),
}
_PLANES = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "resnest": 4}


@dataclasses.dataclass(frozen=True)
class ImageNetResNetConfig:
  """An ImageNet-layout ResNet over log-mel.

  Attributes:
    variant: "resnet18", "resnet34" or "resnest50" (timm `resnest50d`).
    width: multiplier on every channel count (1.0 = published; tests use less).
    dropout: the classifier's dropout 0.5 before its head (timm's ResNets have none inside).
    clip_norm: standardise each input's log-mel per clip before `bn0` (`CnnConfig.clip_norm`).
  """

  variant: Literal["resnet18", "resnet34", "resnest50"] = "resnet18"
  width: float = 1.0
  dropout: bool = True
  clip_norm: bool = False

  def __post_init__(self):
    if self.variant not in _VARIANTS:
      raise ValueError(f"unknown ImageNet ResNet variant {self.variant!r}; valid: {sorted(_VARIANTS)}")
    if self.width <= 0:
      raise ValueError(f"width must be positive, got {self.width}")

  def scale(self, c: int) -> int:
    """A published channel count `c` at this width (at least 1)."""
    return max(1, round(c * self.width))

  @property
  def min_frames(self) -> int:
    """The fewest input frames (and mel bins) for which every stage still sees more than one row (stride 32)."""
    return 32

  @property
  def block(self) -> str:
    """ "basic" or "resnest"."""
    return _VARIANTS[self.variant][0]

  @property
  def planes(self) -> tuple[int, ...]:
    """Planes of each stage (a stage outputs planes * expansion channels)."""
    return tuple(self.scale(p) for p in _PLANES)

  @property
  def embed_dim(self) -> int:
    """Channels of `layer4` = of `out["embedding"]` (512 for the ResNets, 2048 for ResNeSt-50d, at width 1)."""
    return self.planes[-1] * _EXPANSION[self.block]


class _Layer(nn.Module):
  """One stage (`layer{i}`): blocks named "0", "1", ... as the torch `nn.Sequential`."""

  config: ImageNetResNetConfig
  planes: int
  blocks: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    kind = self.config.block
    out_channels = self.planes * _EXPANSION[kind]
    for j in range(self.blocks):
      stride = self.stride if j == 0 else 1
      # timm `make_blocks`: a shortcut projection where the shape changes, i.e. only in a stage's first block.
      down = j == 0 and (stride != 1 or x.shape[-1] != out_channels)
      if kind == "basic":
        x = BasicBlock(self.planes, stride, down, self.dtype, name=str(j))(x, train=train)
      else:
        block = ResNestBottleneck(self.planes, stride, down, self.dtype, name=str(j))
        x = block(x, train=train)
    return x


class ImageNetResNet(nn.Module):
  """ResNet18/34 or ResNeSt-50d encoder over log-mel.

  Call: `features (batch, frames, mels) -> {"embedding": (batch, embed_dim), "frame_embeddings": (batch,
  ceil(frames / 32), embed_dim)}` (`frame_embeddings`: `layer4`'s output averaged over mel; the embedding is
  their mean over time, i.e. the global average pool). Train mode needs `mutable=["batch_stats"]`.
  """

  config: ImageNetResNetConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    cfg = self.config
    if features.ndim != 3:
      raise ValueError(f"{cfg.variant} needs features (batch, frames, mels), got {features.shape}")
    x = features.astype(jnp.float32)
    if cfg.clip_norm:
      x = standardize_per_clip(x)
    x = batch_norm("bn0", train)(x)  # over mel bins
    x = x[..., None].astype(self.dtype)  # (batch, time, mel, 1): a one-channel image
    if cfg.block == "basic":
      x = conv(cfg.scale(64), 7, "conv1", self.dtype, stride=2)(x)
    else:
      x = DeepStem(cfg.scale(32), cfg.scale(64), self.dtype, name="conv1")(x, train=train)
    x = nn.relu(batch_norm("bn1", train)(x)).astype(self.dtype)
    x = max_pool_3x3_s2(x)
    for i, (planes, n) in enumerate(zip(cfg.planes, _VARIANTS[cfg.variant][1], strict=True), start=1):
      x = _Layer(cfg, planes, n, 1 if i == 1 else 2, self.dtype, name=f"layer{i}")(x, train=train)
    frames = jnp.mean(x.astype(jnp.float32), axis=2)  # over mel -> (batch, time', channels)
    return {"embedding": jnp.mean(frames, axis=1).astype(self.dtype), "frame_embeddings": frames}
