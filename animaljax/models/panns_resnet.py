"""PANNs ResNet22 / ResNet38 / ResNet54 encoders (Kong et al. 2020, audioset_tagging_cnn `pytorch/models.py`).

Layer for layer as PANNs: log-mel `(batch, frames, mels)` -> `bn0` (mel bins as channels) -> `conv_block1`
(two 3x3 conv+BN+ReLU, 64 channels, 2x2 average pool) -> dropout 0.2 -> `resnet` (4 stages of 64/128/256/512
planes; ResNet22: basic blocks [2, 2, 2, 2]; ResNet38: basic blocks [3, 4, 6, 3]; ResNet54: bottleneck blocks
[3, 4, 6, 3], expansion 4) -> 2x2 average pool -> dropout 0.2 -> `conv_block_after1` (two 3x3, 2048 channels,
no pool) -> dropout 0.2 -> mean over mel -> max + mean over time -> dropout 0.5 -> `fc1` -> ReLU = embedding.

PANNs' ResNet differs from torchvision's in how it downsamples, and this module follows PANNs:
  * a block with stride 2 average-pools its input 2x2 first (basic: before `conv1`; bottleneck: before the 1x1
    `conv1`) and then runs stride-1 convolutions;
  * the shortcut of a stride-2 block is `downsample = Sequential(AvgPool2d(2), conv1x1, BatchNorm)` (torch keys
    `downsample.1.weight`, `downsample.2.*`); a stride-1 block whose channels change (ResNet54's first block) has
    `Sequential(conv1x1, BatchNorm)` (`downsample.0.weight`, `downsample.1.*`);
  * dropout 0.1 inside every block (basic: after the first ReLU; bottleneck: after the second).
Stage 1 has stride 1, stages 2-4 stride 2; with conv_block1's and the final pool that is 32x over time and mel.

Parameter tree (the torch state-dict names with "." -> "/", so `torch_weights._panns_key` maps it unchanged):
  `bn0`, `conv_block1/{conv1,bn1,conv2,bn2}`, `resnet/layer{1-4}/{j}/{conv1,bn1,conv2,bn2[,conv3,bn3]}`,
  `resnet/layer{i}/0/downsample/{0,1 | 1,2}`, `conv_block_after1/...`, `fc1`. Conv kernels are HWIO with H = time,
  W = mel, as in `cnn14`.

Assumption: `width` (not in PANNs; 1.0 is the published model) scales every channel count, including the
2048-channel `conv_block_after1` and the embedding, as `CnnConfig.width` does; PANNs' zero init of each block's
last BatchNorm scale (`zero_init_residual`) is kept for training from scratch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax.numpy as jnp

from animaljax.models.cnn14 import ConvBlock, standardize_per_clip
from animaljax.models.conv import conv_general_dilated

# (block kind, blocks per stage) as in PANNs.
_VARIANTS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
  "resnet22": ("basic", (2, 2, 2, 2)),
  "resnet38": ("basic", (3, 4, 6, 3)),
  "resnet54": ("bottleneck", (3, 4, 6, 3)),
}
_PLANES = (64, 128, 256, 512)
_EXPANSION = {"basic": 1, "bottleneck": 4}
_KERNEL_INIT = nn.initializers.xavier_uniform()  # PANNs' init_layer


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
  """A PANNs ResNet encoder.

  Attributes:
    variant: "resnet22", "resnet38" or "resnet54".
    width: multiplier on every channel count (1.0 = published; tests use 1/4).
    dropout: PANNs' dropouts (0.1 in the blocks, 0.2 between stages, 0.5 before fc1 and the head).
    clip_norm: standardise each input's features per clip before `bn0` (`CnnConfig.clip_norm`; not PANNs).
  """

  variant: Literal["resnet22", "resnet38", "resnet54"] = "resnet38"
  width: float = 1.0
  dropout: bool = True
  clip_norm: bool = False

  def __post_init__(self):
    if self.variant not in _VARIANTS:
      raise ValueError(f"unknown ResNet variant {self.variant!r}; valid: {sorted(_VARIANTS)}")
    if self.width <= 0:
      raise ValueError(f"width must be positive, got {self.width}")

  def _scale(self, c: int) -> int:
    return max(1, round(c * self.width))

  @property
  def min_frames(self) -> int:
    """The fewest input frames (and mel bins) that survive the five 2x2 poolings."""
    return 32

  @property
  def block(self) -> str:
    """ "basic" or "bottleneck"."""
    return _VARIANTS[self.variant][0]

  @property
  def stem(self) -> int:
    """Channels of `conv_block1` (64 * width), also the ResNet body's input."""
    return self._scale(64)

  @property
  def planes(self) -> tuple[int, ...]:
    """Planes of each stage (a stage outputs planes * expansion channels)."""
    return tuple(self._scale(p) for p in _PLANES)

  @property
  def embed_dim(self) -> int:
    """Channels of `conv_block_after1` = width of `fc1` = of `out["embedding"]` (2048 at width 1)."""
    return self._scale(2048)


def _batch_norm(name: str, train: bool, zero_scale: bool = False) -> nn.BatchNorm:
  # torch momentum 0.01 = flax momentum 0.99; statistics and normalisation in fp32 (as cnn14).
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.99,
    epsilon=1e-5,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
    name=name,
  )


