"""A drop-in `lax.conv_general_dilated` for flax's `nn.Conv` whose gradients on CPU are computed by matmuls.

Measured on the 2-core CPU (`scripts/profile_cnn14.py` and an XLA trace of the CNN14 train step at 5 s, batch
4), two parts of XLA's CPU backward pass made JAX's CNN14 step slower than PyTorch's:

* the kernel gradient of a 3x3 convolution over a large map is 3-4x slower than its forward pass (230-300 ms
  vs 73 ms for CNN14's second 64-channel conv at 5 s, batch 4; PyTorch's oneDNN takes 40-61 ms). As matmuls
  over the flattened map, summed chunk by chunk so that each chunk's operands are still in cache when
  multiplied (`_kernel_grad_chunked`), it takes 72-80 ms (`scripts/profile_conv_grads.py`: all of CNN14's
  kernel gradients from 64 channels up, 684 ms with XLA's, 345 ms this way, 344 ms in PyTorch);
* the input gradient first copies the kernel reversed and transposed: 255 ms for the 3x3x2048x2048 kernel of
  block 6 (454 ms a step over blocks 5-6). Where the kernel outweighs the map, one `g @ W^T` matmul (the
  kernel read in place) plus adding each tap at its offset replaces it (273 ms -> 32 ms for that conv).

Together they took `scripts/bench_train.py --quick`'s CNN14 train step from behind eager PyTorch to 1.15-1.30x
its speed (`BENCHMARKS.md`). The forward pass is XLA's convolution unchanged, and on
other backends (GPU, TPU) both gradients are XLA's own too (`lax.platform_dependent`): only CPU programs change.
Only stride-1, undilated, ungrouped NHWC/HWIO convolutions with explicit padding take this path (every conv in
the PANNs CNNs); anything else goes to `lax.conv_general_dilated` unchanged. Gradients equal XLA's up to
float32 summation order (relative ~1e-5).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")


def _plain(dilation) -> bool:
  return dilation is None or all(d == 1 for d in dilation)


def conv_general_dilated(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
):
  """`lax.conv_general_dilated`'s signature and values; pass as `nn.Conv(..., conv_general_dilated=...)`."""
  simple = (
    lhs.ndim == 4
    and tuple(window_strides) == (1, 1)
    and _plain(lhs_dilation)
    and _plain(rhs_dilation)
    and feature_group_count == 1
    and batch_group_count == 1
    and preferred_element_type is None
    and not isinstance(padding, str)
    and all(int(p) >= 0 for pair in padding for p in pair)
    and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  )
  if not simple:
    return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers, feature_group_count,
      batch_group_count, precision, preferred_element_type,
    )  # fmt: skip
  return _conv(lhs, rhs, tuple(tuple(int(p) for p in pair) for pair in padding), precision)


def _xla_conv(x, w, padding, precision):
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC, precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, padding, precision):
  return _xla_conv(x, w, padding, precision)


def _conv_fwd(x, w, padding, precision):
  return _xla_conv(x, w, padding, precision), (x, w)


def _kernel_grad_stacked(x, g, padding, kernel_hw, precision):
  """(batch, H, W, I), (batch, H', W', O) -> (kh, kw, I, O) fp32, for small maps under a big kernel.

  The taps' shifted maps side by side, (kh*kw*I, B*H'*W') @ (B*H'*W', O) in one matmul whose output is
  already the kernel's layout (stacking nine 2048x2048 per-tap results cost 71 ms).
  """
  (kh, kw), (_, ho, wo, co) = kernel_hw, g.shape
  ci = x.shape[-1]
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  shifted = [xp[:, i : i + ho, j : j + wo].reshape(-1, ci) for i in range(kh) for j in range(kw)]
  return jnp.matmul(
    jnp.concatenate(shifted, axis=1).T, g.reshape(-1, co), precision=precision,
    preferred_element_type=jnp.float32,
  ).reshape(kh, kw, ci, co)  # fmt: skip


