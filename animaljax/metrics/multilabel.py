"""Multi-label evaluation on the host: numpy functions of `targets` (n, classes) and `scores` (n, classes).

`targets` hold 0/1 relevance (bool, int or float); `scores` any monotone score (probabilities or logits), where a
higher score means "more likely present". Every function validates both (2-D, equal shapes, 0/1 targets, finite
scores) and raises ValueError naming the problem.

Ranking metrics (no threshold):
  `average_precision` / `mean_average_precision`  per-class AP and its macro mean over classes with a positive
                                                  (the PANNs/AudioSet mAP)
  `padded_cmap`                                   BirdCLEF's padded class-mean AP
  `micro_average_precision`                       AP of all (example, class) pairs pooled
  `roc_auc` / `mean_roc_auc` / `d_prime`          per-class ROC-AUC, its macro mean and PANNs' d'
  `lwlrap`                                        DCASE 2019 task 2 label-weighted label-ranking AP
  `pr_curve`                                      one class's precision-recall curve (for the PNG charts)
Decisions at per-class thresholds:
  `choose_thresholds`                             thresholds fitted on a validation split (best F1 or a precision)
  `threshold_report`                              precision/recall/F1 at given thresholds, per class, micro, macro
`multilabel_report` gathers them into one JSON-serialisable dict.

Ties are handled as scikit-learn does: examples with equal scores cross a threshold together, so curves are
evaluated only at distinct scores. Every per-class function sorts once and uses cumulative sums, O(n log n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _check(targets: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Validated (n, classes) bool targets and float64 scores."""
  targets, scores = np.asarray(targets), np.asarray(scores)
  if targets.ndim != 2 or scores.ndim != 2:
    raise ValueError(
      f"targets {targets.shape} and scores {scores.shape} must both be 2-D (examples, classes)"
    )
  if targets.shape != scores.shape:
    raise ValueError(f"targets {targets.shape} and scores {scores.shape} differ in shape")
  if targets.shape[0] == 0 or targets.shape[1] == 0:
    raise ValueError(f"no examples or no classes: shape {targets.shape}")
  if targets.dtype != bool:
    if not np.issubdtype(targets.dtype, np.number):
      raise ValueError(f"targets must be numeric or bool, not {targets.dtype}")
    if not ((targets == 0) | (targets == 1)).all():
      raise ValueError("targets must be 0/1 (multi-hot); found other values")
  if not np.issubdtype(scores.dtype, np.number) or np.issubdtype(scores.dtype, np.complexfloating):
    raise ValueError(f"scores must be real numbers, not {scores.dtype}")
  scores = scores.astype(np.float64)
  if not np.isfinite(scores).all():
    raise ValueError(f"scores must be finite; found {int((~np.isfinite(scores)).sum())} NaN/inf values")
  return targets.astype(bool), scores


