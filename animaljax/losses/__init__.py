"""Losses: pure jnp functions, one file per family.

classification.py  softmax / BCE / focal per-example losses, one-hot, label smoothing, class weights, masked mean
contrastive.py     NT-Xent (SimCLR)
prototypical.py    the prototypical-network loss (ProtoNet)

The classification API is re-exported here (`losses.one_hot`, `losses.loss_fn`, ...), as the trainers use it.
"""

from animaljax.losses.classification import (
  LOSSES,
  balanced_class_weights,
  example_weights,
  loss_fn,
  masked_mean,
  one_hot,
  sigmoid_binary_cross_entropy,
  sigmoid_focal_loss,
  smooth_labels,
  softmax_cross_entropy,
  softmax_focal_loss,
)
from animaljax.losses.contrastive import nt_xent
from animaljax.losses.prototypical import prototype_logits, prototypical_loss

__all__ = [
  "LOSSES",
  "balanced_class_weights",
  "example_weights",
  "loss_fn",
  "masked_mean",
  "nt_xent",
  "one_hot",
  "prototype_logits",
  "prototypical_loss",
  "sigmoid_binary_cross_entropy",
  "sigmoid_focal_loss",
  "smooth_labels",
  "softmax_cross_entropy",
  "softmax_focal_loss",
]
