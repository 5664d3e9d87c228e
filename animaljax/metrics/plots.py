"""PNG charts of a `classification_report` (the confusion matrix and per-class precision / recall / F1 bars) and
of a `multilabel_report` (per-class AP bars and precision-recall curves).

The trainer (`training.report.write_charts`) and `evaluate` (`inference.evaluate`) draw the same charts. Figures
are matplotlib `Figure`s rendered on the Agg canvas (no pyplot: no global state, no display, safe in any
thread), and every function returns the PNG as bytes: metrics is the lowest layer and writes no file, so the
caller writes them whole or not at all (`data.atomic.write_bytes`), and a reader (the demo) never sees half a PNG.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class.png"
PER_CLASS_AP_PNG = "per_class_ap.png"  # multi-label
PR_CURVES_PNG = "pr_curves.png"  # multi-label
_MAX_ANNOTATED = 20  # counts are written in the cells up to this many classes; beyond, they are unreadable


def _png(fig) -> bytes:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
  return buf.getvalue()


def confusion_matrix_png(
  cm: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], title: str = ""
) -> bytes:
  """A heat map of `cm` (classes, classes), rows true, columns predicted, coloured by row-normalised rate.

  Each row is divided by its true count (recall on the diagonal), so rare and common classes read alike;
  the raw counts are written in the cells for up to 20 classes. A row without examples stays blank (0).

  Args:
    cm: (classes, classes) counts; class_names: the `classes` names; title: default "confusion matrix (n ...)".
  Returns:
    The chart as PNG bytes. Raises ValueError when `cm` and the names disagree.
  """
  from matplotlib.figure import Figure

  cm = np.asarray(cm, np.int64)
  k = len(class_names)
  if cm.shape != (k, k):
    raise ValueError(f"confusion matrix {cm.shape} does not match {k} class names")
  totals = cm.sum(axis=1, keepdims=True)
  rate = np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)
  side = min(max(4.0, 0.55 * k + 2.5), 40.0)
  fig = Figure(figsize=(side + 1.2, side))
  ax = fig.add_subplot()
  image = ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
  ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
  ax.set_yticks(range(k), labels=class_names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title or f"confusion matrix ({int(cm.sum())} examples)")
  if k <= _MAX_ANNOTATED:
    for i in range(k):
      for j in range(k):
        if cm[i, j]:
          colour = "white" if rate[i, j] > 0.5 else "black"  # readable on dark and light cells
          ax.text(j, i, str(cm[i, j]), ha="center", va="center", color=colour, fontsize=9)
  return _png(fig)


def per_class_png(per_class: Mapping[str, Mapping[str, float]], title: str = "") -> bytes:
  """Grouped bars of precision, recall and F1 for each class (`per_class` as `classification_report`'s);
  returns PNG bytes."""
  from matplotlib.figure import Figure

  names = list(per_class)
  k = len(names)
  x = np.arange(k)
  fig = Figure(figsize=(min(max(6.0, 0.6 * k + 2.0), 60.0), 4.5))
  ax = fig.add_subplot()
  width = 0.27
  for offset, key in zip((-width, 0.0, width), ("precision", "recall", "f1"), strict=True):
    ax.bar(x + offset, [per_class[n][key] for n in names], width, label=key)
  ax.set_xticks(x, labels=[f"{n}\n(n={per_class[n].get('support', '?')})" for n in names], rotation=45,
                ha="right", rotation_mode="anchor")  # fmt: skip
  ax.set_ylim(0.0, 1.05)
  ax.set_ylabel("score")
  ax.grid(axis="y", alpha=0.3)
  ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never hides a bar
  ax.set_title(title or "per-class precision / recall / F1")
  return _png(fig)


def report_charts(report: Mapping, title: str = "") -> dict[str, bytes]:
  """Both charts of a `classification_report`: `{CONFUSION_PNG: png, PER_CLASS_PNG: png}` (file name -> bytes).

  Args:
    report: as `metrics.classification_report` returns; title: above both (default: each chart's own).
  """
  names = list(report["per_class"])
  return {
    CONFUSION_PNG: confusion_matrix_png(report["confusion_matrix"], names, title),
    PER_CLASS_PNG: per_class_png(report["per_class"], title),
  }


def per_class_ap_png(per_class: Mapping[str, Mapping[str, float | None]], title: str = "") -> bytes:
  """Bars of each class's average precision (`multilabel_report`'s `per_class`), with its positive count; a
  class without positives (AP undefined) shows no bar. Returns PNG bytes."""
  from matplotlib.figure import Figure

  names = list(per_class)
  k = len(names)
  fig = Figure(figsize=(min(max(6.0, 0.5 * k + 2.0), 60.0), 4.5))
  ax = fig.add_subplot()
  values = [per_class[n].get("AP") for n in names]
  ax.bar(np.arange(k), [v if v is not None else 0.0 for v in values], 0.7)
  ax.set_xticks(np.arange(k), labels=[f"{n}\n(n={per_class[n].get('support', '?')})" for n in names],
                rotation=45, ha="right", rotation_mode="anchor")  # fmt: skip
  ax.set_ylim(0.0, 1.05)
  ax.set_ylabel("average precision")
  ax.grid(axis="y", alpha=0.3)
  ax.set_title(title or "per-class average precision")
  return _png(fig)


def pr_curves_png(
  targets: np.ndarray, scores: np.ndarray, class_names: Sequence[str], title: str = ""
) -> bytes:
  """Precision-recall curves, one per class with positives (`metrics.multilabel.pr_curve`), in one chart
  (a grid of panels beyond 12 classes). Returns PNG bytes."""
  from matplotlib.figure import Figure

  from animaljax.metrics.multilabel import pr_curve

  targets, scores = np.asarray(targets) > 0, np.asarray(scores, np.float64)
  shown = [c for c in range(targets.shape[1]) if targets[:, c].any()]
  per_panel = 12
  panels = max(1, -(-len(shown) // per_panel))
  cols = min(panels, 3)
  rows = -(-panels // cols)
  fig = Figure(figsize=(5.0 * cols + 2.0, 4.2 * rows))
  for p in range(panels):
    ax = fig.add_subplot(rows, cols, p + 1)
    for c in shown[p * per_panel : (p + 1) * per_panel]:
      precision, recall, _ = pr_curve(targets[:, c], scores[:, c])
      ax.plot(recall, precision, drawstyle="steps-post", label=class_names[c], linewidth=1.2)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
  fig.suptitle(title or "precision-recall per class")
  return _png(fig)


def multilabel_charts(
  report: Mapping, targets: np.ndarray, scores: np.ndarray, class_names: Sequence[str], title: str = ""
) -> dict[str, bytes]:
  """The charts of a multi-label evaluation: `{PER_CLASS_AP_PNG: png, PR_CURVES_PNG: png}`."""
  return {
    PER_CLASS_AP_PNG: per_class_ap_png(report["per_class"], title),
    PR_CURVES_PNG: pr_curves_png(targets, scores, class_names, title),
  }
