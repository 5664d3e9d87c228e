"""Evaluation metrics on the host: numpy functions of labels, predictions and scores.

`classification_report` gives everything the trainer writes to `metrics.json`: accuracy, macro and weighted
F1, per-class precision/recall/F1/support, the confusion matrix and (from scores) the mean average precision.
A class with no predictions has precision 0, one with no examples recall 0 (scikit-learn's `zero_division=0`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
  """(n,) true and (n,) predicted class ids -> (classes, classes) int64 counts, rows true, columns predicted."""
  labels, preds = np.asarray(labels, np.int64), np.asarray(preds, np.int64)
  if labels.shape != preds.shape:
    raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ")
  bad = (labels < 0) | (labels >= num_classes) | (preds < 0) | (preds >= num_classes)
  if bad.any():
    raise ValueError(f"class ids outside [0, {num_classes}): {np.unique(np.r_[labels[bad], preds[bad]])}")
  return np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(num_classes, num_classes)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def precision_recall_f1(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Per-class precision, recall, F1 and support (true count) from a confusion matrix; each (classes,)."""
  tp = np.diag(cm).astype(np.float64)
  predicted, support = cm.sum(axis=0), cm.sum(axis=1)
  precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
  f1 = _safe_div(2 * precision * recall, precision + recall)
  return precision, recall, f1, support


def average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
  """Per-class average precision (area under the precision-recall steps, as scikit-learn).

  Args:
    scores: (n, classes) any monotone score (logits or probabilities).
    targets: (n, classes) 0/1 relevance (one-hot or multi-hot).
  Returns:
    (classes,) AP; NaN for a class without positives.
  """
  scores, targets = np.asarray(scores, np.float64), np.asarray(targets) > 0
  out = np.full(scores.shape[1], np.nan)
  for c in range(scores.shape[1]):
    positives = targets[:, c].sum()
    if positives == 0:
      continue
    order = np.argsort(-scores[:, c], kind="stable")
    s, t = scores[order, c], targets[order, c]
    # Tied scores form one threshold: evaluate precision/recall only at the last element of each tie group.
    last = np.r_[s[1:] != s[:-1], True]
    tp = np.cumsum(t)[last]
    seen = (np.arange(len(s)) + 1)[last]
    recall = tp / positives
    precision = tp / seen
    out[c] = np.sum(np.diff(np.r_[0.0, recall]) * precision)
  return out


def classification_report(
  labels: np.ndarray,
  scores: np.ndarray,
  class_names: Sequence[str],
) -> dict[str, Any]:
  """Single-label evaluation of `scores` (n, classes) against `labels` (n,).

  Returns:
    `{"num_examples", "accuracy", "macro_f1", "weighted_f1", "mAP", "per_class": {name: {"precision",
    "recall", "f1", "support", "ap"}}, "confusion_matrix": list of rows}` with plain Python numbers.
  """
  labels, scores = np.asarray(labels), np.asarray(scores)
  num_classes = len(class_names)
  if scores.ndim != 2 or scores.shape != (labels.shape[0], num_classes):
    raise ValueError(f"scores {scores.shape} do not match {labels.shape[0]} labels x {num_classes} classes")
  cm = confusion_matrix(labels, scores.argmax(axis=-1), num_classes)
  precision, recall, f1, support = precision_recall_f1(cm)
  ap = average_precision(scores, np.eye(num_classes)[labels])
  n = int(support.sum())
  present = (support > 0) | (cm.sum(axis=0) > 0)
  return {
    "num_examples": n,
    "accuracy": float(np.trace(cm) / max(n, 1)),
    # Macro over the classes that occur in labels or predictions, as scikit-learn's `f1_score(average="macro")`.
    "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    "weighted_f1": float(np.sum(f1 * support) / max(n, 1)),
    "mAP": float(np.nanmean(ap)) if (support > 0).any() else 0.0,
    "per_class": {
      name: {
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "f1": float(f1[i]),
        "support": int(support[i]),
        "ap": None if np.isnan(ap[i]) else float(ap[i]),
      }
      for i, name in enumerate(class_names)
    },
    "confusion_matrix": cm.tolist(),
  }
