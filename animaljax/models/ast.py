"""Audio Spectrogram Transformer encoder (Gong et al. 2021, YuanGongND/ast `src/models/ast_models.py`).

A DeiT-style ViT over Kaldi fbank patches: 16x16 patches taken with stride (fstride, tstride) = (10, 10) so
they overlap, class and distillation tokens, learned positional embeddings, pre-norm blocks (timm `Block`,
LayerNorm eps 1e-6, exact GELU), a final LayerNorm, and `embedding = (x[:, 0] + x[:, 1]) / 2`.

Written with flax **linen**: parameters are plain nested dicts, so jit/donation/sharding, orbax, `jax.export`
and the AST checkpoint converter all work on pytrees with no split/merge step.

Parameter tree (the converter maps AST/timm keys onto exactly these names):
  `patch_embed/{kernel (16, 16, 1, D), bias}`, `cls_token (1, 1, D)`, `dist_token (1, 1, D)`,
  `pos_embed (1, 2 + f_dim * t_dim, D)`, `block{i}/{norm1, attn/{qkv, proj}, norm2, mlp/{fc1, fc2}}`, `norm`.
The patch kernel is HWIO with H = frequency, W = time (AST transposes its input to `(batch, 1, freq, time)`),
so a torch weight `(D, 1, kh, kw)` maps by `transpose(2, 3, 1, 0)`; tokens are in (freq-patch, time-patch)
row-major order like torch's `flatten(2)`.

Input length: the positional embedding is stored for the configured grid (`config.grid`). Input with another
number of frames is handled at call time by `resize_pos_embed`, AST's own rule: along each axis, a shorter grid
takes the centre of the stored one, a longer grid is a bilinear (align_corners=False) resize. Inputs shorter
than one patch are zero-padded (in normalised-feature space) to 16 frames.

Rematerialisation (`AstConfig.remat`, off by default): each transformer block is wrapped in `nn.remat` with a
`jax.checkpoint` policy from `REMAT_POLICIES`, so the backward pass recomputes what the policy does not save
instead of keeping every block's activations. The parameter tree and the outputs are unchanged (the names are
kept); only memory and step time move (`scripts/bench_train.py` measures the saved activations).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# size -> (embed_dim, depth, heads), the DeiT tiny/small/base shapes AST was released with.
SIZES: dict[str, tuple[int, int, int]] = {
  "tiny": (192, 12, 3),
  "small": (384, 12, 6),
  "base": (768, 12, 12),
}

_TRUNC_NORMAL = nn.initializers.truncated_normal(stddev=0.02)  # timm's init for tokens, pos_embed, linears

# remat name -> `jax.checkpoint_policies` member ("" = no remat). "nothing_saveable" keeps only each block's
# input (least memory, one extra forward of the blocks); "dots_saveable" also keeps the matmul outputs and
# recomputes the cheap elementwise ops around them (LayerNorm, GELU, softmax);
# "dots_with_no_batch_dims_saveable" keeps only the weight matmuls' outputs, not attention's (tokens x tokens).
REMAT_POLICIES: dict[str, Any] = {
  "": None,
  "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
  "dots_saveable": jax.checkpoint_policies.dots_saveable,
  "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@dataclasses.dataclass(frozen=True)
class AstConfig:
  """An AST encoder.

  Attributes:
    size: "tiny" | "small" | "base" -> (embed_dim, depth, heads) = (192, 12, 3), (384, 12, 6), (768, 12, 12).
    patch: patch side (16).
    fstride, tstride: patch strides along frequency and time (10 = AST's overlapping patches).
    input_frames: frames the stored positional embedding is laid out for (AST AudioSet: 1024).
    num_mel_bins: fbank bins (128).
    mlp_ratio: MLP hidden width / embed_dim.
    dropout: dropout after attention/MLP projections and on the embedded tokens (timm `drop_rate`).
    drop_path: stochastic-depth rate of the last block (timm: linear from 0 over the blocks).
    depth: overrides the size's number of blocks (tests use 2).
    remat: "" (off) or a key of `REMAT_POLICIES`: rematerialise each block's activations in the backward pass.
  """

  size: Literal["tiny", "small", "base"] = "base"
  patch: int = 16
  fstride: int = 10
  tstride: int = 10
  input_frames: int = 1024
  num_mel_bins: int = 128
  mlp_ratio: int = 4
  dropout: float = 0.0
  drop_path: float = 0.0
  depth: int | None = None
  remat: str = ""

  def __post_init__(self):
    if self.size not in SIZES:
      raise ValueError(f"unknown AST size {self.size!r}; valid: {sorted(SIZES)}")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"unknown AST remat policy {self.remat!r}; valid: {sorted(REMAT_POLICIES)}")

  @property
  def embed_dim(self) -> int:
    return SIZES[self.size][0]

  @property
  def num_layers(self) -> int:
    return self.depth if self.depth is not None else SIZES[self.size][1]

  @property
  def num_heads(self) -> int:
    return SIZES[self.size][2]

  @property
  def grid(self) -> tuple[int, int]:
    """(f_dim, t_dim) patch grid of the stored positional embedding."""
    return patch_grid(self.num_mel_bins, self.input_frames, self.patch, self.fstride, self.tstride)


def patch_grid(
  bins: int, frames: int, patch: int = 16, fstride: int = 10, tstride: int = 10
) -> tuple[int, int]:
  """Number of patches along frequency and time for a `(frames, bins)` fbank: `(bins - patch) // fstride + 1`."""
  return (bins - patch) // fstride + 1, (max(frames, patch) - patch) // tstride + 1


def resize_pos_embed(
  pos_embed: jnp.ndarray, old_grid: tuple[int, int], new_grid: tuple[int, int], num_prefix_tokens: int = 2
) -> jnp.ndarray:
  """Adapts a positional embedding to another patch grid with AST's rule.

  Args:
    pos_embed: `(1, num_prefix_tokens + f * t, D)` for `old_grid = (f, t)`; the prefix (cls, dist) rows are
      kept as they are.
    old_grid, new_grid: `(f_dim, t_dim)` patch grids.
  Returns:
    `(1, num_prefix_tokens + f' * t', D)`. Along each axis independently: equal sizes are left unchanged, a
    smaller size takes the centre `[old // 2 - new // 2 : ... + new]` (AST's cut), a larger size is a linear
    resize with half-pixel centres (torch `interpolate(mode="bilinear", align_corners=False)`).
  """
  old_grid, new_grid = tuple(old_grid), tuple(new_grid)
  if old_grid == new_grid:
    return pos_embed
  prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
  dim = pos_embed.shape[-1]
  if grid.shape[1] != old_grid[0] * old_grid[1]:
    raise ValueError(
      f"pos_embed has {grid.shape[1]} patch rows, grid {old_grid} needs {old_grid[0] * old_grid[1]}"
    )
  grid = grid.reshape(old_grid[0], old_grid[1], dim)
  for axis, (old, new) in enumerate(zip(old_grid, new_grid, strict=True)):
    if new < old:
      start = old // 2 - new // 2
      grid = jax.lax.slice_in_dim(grid, start, start + new, axis=axis)
    elif new > old:
      shape = list(grid.shape)
      shape[axis] = new
      grid = jax.image.resize(grid, tuple(shape), method="linear", antialias=False)
  grid = grid.reshape(1, new_grid[0] * new_grid[1], dim).astype(pos_embed.dtype)
  return jnp.concatenate([prefix, grid], axis=1)


class Attention(nn.Module):
  """timm multi-head self-attention with one fused `qkv` Dense (output laid out [3][heads][head_dim])."""

  dim: int
  num_heads: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    batch, tokens, _ = x.shape
    head_dim = self.dim // self.num_heads
    dense = dict(dtype=self.dtype, param_dtype=jnp.float32, kernel_init=_TRUNC_NORMAL)
    qkv = nn.Dense(3 * self.dim, name="qkv", **dense)(x).reshape(batch, tokens, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (batch, tokens, heads, head_dim)
    # XLA's implementation takes logits and softmax in fp32 for bf16 inputs; scale = head_dim ** -0.5 as timm.
    y = jax.nn.dot_product_attention(q, k, v).reshape(batch, tokens, self.dim)
    y = nn.Dense(self.dim, name="proj", **dense)(y)
    return nn.Dropout(self.dropout, deterministic=not train)(y)


class Mlp(nn.Module):
  """timm Mlp: fc1 -> exact (erf) GELU -> fc2."""

  hidden: int
  dropout: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, *, train: bool) -> jnp.ndarray:
    dense = dict(dtype=self.dtype, param_dtype=jnp.float32, kernel_init=_TRUNC_NORMAL)
    out = x.shape[-1]
    x = nn.gelu(nn.Dense(self.hidden, name="fc1", **dense)(x), approximate=False)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(out, name="fc2", **dense)(x)
    return nn.Dropout(self.dropout, deterministic=not train)(x)


class Block(nn.Module):
  """Pre-norm transformer block: `x + attn(norm1(x))`, then `x + mlp(norm2(x))`, with per-sample drop path."""

  dim: int
  num_heads: int
  mlp_ratio: int = 4
  dropout: float = 0.0
  drop_path: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
    # `train` may be positional: `nn.remat` can mark only positional arguments static.
    norm = dict(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32)
    # Stochastic depth drops a whole residual branch per sample: a dropout mask shared over tokens and channels.
    drop_path = nn.Dropout(self.drop_path, broadcast_dims=(1, 2), deterministic=not train)
    y = Attention(self.dim, self.num_heads, self.dropout, self.dtype, name="attn")(
      nn.LayerNorm(name="norm1", **norm)(x), train=train
    )
    x = x + drop_path(y)
    y = Mlp(self.dim * self.mlp_ratio, self.dropout, self.dtype, name="mlp")(
      nn.LayerNorm(name="norm2", **norm)(x), train=train
    )
    return x + drop_path(y)


class Ast(nn.Module):
  """AST encoder.

  Call: `fbank (batch, frames, bins) float -> {"embedding": (batch, D), "tokens": (batch, 2 + f * t, D)}`,
  `tokens` being the output of the final norm. Needs the "dropout" rng in train mode only when
  `config.dropout` or `config.drop_path` is non-zero.
  """

  config: AstConfig
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, fbank: jnp.ndarray, *, train: bool = False) -> dict[str, jnp.ndarray]:
    cfg = self.config
    dim = cfg.embed_dim
    if fbank.shape[-1] != cfg.num_mel_bins:
      raise ValueError(f"AST expects {cfg.num_mel_bins} fbank bins, got input {fbank.shape}")
    if fbank.shape[1] < cfg.patch:
      fbank = jnp.pad(fbank, ((0, 0), (0, cfg.patch - fbank.shape[1]), (0, 0)))
    x = jnp.swapaxes(fbank, 1, 2)[..., None].astype(self.dtype)  # (batch, bins, frames, 1)
    x = nn.Conv(
      dim,
      (cfg.patch, cfg.patch),
      strides=(cfg.fstride, cfg.tstride),
      padding="VALID",
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name="patch_embed",
    )(x)
    batch, f_dim, t_dim, _ = x.shape
    x = x.reshape(batch, f_dim * t_dim, dim)

    cls_token = self.param("cls_token", _TRUNC_NORMAL, (1, 1, dim), jnp.float32)
    dist_token = self.param("dist_token", _TRUNC_NORMAL, (1, 1, dim), jnp.float32)
    num_patches = int(np.prod(cfg.grid))
    pos_embed = self.param("pos_embed", _TRUNC_NORMAL, (1, num_patches + 2, dim), jnp.float32)
    pos_embed = resize_pos_embed(pos_embed, cfg.grid, (f_dim, t_dim))

    tokens = jnp.broadcast_to(jnp.concatenate([cls_token, dist_token], axis=1), (batch, 2, dim))
    x = jnp.concatenate([tokens.astype(self.dtype), x], axis=1) + pos_embed.astype(self.dtype)
    x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
    depth = cfg.num_layers
    # A Python bool cannot be traced by jax.checkpoint: `train` (argument 2, counting self) stays static.
    block = nn.remat(Block, static_argnums=(2,), policy=REMAT_POLICIES[cfg.remat]) if cfg.remat else Block
    for i in range(depth):
      rate = cfg.drop_path * i / max(depth - 1, 1)  # timm: linspace(0, drop_path, depth)
      x = block(dim, cfg.num_heads, cfg.mlp_ratio, cfg.dropout, rate, self.dtype, name=f"block{i}")(x, train)
    x = nn.LayerNorm(epsilon=1e-6, dtype=self.dtype, param_dtype=jnp.float32, name="norm")(x)
    return {"embedding": (x[:, 0] + x[:, 1]) / 2, "tokens": x}
