"""EfficientAT's dynamic MobileNets `dymn04`, `dymn10`, `dymn20` (Schmid et al., "Dynamic Convolutional Neural
Networks as Efficient Pre-trained Audio Models", IEEE/ACM TASLP 2024; fschmid56/EfficientAT `models/dymn`).

The `mn` layout (`models/efficientat.py`: same 15 blocks, widths, strides, first/last convs and classifier) with
every inverted residual block replaced by a dynamic block (`layers.{i}`), in torch order:

  context_gen: the input averaged over time `(b, F, C)` and over frequency `(b, T, C)`, concatenated along the
    sequence -> 1x1 conv `joint_conv` (no bias) -> BN `joint_norm` -> hardswish; `h` = its mean over the whole
    sequence `(b, H)` (the context, H = clip(make_divisible(expanded / 4), make_divisible(32 w),
    make_divisible(128 w))); the frequency and time parts, average-pooled (kernel 3, the block's stride, padding
    1, padding counted) where the block strides, -> 1x1 convs `conv_f` / `conv_t` (with bias) = coordinate
    attention logits `(b, F', 1, E)`, `(b, 1, T', E)`.
  exp_conv (dynamic 1x1, omitted where expanded == input) -> exp_norm -> ReLU or hardswish;
  depth_conv (dynamic depthwise kxk, stride) -> depth_norm -> depth_act = dynamic ReLU (`DyReLUB`, M = 2):
    `theta = 2 sigmoid(coef_net.0(h)) - 1`, per channel `(a1, a2, b1, b2) = theta * (1, 1, .5, .5) + (1, 0, 0, 0)`,
    `max(a1 x + b1, a2 x + b2)`;
  coordinate attention: `x * sigmoid(g_f) * sigmoid(g_t)`;
  proj_conv (dynamic 1x1) -> proj_norm; plus the input where stride 1 and channels match.
A dynamic convolution holds K = 4 kernels as one parameter `weight (1, 1, K, out * in/groups * kh * kw)` (torch's
layout, stored as is) mixed per example by `softmax(residuals.0(h) / temperature)`. The temperature is not in a
checkpoint: EfficientAT anneals it from 30 to 1 while training from scratch and sets it to 1 for pretrained
models, our default (`EfficientAtConfig.temperature`). Names: `in_c`, `layers/{i}/...`, `out_c`, `classifier/2`.

Only the published "all blocks dynamic" layout is built (`use_dy_blocks="all"`); the `*_replace_se` checkpoints
mix plain and dynamic blocks and are refused by the converter.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import export as jax_export
from jax import lax

from animaljax.models.efficientat import (
  ConvNormAct,
  EfficientAtConfig,
  EfficientAtMobileNet,
  as_image,
  batch_norm,
  dense,
  pool_and_embed,
)
from animaljax.models.imagenet_blocks import conv, make_divisible

_KERNELS = 4  # dynamic convolution kernels (EfficientAT's dyconv_k)
_M = 2  # dynamic ReLU pieces (dyrelu_k)


class _Linear0(nn.Module):
  """A one-Linear `nn.Sequential` (`residuals.0`, `coef_net.0`)."""

  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return dense(self.features, "0", self.dtype)(x)


class DynamicConv(nn.Module):
  """`(b, h, w, in), context (b, H) -> (b, ceil(h / stride), ceil(w / stride), features)`: a 1x1 (groups 1) or
  depthwise (groups = in = features) convolution whose kernel is each example's attention mix of K kernels."""

  features: int
  kernel: int = 1
  stride: int = 1
  depthwise: bool = False
  temperature: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, context: jnp.ndarray) -> jnp.ndarray:
    b, k, cin = x.shape[0], self.kernel, x.shape[-1]
    if self.depthwise and cin != self.features:
      raise ValueError(f"a depthwise dynamic conv maps {cin} channels to {cin}, not {self.features}")
    if not self.depthwise and k != 1:
      raise ValueError("dense dynamic convolutions are 1x1 in a dynamic MobileNet")
    per_group = 1 if self.depthwise else cin
    # torch's kaiming_normal_(fan_out) on each (out, in/groups, k, k) kernel
    init = nn.initializers.normal((2.0 / (self.features * k * k)) ** 0.5)
    bank = self.param("weight", init, (1, 1, _KERNELS, self.features * per_group * k * k), jnp.float32)
    logits = _Linear0(_KERNELS, self.dtype, name="residuals")(context).astype(jnp.float32)
    attention = jax.nn.softmax(logits / self.temperature, axis=-1)
    w = (attention @ bank[0, 0]).reshape(b, self.features, per_group, k, k).astype(self.dtype)
    x = x.astype(self.dtype)
    if not self.depthwise:
      return jnp.einsum("bhwi,boi->bhwo", x, w[..., 0, 0])
    return depthwise_per_example(x, w[:, :, 0], self.stride)


