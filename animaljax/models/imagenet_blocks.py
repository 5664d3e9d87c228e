"""Layers of the ImageNet-layout encoders (`models/imagenet_resnet.py`): timm's `BasicBlock`, ResNeSt's deep
stem, `SplitAttn` and `ResNestBottleneck`, with timm's parameter names.

ResNeSt-50d as timm (`resnest50d`: radix 2, cardinality 1, base width 64, `avd=True`, `avd_first=False`,
`avg_down=True`), read from timm's `models/resnest.py` and `layers/split_attn.py`:
  * `ResNestBottleneck`: `conv1` 1x1 -> `bn1` -> ReLU -> `conv2` = SplitAttn 3x3 at stride 1 -> (stride-2 block:
    `avd_last` = AvgPool2d(3, 2, padding=1), padding counted in the mean) -> `conv3` 1x1 (4x planes) -> `bn3`
    -> + shortcut -> ReLU. The shortcut of a stage's first block is `downsample` = Sequential(AvgPool2d(2, 2,
    ceil_mode=True, count_include_pad=False) or Identity at stride 1, conv1x1, BN): keys `downsample.1`, `.2`.
  * `SplitAttn(C, radix=2)`: `conv` 3x3, 2C outputs, groups = radix -> `bn0` -> ReLU -> the radix halves summed
    -> global mean -> `fc1` (1x1 with bias, make_divisible(C * radix / 4, 8, min 32) channels) -> `bn1` -> ReLU
    -> `fc2` (1x1 with bias, 2C) -> softmax over the radix (`RadixSoftmax`) -> the halves weighted and summed.
Assumption: at `width` < 1 the attention width follows the same rule on the scaled channels (min 32 kept).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from animaljax.models.conv import conv_general_dilated

KERNEL_INIT = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # timm: kaiming_normal_(fan_out)


def batch_norm(name: str, train: bool, zero_scale: bool = False) -> nn.BatchNorm:
  """torch's BatchNorm2d defaults (momentum 0.1 = flax 0.9, eps 1e-5), statistics and normalisation in fp32."""
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=0.9,
    epsilon=1e-5,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    scale_init=nn.initializers.zeros if zero_scale else nn.initializers.ones,
    name=name,
  )


def conv(
  features: int, kernel: int, name: str, dtype: Any, *, stride: int = 1, groups: int = 1, bias: bool = False
) -> nn.Conv:
  """torch `Conv2d(k, stride, padding=k // 2, groups)`: (b, h, w, in) -> (b, ceil(h / stride), ..., features)."""
  pad = kernel // 2
  return nn.Conv(
    features,
    (kernel, kernel),
    strides=(stride, stride),
    padding=((pad, pad), (pad, pad)),
    feature_group_count=groups,
    use_bias=bias,
    kernel_init=KERNEL_INIT,
    dtype=dtype,
    param_dtype=jnp.float32,
    conv_general_dilated=conv_general_dilated,
    name=name,
  )


def max_pool_3x3_s2(x: jnp.ndarray) -> jnp.ndarray:
  """torch `MaxPool2d(3, stride=2, padding=1)` (the padding never wins: flax pads with -inf)."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class BasicBlock(nn.Module):
  """timm/torchvision `BasicBlock`: `(b, t, m, in) -> (b, t / stride, m / stride, planes)`."""

  planes: int
  stride: int
  downsample: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    out = conv(self.planes, 3, "conv1", self.dtype, stride=self.stride)(x)
    out = nn.relu(batch_norm("bn1", train)(out)).astype(self.dtype)
    out = batch_norm("bn2", train, zero_scale=True)(conv(self.planes, 3, "conv2", self.dtype)(out))
    shortcut = x
    if self.downsample:
      shortcut = _Shortcut(self.planes, self.stride, self.dtype, name="downsample")(x, train=train)
    return nn.relu(out + shortcut).astype(self.dtype)


class _Shortcut(nn.Module):
  """timm `downsample_conv` of a basic block: conv1x1 with the block's stride (`0`) -> BN (`1`)."""

  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    return batch_norm("1", train)(conv(self.features, 1, "0", self.dtype, stride=self.stride)(x))