def _check_column(targets_c: np.ndarray, scores_c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Validated (n,) bool targets and float64 scores of one class."""
  targets_c, scores_c = np.asarray(targets_c), np.asarray(scores_c)
  if targets_c.ndim != 1 or scores_c.ndim != 1:
    raise ValueError(f"targets {targets_c.shape} and scores {scores_c.shape} of one class must both be 1-D")
  targets, scores = _check(targets_c[:, None], scores_c[:, None])
  return targets[:, 0], scores[:, 0]


def _counts_at_thresholds(
  targets_c: np.ndarray, scores_c: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One class's distinct scores, descending, with the true and false positives of `scores >= threshold`.

  Returns:
    `(thresholds, tp, fp)`, each (distinct scores,); tp/fp are int64 counts, non-decreasing.
  """
  order = np.argsort(-scores_c, kind="stable")
  s, t = scores_c[order], targets_c[order]
  # A tie group crosses the threshold together: keep the counts at the last element of each group.
  last = np.r_[s[1:] != s[:-1], True]
  tp = np.cumsum(t, dtype=np.int64)[last]
  fp = (np.arange(1, len(s) + 1) - np.cumsum(t, dtype=np.int64))[last]
  return s[last], tp, fp


def _binary_ap(targets_c: np.ndarray, scores_c: np.ndarray) -> float:
  """Step-wise AP of one class (scikit-learn's `average_precision_score`); NaN without positives."""
  _, tp, fp = _counts_at_thresholds(targets_c, scores_c)
  positives = tp[-1]
  if positives == 0:
    return math.nan
  recall_gain = np.diff(np.r_[0, tp]) / positives
  return float(np.sum(recall_gain * tp / (tp + fp)))


def _binary_auc(targets_c: np.ndarray, scores_c: np.ndarray) -> float:
  """Area under one class's ROC curve (trapezoids, so a tie counts one half); NaN with a single target value."""
  _, tp, fp = _counts_at_thresholds(targets_c, scores_c)
  positives, negatives = tp[-1], fp[-1]
  if positives == 0 or negatives == 0:
    return math.nan
  tp_prev = np.r_[0, tp[:-1]]
  return float(np.sum(np.diff(np.r_[0, fp]) * (tp + tp_prev)) / (2.0 * positives * negatives))


def _nanmean(values: np.ndarray) -> float:
  """Mean of the non-NaN values; NaN when there are none (no warning)."""
  values = values[~np.isnan(values)]
  return float(values.mean()) if values.size else math.nan


def average_precision(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Per-class average precision: the precision-recall steps summed over each class's distinct scores.

  Equal to scikit-learn's `average_precision_score(targets[:, c], scores[:, c])` for every class with a positive.
  Note the argument order (targets first), the reverse of `classification.average_precision(scores, targets)`.

  Args:
    targets: (n, classes) 0/1 relevance.
    scores: (n, classes) any monotone score.
  Returns:
    (classes,) float64 AP; NaN for a class without positives.
  """
  targets, scores = _check(targets, scores)
  return np.array([_binary_ap(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])


def mean_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
  """Macro mAP over the classes with at least one positive (the PANNs/AudioSet mAP); NaN if none has one."""
  return _nanmean(average_precision(targets, scores))


def padded_cmap(targets: np.ndarray, scores: np.ndarray, padding: int = 5) -> float:
  """BirdCLEF's padded class-mean AP.

  Appends `padding` rows whose targets and scores are all ones, then takes the macro AP over all classes:
  scikit-learn's `average_precision_score(padded_targets, padded_scores, average="macro")`. The padding gives every
  class a positive, so rare classes are defined and pulled towards 1. The padding score 1 presumes probabilities
  in [0, 1]; with logits the padded rows are not the top of the ranking and the metric is not BirdCLEF's.

  Args:
    targets: (n, classes) 0/1 relevance.
    scores: (n, classes) scores, probabilities for the BirdCLEF meaning.
    padding: rows of ones to append, >= 0. With 0, a class without positives counts as AP 0 (as scikit-learn).
  Returns:
    The mean over all classes.
  """
  targets, scores = _check(targets, scores)
  if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
    raise ValueError(f"padding must be an int >= 0, got {padding!r}")
  ones = np.ones((int(padding), targets.shape[1]))
  ap = average_precision(np.r_[targets, ones.astype(bool)], np.r_[scores, ones])
  return float(np.nan_to_num(ap, nan=0.0).mean())


def micro_average_precision(targets: np.ndarray, scores: np.ndarray) -> float:
  """AP of all (example, class) pairs pooled into one ranking (scikit-learn's `average="micro"`); NaN without
  any positive."""
  targets, scores = _check(targets, scores)
  return _binary_ap(targets.ravel(), scores.ravel())


def roc_auc(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Per-class area under the ROC curve (scikit-learn's `roc_auc_score` per column; a tied pair counts 1/2).

  Returns:
    (classes,) float64 AUC; NaN for a class whose targets are all 0 or all 1.
  """
  targets, scores = _check(targets, scores)
  return np.array([_binary_auc(targets[:, c], scores[:, c]) for c in range(targets.shape[1])])


def mean_roc_auc(targets: np.ndarray, scores: np.ndarray) -> float:
  """Macro ROC-AUC over the classes where it is defined (both target values present); NaN if none."""
  return _nanmean(roc_auc(targets, scores))


def d_prime(auc: float | np.ndarray) -> float | np.ndarray:
  """PANNs' sensitivity index d' = sqrt(2) * Phi^-1(auc), Phi the standard normal CDF.

  Args:
    auc: a ROC-AUC or an array of them, in [0, 1].
  Returns:
    A float for a scalar, else an array of the same shape; 0.5 -> 0, 1 -> inf, 0 -> -inf, NaN stays NaN.
  """
  from scipy.special import ndtri  # scipy (a librosa dependency) imported only here: it is slow to import

  values = np.asarray(auc, dtype=np.float64)
  if ((values < 0) | (values > 1)).any():
    raise ValueError(f"auc must lie in [0, 1], got {values[(values < 0) | (values > 1)]}")
  out = math.sqrt(2.0) * ndtri(values)
  return float(out) if out.ndim == 0 else out


def lwlrap(targets: np.ndarray, scores: np.ndarray) -> float:
  """DCASE 2019 task 2 label-weighted label-ranking average precision.

  For every positive (example, class) pair, the precision of the example's ranking of classes at that class: the
  positives among the classes scoring >= it, over all classes scoring >= it (ties count against, as
  scikit-learn). lwlrap is the mean over all positive pairs, so every positive label weighs the same. It equals
  `label_ranking_average_precision_score(targets, scores, sample_weight=targets.sum(1))` on the rows with a
  positive. Rows without positives do not count.

  Returns:
    lwlrap in (0, 1]; NaN when there is no positive at all.
  """
  targets, scores = _check(targets, scores)
  num_classes = targets.shape[1]
  order = np.argsort(-scores, axis=1, kind="stable")
  s, t = np.take_along_axis(scores, order, 1), np.take_along_axis(targets, order, 1)
  # Each element's tie group ends at `end`: the classes scoring >= it are positions 0..end of its sorted row.
  last = np.concatenate([s[:, 1:] != s[:, :-1], np.ones((len(s), 1), bool)], axis=1)
  end_if_last = np.where(last, np.arange(num_classes), num_classes)
  end = np.minimum.accumulate(end_if_last[:, ::-1], axis=1)[:, ::-1]
  positives_above = np.take_along_axis(np.cumsum(t, axis=1), end, 1)
  precision = positives_above / (end + 1)
  total = t.sum()
  return float(precision[t].sum() / total) if total else math.nan


def pr_curve(targets_c: np.ndarray, scores_c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One class's precision-recall curve, as scikit-learn's `precision_recall_curve` (no points dropped).

  Args:
    targets_c: (n,) 0/1 relevance of one class.
    scores_c: (n,) its scores.
  Returns:
    `(precision, recall, thresholds)`: thresholds are the distinct scores ascending, (k,); precision and recall,
    (k + 1,), are those of `scores >= thresholds[i]`, then the end point (precision 1, recall 0). Recall is 1
    everywhere for a class without positives (scikit-learn's convention).
  """
  targets_c, scores_c = _check_column(targets_c, scores_c)
  thresholds, tp, fp = _counts_at_thresholds(targets_c, scores_c)
  precision = tp / (tp + fp)
  recall = tp / tp[-1] if tp[-1] > 0 else np.ones(len(tp))
  return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1].copy()


def choose_thresholds(
  targets: np.ndarray,
  scores: np.ndarray,
  *,
  target_precision: float | None = None,
) -> np.ndarray:
  """Per-class decision thresholds fitted on a validation split; a class fires where `scores >= threshold`.

  The candidates are each class's distinct scores. By default the threshold maximises the class's F1 (ties: the
  highest threshold). With `target_precision`, it is the lowest threshold whose precision reaches the target,
  which maximises recall under that constraint; if no threshold reaches it, the one of maximum precision (ties:
  the lowest, for recall). A class without positives gets +inf: it never fires. One sort per class.

  Args:
    targets: (n, classes) 0/1 relevance of the validation split.
    scores: (n, classes) scores of the validation split.
    target_precision: None (best F1) or a precision in (0, 1].
  Returns:
    (classes,) float64 thresholds, +inf for a class without positives.
  """
  targets, scores = _check(targets, scores)
  if target_precision is not None and not 0.0 < target_precision <= 1.0:
    raise ValueError(f"target_precision must lie in (0, 1], got {target_precision}")
  out = np.full(targets.shape[1], np.inf)
  for c in range(targets.shape[1]):
    thresholds, tp, fp = _counts_at_thresholds(targets[:, c], scores[:, c])
    positives = tp[-1]
    if positives == 0:
      continue
    if target_precision is None:
      f1 = 2.0 * tp / (positives + tp + fp)  # 2PR/(P+R) with P = tp/(tp+fp), R = tp/positives
      out[c] = thresholds[np.argmax(f1)]  # first maximum = highest threshold
    else:
      precision = tp / (tp + fp)
      reached = np.flatnonzero(precision >= target_precision)
      if reached.size:
        out[c] = thresholds[reached[-1]]
      else:
        out[c] = thresholds[np.flatnonzero(precision == precision.max())[-1]]
  return out


def threshold_report(
  targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray | float
) -> dict[str, Any]:
  """Precision, recall and F1 of the decisions `scores >= thresholds`, per class and averaged.

  A class with no predictions has precision 0 and one without positives recall 0 (scikit-learn's
  `zero_division=0`).

  Args:
    targets: (n, classes) 0/1 relevance.
    scores: (n, classes) scores.
    thresholds: (classes,) per-class thresholds (as from `choose_thresholds`) or one for all.
  Returns:
    `{"precision", "recall", "f1": (classes,) float64, "support": (classes,) int64 positives, "micro": {"precision",
    "recall", "f1"}, "macro": {"precision", "recall", "f1"}}`. Micro pools all pairs; macro is the plain mean of
    the per-class values over the classes with support > 0 (NaN if there are none), macro F1 the mean of the
    per-class F1s (scikit-learn's).
  """
  targets, scores = _check(targets, scores)
  thresholds = np.asarray(thresholds, dtype=np.float64)
  if thresholds.ndim > 1 or (thresholds.ndim == 1 and thresholds.shape[0] != targets.shape[1]):
    raise ValueError(f"thresholds {thresholds.shape} do not match {targets.shape[1]} classes")
  if np.isnan(thresholds).any():
    raise ValueError("thresholds must not be NaN")
  preds = scores >= thresholds
  tp = (preds & targets).sum(0)
  predicted, support = preds.sum(0), targets.sum(0)

  def prf(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, ...]:
    tp = np.asarray(tp, np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=np.asarray(predicted) > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=np.asarray(support) > 0)
    denom = precision + recall
    return precision, recall, np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)

  precision, recall, f1 = prf(tp, predicted, support)
  micro = prf(tp.sum(), predicted.sum(), support.sum())
  present = support > 0
  return {
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "support": support.astype(np.int64),
    "micro": {"precision": float(micro[0]), "recall": float(micro[1]), "f1": float(micro[2])},
    "macro": {
      name: float(values[present].mean()) if present.any() else math.nan
      for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
    },
  }


def _json_float(value: float) -> float | None:
  """A plain float, or None for NaN/inf (which strict JSON cannot hold)."""
  value = float(value)
  return value if math.isfinite(value) else None


def multilabel_report(
  targets: np.ndarray,
  scores: np.ndarray,
  class_names: Sequence[str],
  thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
  """Multi-label evaluation of `scores` against `targets`, each (n, classes), as one JSON-serialisable dict.

  Args:
    targets: (n, classes) 0/1 relevance.
    scores: (n, classes) scores (probabilities for `cmAP_padded` to be BirdCLEF's).
    class_names: one name per class.
    thresholds: optional (classes,) decision thresholds (e.g. `choose_thresholds` on a validation split).
  Returns:
    `{"num_examples", "mAP", "cmAP_padded", "micro_AP", "roc_auc" (macro), "d_prime" (of the macro AUC), "lwlrap",
    "per_class": {name: {"AP", "roc_auc", "support"}}}`; with thresholds also the micro `"precision"`, `"recall"`,
    `"f1"`, the `"macro_f1"`, and per class `"precision"`, `"recall"`, `"f1"`, `"threshold"`. Numbers are plain
    Python ints and floats; undefined (NaN) and infinite values, such as the +inf threshold of a class without
    positives or the d' of an AUC of 1, are None.
  """
  targets, scores = _check(targets, scores)
  if len(class_names) != targets.shape[1]:
    raise ValueError(f"{len(class_names)} class names for {targets.shape[1]} classes")
  if len(set(class_names)) != len(class_names):
    raise ValueError("class names must be unique (they key per_class)")
  ap, auc = average_precision(targets, scores), roc_auc(targets, scores)
  macro_auc = _nanmean(auc)
  support = targets.sum(0)
  report: dict[str, Any] = {
    "num_examples": int(targets.shape[0]),
    "mAP": _json_float(_nanmean(ap)),
    "cmAP_padded": _json_float(padded_cmap(targets, scores)),
    "micro_AP": _json_float(micro_average_precision(targets, scores)),
    "roc_auc": _json_float(macro_auc),
    "d_prime": _json_float(d_prime(macro_auc)),
    "lwlrap": _json_float(lwlrap(targets, scores)),
  }
  per_class = {
    name: {"AP": _json_float(ap[i]), "roc_auc": _json_float(auc[i]), "support": int(support[i])}
    for i, name in enumerate(class_names)
  }
  if thresholds is not None:
    decisions = threshold_report(targets, scores, thresholds)
    thresholds = np.broadcast_to(np.asarray(thresholds, np.float64), (targets.shape[1],))
    report.update(
      precision=decisions["micro"]["precision"],
      recall=decisions["micro"]["recall"],
      f1=decisions["micro"]["f1"],
      macro_f1=_json_float(decisions["macro"]["f1"]),
    )
    for i, name in enumerate(class_names):
      per_class[name].update(
        precision=float(decisions["precision"][i]),
        recall=float(decisions["recall"][i]),
        f1=float(decisions["f1"][i]),
        threshold=_json_float(thresholds[i]),
      )
  report["per_class"] = per_class
  return report
