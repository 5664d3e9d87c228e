"""PANNs' pooling tails and decision-level (sound event detection) heads (Kong et al. 2020, `pytorch/models.py`).

Every PANNs CNN (`cnn14.Cnn`, `wavegram.Wavegram`) ends in the last conv block's map averaged over mel,
`frames (batch, T', C)`, one step per `frame_ratio` front-end frames (32 for CNN14). `tail` turns it into the
embedding; its `head` (the encoder config's `head` field) picks PANNs' model:

  clip          Cnn14: max + mean over time -> dropout -> relu(fc1) = embedding; the classifier's `head` Dense
                gives the clip logits.
  decision_max  Cnn14_DecisionLevelMax: per step, max_pool1d(3) + avg_pool1d(3) over time (stride 1, padding 1)
                -> dropout -> relu(fc1) (`segment_embeddings` (batch, T', D)); the `head` Dense per step gives
                segment logits z; clip-wise output max_t sigmoid(z) = sigmoid(max_t z), so logits = max_t z.
  decision_att  Cnn14_DecisionLevelAtt: as decision_max up to fc1; then `head` = PANNs' `att_block`:
                softmax_t(clamp(att(x), -10, 10)) weighting sigmoid(cla(x)); clip-wise output p = sum_t w_t
                sigmoid(cla_t), returned as logits log(p / (1 - p)) (p clamped to [1e-7, 1 - 1e-7]) so that
                sigmoid(logits) = p and binary cross-entropy on the logits is PANNs' loss on the clip-wise
                output.

Decision heads also return `framewise` (batch, frames, classes): the segment probabilities repeated
`frame_ratio` times and padded with the last one to the front end's frame count (PANNs' `interpolate` and
`pad_framewise_output`), i.e. at the front end's frame rate (hop 10 ms for every PANNs preset). Their
`embedding` (not in PANNs) is the mean over time of `segment_embeddings`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

HEADS = ("clip", "decision_max", "decision_att")
_KERNEL_INIT = nn.initializers.xavier_uniform()
_PROB_EPS = 1e-7


def smooth_time(x: jnp.ndarray) -> jnp.ndarray:
  """`(batch, T, C) -> (batch, T, C)`: torch's `max_pool1d(3, 1, 1) + avg_pool1d(3, 1, 1)` over time.

  Max pooling pads with -inf; average pooling pads with zeros and always divides by 3 (torch's
  `count_include_pad=True`), so the first and last steps are averaged with a zero.
  """
  neg = jnp.pad(x, ((0, 0), (1, 1), (0, 0)), constant_values=-jnp.inf)
  zero = jnp.pad(x, ((0, 0), (1, 1), (0, 0)))
  t = x.shape[1]
  mx = jnp.maximum(jnp.maximum(neg[:, :t], neg[:, 1 : t + 1]), neg[:, 2 : t + 2])
  avg = (zero[:, :t] + zero[:, 1 : t + 1] + zero[:, 2 : t + 2]) / 3.0
  return mx + avg


def tail(
  frames: jnp.ndarray, *, embed_dim: int, head: str, drop: bool, dtype: Any, mask: jnp.ndarray | None = None
) -> dict[str, jnp.ndarray]:
  """PANNs' pooling + `fc1`, built inside the calling compact module (so `fc1` is the caller's child).

  Args:
    frames: `(batch, T', C)` the last conv block averaged over mel.
    embed_dim: width of `fc1`; head: one of HEADS; drop: dropout on (train mode and the config's dropout).
    mask: optional `(batch, T')` bool, the steps to pool over (the clip head only; at least one per row): the
      max and the mean over time then see only a clip's own frames, not the padding after it.
  Returns:
    `{"embedding": (batch, D), "frame_embeddings": frames}` plus, for decision heads, `"segment_embeddings"`
    `(batch, T', D)`.
  """
  if head not in HEADS:
    raise ValueError(f"unknown head {head!r}; valid: {HEADS}")
  fc1 = nn.Dense(embed_dim, kernel_init=_KERNEL_INIT, dtype=dtype, param_dtype=jnp.float32, name="fc1")
  if mask is not None and head != "clip":
    raise ValueError(f"masked pooling applies to the clip head, not {head!r}")
  if head == "clip":
    if mask is None:
      x = jnp.max(frames, axis=1) + jnp.mean(frames, axis=1)
    else:
      keep = mask[..., None]
      count = jnp.maximum(jnp.sum(keep, axis=1), 1).astype(frames.dtype)
      x = jnp.max(jnp.where(keep, frames, jnp.finfo(frames.dtype).min), axis=1)
      x = x + jnp.sum(jnp.where(keep, frames, 0), axis=1) / count
    x = nn.Dropout(0.5, deterministic=not drop)(x)
    return {"embedding": nn.relu(fc1(x)), "frame_embeddings": frames}
  x = smooth_time(frames.astype(jnp.float32)).astype(frames.dtype)
  x = nn.Dropout(0.5, deterministic=not drop)(x)
  segments = nn.relu(fc1(x))
  return {"embedding": jnp.mean(segments, axis=1), "frame_embeddings": frames, "segment_embeddings": segments}


def upsample_frames(x: jnp.ndarray, ratio: int, frames: int) -> jnp.ndarray:
  """`(batch, T', C) -> (batch, frames, C)`: each step repeated `ratio` times, then the last value repeated up
  to `frames` (PANNs' `interpolate` + `pad_framewise_output`); cut to `frames` if longer."""
  up = jnp.repeat(x, ratio, axis=1)
  if up.shape[1] >= frames:
    return up[:, :frames]
  return jnp.concatenate([up, jnp.repeat(up[:, -1:], frames - up.shape[1], axis=1)], axis=1)


class AttBlock(nn.Module):
  """PANNs' `AttBlock(activation="sigmoid")`: 1x1 convs `att` and `cla` (here Dense over channels).

  `(batch, T', D) -> (clip probabilities (batch, C), segment probabilities (batch, T', C))`. PANNs' `bn_att`
  is declared but never used in its forward, so it has no counterpart here (the converter skips it).
  """

  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    def conv(name):
      return nn.Dense(
        self.num_classes, kernel_init=_KERNEL_INIT, dtype=self.dtype, param_dtype=jnp.float32, name=name
      )

    att = jnp.clip(conv("att")(x).astype(jnp.float32), -10.0, 10.0)
    weights = nn.softmax(att, axis=1)
    cla = nn.sigmoid(conv("cla")(x).astype(jnp.float32))
    return jnp.sum(weights * cla, axis=1), cla


def decision_head(
  segments: jnp.ndarray, *, head: str, num_classes: int, ratio: int, frames: int, dtype: Any
) -> tuple[jnp.ndarray, jnp.ndarray]:
  """The decision-level head, built inside the calling compact module under the name `head`.

  Args:
    segments: `(batch, T', D)` (after the dropout that follows fc1).
    head: "decision_max" or "decision_att"; ratio: front-end frames per step; frames: the front end's frames.
  Returns:
    `(logits (batch, C) fp32, framewise probabilities (batch, frames, C) fp32)`.
  """
  if head == "decision_max":
    z = nn.Dense(num_classes, dtype=dtype, param_dtype=jnp.float32, name="head")(segments).astype(jnp.float32)
    return jnp.max(z, axis=1), upsample_frames(nn.sigmoid(z), ratio, frames)
  if head == "decision_att":
    clip, seg = AttBlock(num_classes, dtype=dtype, name="head")(segments)
    p = jnp.clip(clip, _PROB_EPS, 1.0 - _PROB_EPS)
    return jnp.log(p) - jnp.log1p(-p), upsample_frames(seg, ratio, frames)
  raise ValueError(f"not a decision-level head: {head!r}; valid: {HEADS[1:]}")
