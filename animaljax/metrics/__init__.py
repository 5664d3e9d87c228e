"""Evaluation metrics on the host: numpy functions, one file per family.

classification.py  confusion matrix, precision/recall/F1, average precision, `classification_report`
fewshot.py         nearest-prototype episode accuracy and its 95% interval
multilabel.py      multi-label AP/mAP, padded cmAP, ROC-AUC and d', lwlrap, per-class thresholds, `multilabel_report`
plots.py           the PNG charts of a classification report (confusion matrix, per-class bars), as bytes

The classification API is re-exported here (`metrics.classification_report`, ...), as the trainers use it, and
so is the multi-label one, except its `average_precision(targets, scores)`: `metrics.average_precision` stays the
classification one, `(scores, targets)`; the multi-label one is `metrics.multilabel.average_precision`.
"""

from animaljax.metrics.classification import (
  average_precision,
  classification_report,
  confusion_matrix,
  precision_recall_f1,
)
from animaljax.metrics.fewshot import mean_and_ci95, nearest_prototype_accuracy
from animaljax.metrics.multilabel import (
  choose_thresholds,
  d_prime,
  lwlrap,
  mean_average_precision,
  mean_roc_auc,
  micro_average_precision,
  multilabel_report,
  padded_cmap,
  pr_curve,
  roc_auc,
  threshold_report,
)

__all__ = [
  "average_precision",
  "choose_thresholds",
  "classification_report",
  "confusion_matrix",
  "d_prime",
  "lwlrap",
  "mean_and_ci95",
  "mean_average_precision",
  "mean_roc_auc",
  "micro_average_precision",
  "multilabel_report",
  "nearest_prototype_accuracy",
  "padded_cmap",
  "pr_curve",
  "precision_recall_f1",
  "roc_auc",
  "threshold_report",
]