class DeepStem(nn.Module):
  """ResNeSt-50d's `conv1` Sequential: 3x3/2 -> BN -> ReLU -> 3x3 -> BN -> ReLU -> 3x3 (indices 0, 1, 3, 4, 6)."""

  width: int
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    x = nn.relu(batch_norm("1", train)(conv(self.width, 3, "0", self.dtype, stride=2)(x))).astype(self.dtype)
    x = nn.relu(batch_norm("4", train)(conv(self.width, 3, "3", self.dtype)(x))).astype(self.dtype)
    return conv(self.features, 3, "6", self.dtype)(x)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
  """timm's `make_divisible`: `v` rounded to a multiple of `divisor`, at least `min_value`, never below 90%."""
  min_value = min_value or divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  return new_v + divisor if new_v < round_limit * v else new_v


class SplitAttn(nn.Module):
  """timm `SplitAttn` (cardinality 1): `(b, h, w, channels) -> (b, h, w, channels)`; names `conv`, `bn0`, `fc1`,
  `bn1`, `fc2`."""

  channels: int
  radix: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    c, r = self.channels, self.radix
    attn_chs = make_divisible(c * r * 0.25, 8, min_value=32)
    x = conv(c * r, 3, "conv", self.dtype, groups=r)(x)
    x = nn.relu(batch_norm("bn0", train)(x)).astype(self.dtype)
    b, h, w, _ = x.shape
    splits = x.reshape(b, h, w, r, c)  # torch reshape (B, radix, C, H, W): radix-major channels
    gap = jnp.mean(jnp.sum(splits, axis=3), axis=(1, 2), keepdims=True)  # (b, 1, 1, c)
    gap = conv(attn_chs, 1, "fc1", self.dtype, bias=True)(gap)
    gap = nn.relu(batch_norm("bn1", train)(gap)).astype(self.dtype)
    attn = conv(c * r, 1, "fc2", self.dtype, bias=True)(gap).reshape(b, 1, 1, r, c)
    attn = jax.nn.softmax(attn.astype(jnp.float32), axis=3) if r > 1 else jax.nn.sigmoid(attn)
    return jnp.sum(splits * attn.astype(self.dtype), axis=3)


def _avg_pool_3x3_s2(x: jnp.ndarray) -> jnp.ndarray:
  """torch `AvgPool2d(3, 2, padding=1)`: the zero padding counts in the mean (count_include_pad=True)."""
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), count_include_pad=True)


def _avg_pool_2x2_ceil(x: jnp.ndarray) -> jnp.ndarray:
  """torch `AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`: an odd edge is averaged over what is there."""
  pad = ((0, x.shape[1] % 2), (0, x.shape[2] % 2))
  return nn.avg_pool(x, (2, 2), strides=(2, 2), padding=pad, count_include_pad=False)


class _AvgDownShortcut(nn.Module):
  """timm `downsample_avg`: [2x2 average pool at stride 2] (`0`) -> conv1x1 (`1`) -> BN (`2`)."""

  features: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    if self.stride != 1:
      x = _avg_pool_2x2_ceil(x)
    return batch_norm("2", train)(conv(self.features, 1, "1", self.dtype)(x))


class ResNestBottleneck(nn.Module):
  """timm `ResNestBottleneck` (radix 2, avd, avd_first=False): `(b, t, m, in) -> (b, t', m', 4 * planes)`."""

  planes: int
  stride: int
  downsample: bool
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    out = nn.relu(batch_norm("bn1", train)(conv(self.planes, 1, "conv1", self.dtype)(x))).astype(self.dtype)
    out = SplitAttn(self.planes, 2, self.dtype, name="conv2")(out, train=train)
    if self.stride > 1:  # avd: the 3x3 path runs at stride 1, then average-pools (`avd_last`)
      out = _avg_pool_3x3_s2(out)
    out = batch_norm("bn3", train, zero_scale=True)(conv(4 * self.planes, 1, "conv3", self.dtype)(out))
    shortcut = x
    if self.downsample:
      shortcut = _AvgDownShortcut(4 * self.planes, self.stride, self.dtype, name="downsample")(x, train=train)
    return nn.relu(out + shortcut).astype(self.dtype)
