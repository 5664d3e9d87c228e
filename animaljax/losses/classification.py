"""Classification losses: pure jnp functions of logits and (soft) targets, one value per example.

Every loss takes `logits (batch, classes)` and float `targets (batch, classes)` (one-hot, label-smoothed,
mixup-mixed or multi-hot) and returns `(batch,)`, so the trainer can weight and mask examples (padding rows,
class weights) before averaging with `masked_mean`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LOSSES = ("softmax", "bce", "focal")


def one_hot(labels: jax.Array, num_classes: int) -> jax.Array:
  """(batch,) int -> (batch, classes) float32; labels outside [0, classes) (padding: -1) give all-zero rows."""
  return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)


def smooth_labels(targets: jax.Array, smoothing: float, *, multi_label: bool = False) -> jax.Array:
  """(batch, classes) -> `(1 - s) * targets + s / classes` (Szegedy et al. label smoothing); with `multi_label`
  each class is its own binary problem: `(1 - s) * targets + s / 2`."""
  if smoothing <= 0:
    return targets
  return targets * (1.0 - smoothing) + smoothing / (2 if multi_label else targets.shape[-1])


def softmax_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Single-label: `-sum_c t_c log softmax(logits)_c`; (batch, classes) x2 -> (batch,)."""
  return -jnp.sum(targets * jax.nn.log_softmax(logits.astype(jnp.float32)), axis=-1)


def sigmoid_binary_cross_entropy(
  logits: jax.Array, targets: jax.Array, pos_weight: jax.Array | None = None
) -> jax.Array:
  """Multi-label: mean over classes of the binary cross-entropy of `sigmoid(logits)`; -> (batch,).

  `pos_weight` (classes,) multiplies each class's positive term (torch's `BCEWithLogitsLoss(pos_weight=)`):
  the multi-label form of class weights. Written with log-sigmoids (`log(1 - sigmoid(x)) = log_sigmoid(-x)`)
  so large logits stay finite.
  """
  logits = logits.astype(jnp.float32)
  positive = targets * jax.nn.log_sigmoid(logits)
  if pos_weight is not None:
    positive = positive * pos_weight.astype(jnp.float32)
  per_class = -(positive + (1.0 - targets) * jax.nn.log_sigmoid(-logits))
  return jnp.mean(per_class, axis=-1)


def sigmoid_focal_loss(logits: jax.Array, targets: jax.Array, gamma: float = 2.0) -> jax.Array:
  """Multi-label focal loss (Lin et al. 2017, no alpha): mean over classes of optax's `sigmoid_focal_loss`,
  the binary cross-entropy scaled by `(1 - p_t)^gamma`; -> (batch,)."""
  import optax  # noqa: PLC0415 - only this loss needs it

  return jnp.mean(optax.sigmoid_focal_loss(logits.astype(jnp.float32), targets, gamma=gamma), axis=-1)


def softmax_focal_loss(logits: jax.Array, targets: jax.Array, gamma: float = 2.0) -> jax.Array:
  """Focal loss (Lin et al. 2017) on the softmax: `-sum_c t_c (1 - p_c)^gamma log p_c`; -> (batch,).

  `gamma = 0` is `softmax_cross_entropy`; larger gamma down-weights examples the model already gets right.
  """
  log_p = jax.nn.log_softmax(logits.astype(jnp.float32))
  return -jnp.sum(targets * (1.0 - jnp.exp(log_p)) ** gamma * log_p, axis=-1)


def loss_fn(name: str, *, focal_gamma: float = 2.0, multi_label: bool = False):
  """The per-example loss for a name in `LOSSES`: `(logits, targets) -> (batch,)`.

  With `multi_label` (independent classes, multi-hot targets) "bce" is the sigmoid BCE and "focal" the sigmoid
  focal loss; "softmax" is refused, since it makes the classes compete for one unit of probability.
  """
  if multi_label:
    if name == "bce":
      return sigmoid_binary_cross_entropy
    if name == "focal":
      return lambda logits, targets: sigmoid_focal_loss(logits, targets, focal_gamma)
    raise ValueError(
      f"train.loss={name!r} does not fit a multi-label pack (its classes are independent, several may be on "
      "at once): set train.loss=bce or train.loss=focal"
    )
  if name == "softmax":
    return softmax_cross_entropy
  if name == "bce":
    return sigmoid_binary_cross_entropy
  if name == "focal":
    return lambda logits, targets: softmax_focal_loss(logits, targets, focal_gamma)
  raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


def example_weights(targets: jax.Array, class_weights: jax.Array | None) -> jax.Array:
  """Per-example weight `sum_c t_c w_c` (a mixed example takes the mix of its classes' weights); (batch,)."""
  if class_weights is None:
    return jnp.ones(targets.shape[:1], jnp.float32)
  return targets @ class_weights.astype(jnp.float32)


def masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  """`sum(values * weights) / sum(weights)` over the batch; 0 when every weight is 0 (an all-padding batch)."""
  weights = weights.astype(jnp.float32)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def balanced_class_weights(counts: np.ndarray) -> np.ndarray:
  """`n / (classes * count_c)` (scikit-learn's "balanced"): a class with no examples gets weight 0."""
  counts = np.asarray(counts, np.float64)
  weights = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), 0.0)
  return weights.astype(np.float32)