def _conv(features: int, kernel: int, name: str, dtype: Any) -> nn.Conv:
  pad = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    padding=((pad, pad), (pad, pad)),
    use_bias=False,
    kernel_init=_KERNEL_INIT,
    dtype=dtype,
    param_dtype=jnp.float32,
    conv_general_dilated=conv_general_dilated,
    name=name,
  )


def _pool2(x: jnp.ndarray) -> jnp.ndarray:
  """2x2 average pool, floor on odd sizes (torch `F.avg_pool2d(x, 2)`)."""
  return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


class _Downsample(nn.Module):
  """PANNs' shortcut: [AvgPool2d(2) if stride 2] -> conv1x1 -> BN, named by their `nn.Sequential` index."""

  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    first = 0
    if self.stride == 2:
      x, first = _pool2(x), 1  # the AvgPool2d is item 0 of the Sequential
    x = _conv(self.features, 1, str(first), self.dtype)(x)
    return _batch_norm(str(first + 1), train)(x)


class _Block(nn.Module):
  """One `_ResnetBasicBlock` or `_ResnetBottleneck`: `(b, t, m, in) -> (b, t / stride, m / stride, out)`."""

  kind: str
  planes: int
  stride: int
  downsample: bool
  drop: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    identity = x
    out = _pool2(x) if self.stride == 2 else x
    dropout = nn.Dropout(0.1, deterministic=not self.drop)
    if self.kind == "basic":
      out = nn.relu(_batch_norm("bn1", train)(_conv(self.planes, 3, "conv1", self.dtype)(out)))
      out = dropout(out.astype(self.dtype))
      out = _batch_norm("bn2", train, zero_scale=True)(_conv(self.planes, 3, "conv2", self.dtype)(out))
      features = self.planes
    else:
      features = self.planes * _EXPANSION["bottleneck"]
      out = nn.relu(_batch_norm("bn1", train)(_conv(self.planes, 1, "conv1", self.dtype)(out)))
      out = nn.relu(
        _batch_norm("bn2", train)(_conv(self.planes, 3, "conv2", self.dtype)(out.astype(self.dtype)))
      )
      out = dropout(out.astype(self.dtype))
      out = _batch_norm("bn3", train, zero_scale=True)(_conv(features, 1, "conv3", self.dtype)(out))
    if self.downsample:
      identity = _Downsample(features, self.stride, self.dtype, name="downsample")(identity, train=train)
    return nn.relu(out + identity).astype(self.dtype)


class _Layer(nn.Module):
  """One stage (`resnet.layer{i}`): blocks named "0", "1", ... as the torch `nn.Sequential`."""

  kind: str
  planes: int
  blocks: int
  stride: int
  drop: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    out_channels = self.planes * _EXPANSION[self.kind]
    for j in range(self.blocks):
      stride = self.stride if j == 0 else 1
      # PANNs `_make_layer`: a shortcut projection where the shape changes, i.e. only in a stage's first block.
      down = j == 0 and (stride != 1 or x.shape[-1] != out_channels)
      x = _Block(self.kind, self.planes, stride, down, self.drop, self.dtype, name=str(j))(x, train=train)
    return x


class ResNetBody(nn.Module):
  """PANNs' `_ResNet` (named `resnet`): four stages, strides 1, 2, 2, 2."""

  config: ResNetConfig
  drop: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    kind, blocks = _VARIANTS[self.config.variant]
    for i, (planes, n) in enumerate(zip(self.config.planes, blocks, strict=True), start=1):
      layer = _Layer(kind, planes, n, 1 if i == 1 else 2, self.drop, self.dtype, name=f"layer{i}")
      x = layer(x, train=train)
    return x


class ResNet(nn.Module):
  """PANNs ResNet22/38/54 encoder.

  Call: `features (batch, frames, mels) -> {"embedding": (batch, embed_dim), "frame_embeddings": (batch,
  frames / 32, embed_dim)}` (`frame_embeddings`: `conv_block_after1`'s output averaged over mel, before the
  pooling over time). Train mode needs the "dropout" rng when `config.dropout` and `mutable=["batch_stats"]`.
  """

  config: ResNetConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    cfg = self.config
    drop = cfg.dropout and train
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
    x = ConvBlock(cfg.stem, pool=2, dtype=self.dtype, name="conv_block1")(x, train=train)
    x = nn.Dropout(0.2, deterministic=not drop)(x)
    x = ResNetBody(cfg, drop, self.dtype, name="resnet")(x, train=train)
    x = _pool2(x)
    x = nn.Dropout(0.2, deterministic=not drop)(x)
    x = ConvBlock(cfg.embed_dim, pool=1, dtype=self.dtype, name="conv_block_after1")(x, train=train)
    x = nn.Dropout(0.2, deterministic=not drop)(x)
    frames = jnp.mean(x, axis=2)  # over mel -> (batch, time', channels)
    x = jnp.max(frames, axis=1) + jnp.mean(frames, axis=1)
    x = nn.Dropout(0.5, deterministic=not drop)(x)
    x = nn.Dense(
      cfg.embed_dim, kernel_init=_KERNEL_INIT, dtype=self.dtype, param_dtype=jnp.float32, name="fc1"
    )(x)
    return {"embedding": nn.relu(x), "frame_embeddings": frames}