def depthwise_per_example(x: jnp.ndarray, w: jnp.ndarray, stride: int) -> jnp.ndarray:
  """A depthwise convolution with a kernel per example, "same" padding:
  `x (b, h, w, c), w (b, c, k, k) -> (b, ceil(h / stride), ceil(w / stride), c)`.

  One grouped convolution with the batch folded into the channels (one group per example and channel), except
  where the batch size is symbolic (`jax.export` of a bundle's forward), which a group count cannot be: there
  the sum of the k * k taps, each a strided slice of the padded input times that tap's (example, channel)
  weights. Same result to float rounding; the taps form is not the only one because its gradient compiles
  ~60% slower (dymn04 on CPU) and training never needs it.
  """
  b, h, wd, c = x.shape
  k = w.shape[-1]
  pad = (k - 1) // 2
  if not jax_export.is_symbolic_dim(b):
    folded = x.transpose(1, 2, 0, 3).reshape(1, h, wd, b * c)
    kernel = w.transpose(2, 3, 0, 1).reshape(k, k, 1, b * c)
    y = lax.conv_general_dilated(
      folded, kernel, (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=b * c,
    )  # fmt: skip
    return y.reshape(y.shape[1], y.shape[2], b, c).transpose(2, 0, 1, 3)
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  rows, cols = (h - 1) // stride + 1, (wd - 1) // stride + 1
  y = None
  for i in range(k):
    for j in range(k):
      end = (b, i + stride * (rows - 1) + 1, j + stride * (cols - 1) + 1, c)
      term = lax.slice(padded, (0, i, j, 0), end, (1, stride, stride, 1)) * w[:, None, None, :, i, j]
      y = term if y is None else y + term
  return y


class DynamicReLU(nn.Module):
  """`DyReLUB`: per example and channel the max of M = 2 lines whose coefficients come from the context."""

  @nn.compact
  def __call__(self, x: jnp.ndarray, context: jnp.ndarray) -> jnp.ndarray:
    c = x.shape[-1]
    theta = (
      2.0 * nn.sigmoid(_Linear0(2 * _M * c, x.dtype, name="coef_net")(context).astype(jnp.float32)) - 1.0
    )
    lambdas = jnp.array([1.0] * _M + [0.5] * _M)
    init = jnp.array([1.0] + [0.0] * (2 * _M - 1))
    coef = theta.reshape(-1, c, 2 * _M) * lambdas + init  # (b, C, 2M), torch's channel-major view
    slopes, offsets = coef[:, None, None, :, :_M], coef[:, None, None, :, _M:]
    return jnp.max(x[..., None].astype(jnp.float32) * slopes + offsets, axis=-1).astype(x.dtype)


class ContextGen(nn.Module):
  """`(b, F, T, C) -> (context (b, H), freq logits (b, F', 1, E), time logits (b, 1, T', E))`."""

  context: int
  expanded: int
  stride: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    f = x.shape[1]
    x32 = x.astype(jnp.float32)
    seq = jnp.concatenate([jnp.mean(x32, axis=2), jnp.mean(x32, axis=1)], axis=1)[:, :, None, :]
    seq = conv(self.context, 1, "joint_conv", self.dtype)(seq.astype(self.dtype))
    seq = nn.hard_swish(batch_norm("joint_norm", train)(seq)).astype(self.dtype)
    h = jnp.mean(seq.astype(jnp.float32), axis=(1, 2)).astype(self.dtype)
    hf, ht = seq[:, :f], seq[:, f:]
    if self.stride > 1:  # torch AvgPool2d(3, stride, padding 1) over the sequence; padding counts as zeros
      window, strides, pad = (3, 1), (self.stride, 1), ((1, 1), (0, 0))
      hf = nn.avg_pool(hf, window, strides, pad, count_include_pad=True)
      ht = nn.avg_pool(ht, window, strides, pad, count_include_pad=True)
    gf = conv(self.expanded, 1, "conv_f", self.dtype, bias=True)(hf)
    gt = conv(self.expanded, 1, "conv_t", self.dtype, bias=True)(ht).transpose(0, 2, 1, 3)
    return h, gf, gt


class DynamicBlock(nn.Module):
  """`DY_Block` (`layers.{i}`): `(b, F, T, in) -> (b, F', T', out)`."""

  spec: tuple[int, int, int, int, bool, bool, int]
  width_mult: float
  temperature: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    inp, kernel, expanded, out, _, hs, stride = self.spec
    lo, hi = make_divisible(32 * self.width_mult, 8), make_divisible(128 * self.width_mult, 8)
    context = min(max(make_divisible(expanded // 4, 8), lo), hi)
    h, gf, gt = ContextGen(context, expanded, stride, self.dtype, name="context_gen")(x, train=train)
    t, y = self.temperature, x
    if expanded != inp:
      y = DynamicConv(expanded, temperature=t, dtype=self.dtype, name="exp_conv")(y, h)
      y = batch_norm("exp_norm", train)(y)
      y = (nn.hard_swish(y) if hs else nn.relu(y)).astype(self.dtype)
    y = DynamicConv(expanded, kernel, stride, True, t, self.dtype, name="depth_conv")(y, h)
    y = DynamicReLU(name="depth_act")(batch_norm("depth_norm", train)(y).astype(self.dtype), h)
    y = (y * nn.sigmoid(gf) * nn.sigmoid(gt)).astype(self.dtype)  # coordinate attention
    y = DynamicConv(out, temperature=t, dtype=self.dtype, name="proj_conv")(y, h)
    y = batch_norm("proj_norm", train)(y).astype(self.dtype)
    return (y + x).astype(self.dtype) if stride == 1 and inp == out else y


class _Layers(nn.Module):
  config: EfficientAtConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    cfg = self.config
    for i, spec in enumerate(cfg.blocks):
      x = DynamicBlock(spec, cfg.width_mult, cfg.temperature, self.dtype, name=str(i))(x, train=train)
    return x


class EfficientAtDynamic(nn.Module):
  """EfficientAT `dymn*` encoder; call and outputs as `EfficientAtMobileNet`."""

  config: EfficientAtConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, features: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    cfg = self.config
    if not cfg.dynamic:
      raise ValueError(f"{cfg.variant} is not a dynamic MobileNet: build it with EfficientAtMobileNet")
    x = as_image(features, cfg, self.dtype)
    x = ConvNormAct(cfg.blocks[0][0], 3, 2, dtype=self.dtype, name="in_c")(x, train=train)
    x = _Layers(cfg, self.dtype, name="layers")(x, train=train)
    x = ConvNormAct(cfg.pooled_dim, 1, dtype=self.dtype, name="out_c")(x, train=train)
    return pool_and_embed(x, cfg, self.dtype)


def efficientat_encoder(
  config: EfficientAtConfig, *, dtype: Any = jnp.float32, name: str | None = None
) -> nn.Module:
  """The encoder module for an `EfficientAtConfig`: `EfficientAtDynamic` for dymn*, else `EfficientAtMobileNet`."""
  cls = EfficientAtDynamic if config.dynamic else EfficientAtMobileNet
  return cls(config, dtype=dtype, name=name)
