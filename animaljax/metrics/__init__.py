"""Evaluation metrics on the host: numpy functions, one file per family.

classification.py  confusion matrix, precision/recall/F1, average precision, `classification_report`
fewshot.py         nearest-prototype episode accuracy and its 95% interval
plots.py           the PNG charts of a classification report (confusion matrix, per-class bars), as bytes

The classification API is re-exported here (`metrics.classification_report`, ...), as the trainers use it.
"""

from animaljax.metrics.classification import (
  average_precision,
  classification_report,
  confusion_matrix,
  precision_recall_f1,
)
from animaljax.metrics.fewshot import mean_and_ci95, nearest_prototype_accuracy

__all__ = [
  "average_precision",
  "classification_report",
  "confusion_matrix",
  "mean_and_ci95",
  "nearest_prototype_accuracy",
  "precision_recall_f1",
]