# Rows of the flattened map per step of `_kernel_grad_chunked`: its two operands together stay near this many
# bytes, which keeps them in cache between being built and being multiplied (measured on the 2-core CPU, 64 ->
# 64 channels on 501x64: chunks of 1024 rows 80 ms, 4096 rows 87 ms, 16384 rows 111 ms, unchunked 162 ms);
# and at least twice the rows it takes for the operands to outweigh the (kw*I, kh*O) sum carried from step to
# step (256 -> 256 on 125x16: 256-row chunks 56 ms, 1024 rows 42 ms).
_CHUNK_BYTES = 2 << 20


def _chunk_rows(width_in: int, width_out: int, rows: int) -> int:
  """Rows per chunk for operands `width_in` and `width_out` wide: a power of two in [256, 4096], <= rows'."""
  want = max(_CHUNK_BYTES / (4 * (width_in + width_out)), 2 * width_in * width_out / (width_in + width_out))
  chunk = min(max(256, 1 << round(math.log2(want))), 4096)
  return min(chunk, 1 << max(rows - 1, 1).bit_length())


def _kernel_grad_chunked(x, g, padding, kernel_hw, precision):
  """(batch, H, W, I), (batch, H', W', O) -> (kh, kw, I, O) fp32 as a loop of cache-sized matmuls.

  On the padded grid (batch, Hp, Wp) flattened to rows p, tap (i, j) pairs input row p + i*Wp + j with output
  row p. Let Xs[p] = (x[p], x[p + 1], ..., x[p + kw - 1]) (the horizontal taps side by side, kw*I wide) and
  Gs[p] = (g[p], g[p - Wp], ..., g[p - (kh - 1)*Wp]) (the vertical taps, kh*O wide; g zero off the output
  grid). Then Xs^T Gs, a (kw*I, kh*O) matrix, holds every tap's kernel gradient exactly once:
  its block (j, i) = sum_p x[p + j] g[p - i*Wp] = dW[i, j]. It is summed over chunks of rows, each chunk's
  Xs and Gs built from slices of the flat maps (a halo of kw - 1 and (kh - 1)*Wp rows) just before its matmul.
  """
  (kh, kw), (b, ho, wo, co) = kernel_hw, g.shape
  ci = x.shape[-1]
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  _, hp, wp, _ = xp.shape
  rows = b * hp * wp
  chunk = _chunk_rows(kw * ci, kh * co, rows)
  steps = -(-rows // chunk)
  halo = (kh - 1) * wp
  xf = jnp.pad(xp.reshape(rows, ci), ((0, steps * chunk - rows + kw - 1), (0, 0)))
  gf = jnp.pad(g, ((0, 0), (0, hp - ho), (0, wp - wo), (0, 0))).reshape(rows, co)
  gf = jnp.pad(gf, ((halo, steps * chunk - rows), (0, 0)))

  def step(k, acc):
    start = k * chunk
    xs = lax.dynamic_slice_in_dim(xf, start, chunk + kw - 1)
    gs = lax.dynamic_slice_in_dim(gf, start, chunk + halo)
    xs = jnp.concatenate([xs[j : j + chunk] for j in range(kw)], axis=1)
    gs = jnp.concatenate([gs[halo - i * wp : halo - i * wp + chunk] for i in range(kh)], axis=1)
    return acc + lax.dot_general(
      xs, gs, (((0,), (0,)), ((), ())), precision=precision, preferred_element_type=jnp.float32
    )

  acc = lax.fori_loop(0, steps, step, jnp.zeros((kw * ci, kh * co), jnp.float32))
  return acc.reshape(kw, ci, kh, co).transpose(2, 0, 1, 3)


def _input_grad_matmuls(g, w, padding, input_hw, precision):
  """(batch, H', W', O), (kh, kw, I, O) -> (batch, H, W, I) fp32 without transposing the kernel.

  One `g @ w^T` matmul (the kernel read as (kh * kw * I, O), a free reshape) gives every tap's contribution;
  the taps are then added at their offsets. XLA instead copies the kernel reversed and transposed first, which
  for CNN14's 3x3x2048x2048 kernel alone took 255 ms of a 2 s step.
  """
  kh, kw, ci, co = w.shape
  b, ho, wo, _ = g.shape
  t = lax.dot_general(
    g.reshape(-1, co), w.reshape(-1, co), (((1,), (1,)), ((), ())), precision=precision,
    preferred_element_type=jnp.float32,
  ).reshape(b, ho, wo, kh, kw, ci)  # fmt: skip
  out = jnp.zeros((b, ho + kh - 1, wo + kw - 1, ci), jnp.float32)
  for i in range(kh):
    for j in range(kw):
      out = out.at[:, i : i + ho, j : j + wo].add(t[:, :, :, i, j])
  (top, _), (left, _) = padding
  return out[:, top : top + input_hw[0], left : left + input_hw[1]]


def _kernel_heavy(w_shape, g_shape) -> bool:
  """Whether the kernel outweighs the output map (the matmul gradients' case)."""
  kh, kw, ci, _ = w_shape
  return kh * kw * ci > 4 * g_shape[0] * g_shape[1] * g_shape[2]


def kernel_grad_path(x_shape, w_shape, g_shape, padding) -> str:
  """How the CPU backward pass computes the kernel gradient: "stacked", "chunked" or "xla" (XLA's own).

  The chunked kernel gradient pays off from 64 channels on a map of >= 32 padded positions per channel
  (`scripts/profile_conv_grads.py`, XLA's vs chunked, batch 4: 64 -> 64 on 501x64 243 vs 77 ms, 128 -> 128 on
  250x32 88 vs 46 ms, 128 -> 256 on 125x16 32 vs 21 ms); with fewer channels or on smaller maps XLA's is as
  fast or faster (16 -> 32 on 250x32: 5.4 vs 8.7 ms; 256 -> 512 on 62x8: 26 vs 41 ms). Under a kernel that
  outweighs the map one stacked matmul beats both (1024 -> 2048 on 15x2: 38 vs XLA's 63 ms).
  """
  _, _, ci, co = w_shape
  (top, bottom), (left, right) = padding
  rows = x_shape[0] * (x_shape[1] + top + bottom) * (x_shape[2] + left + right)
  if min(ci, co) < 64:
    return "xla"
  if _kernel_heavy(w_shape, g_shape):
    return "stacked"
  return "chunked" if rows >= 32 * max(ci, co) else "xla"


def _grads_cpu(x, w, g, *, padding, precision):
  kh, kw, _, _ = w.shape
  xla = jax.vjp(lambda x, w: _xla_conv(x, w, padding, precision), x, w)[1]
  # The input gradient by matmuls pays off where the kernel outweighs the map (CNN14's blocks 5-6, 1024-2048
  # channels on 31x4 and 15x2 maps: 116-273 ms -> 17-39 ms); on large maps XLA's convolution is faster.
  if _kernel_heavy(w.shape, g.shape):
    dx = _input_grad_matmuls(g, w, padding, x.shape[1:3], precision).astype(x.dtype)
  else:
    dx = xla(g)[0]
  path = kernel_grad_path(x.shape, w.shape, g.shape, padding)
  if path == "stacked":
    dw = _kernel_grad_stacked(x, g, padding, (kh, kw), precision).astype(w.dtype)
  elif path == "chunked":
    dw = _kernel_grad_chunked(x, g, padding, (kh, kw), precision).astype(w.dtype)
  else:
    dw = xla(g)[1]
  return dx, dw


def _grads_xla(x, w, g, *, padding, precision):
  return jax.vjp(lambda x, w: _xla_conv(x, w, padding, precision), x, w)[1](g)


def _conv_bwd(padding, precision, residuals, g):
  x, w = residuals
  return lax.platform_dependent(
    x,
    w,
    g,
    cpu=functools.partial(_grads_cpu, padding=padding, precision=precision),
    default=functools.partial(_grads_xla, padding=padding, precision=precision),
  )


_conv.defvjp(_conv_fwd, _conv_bwd)
