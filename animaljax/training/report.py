"""What a person looks at after (and during) training: TensorBoard scalars and PNG charts of an evaluation.

* `EventWriter`: scalars to TensorBoard event files through tensorboardX, which writes the same protobuf
  records as `tf.summary` without importing TensorFlow (~7 s and a pool of threads in the training process).
  Only process 0 writes; on the others every call is a no-op, so the loop calls it unconditionally.
* `plot_confusion_matrix` / `plot_per_class` / `write_charts`: matplotlib figures rendered with the Agg
  canvas (`matplotlib.figure.Figure`, no pyplot: no global state, no display, safe in any thread).
* `write_metrics`: `metrics.json` (replaced atomically) and a line of `eval_log.jsonl`, for every trainer.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from animaljax.data import atomic

CONFUSION_PNG = "confusion_matrix.png"
PER_CLASS_PNG = "per_class.png"
_MAX_ANNOTATED = 20  # counts are written in the cells up to this many classes; beyond, they are unreadable


def write_metrics(workdir: pathlib.Path, step: int, metrics: Mapping, log_skip: Sequence[str] = ()) -> None:
  """`metrics.json` = `{"step", **metrics}` and the same as a line of `eval_log.jsonl` (less `log_skip` keys).

  `metrics.json` is written to a temporary file and renamed over the old one: the demo and scripts read it
  while the run goes on, and must never see half a file.
  """
  import json

  record = {"step": step, **metrics}
  atomic.write_text(workdir / "metrics.json", json.dumps(record, indent=2) + "\n")
  with open(workdir / "eval_log.jsonl", "a") as f:
    f.write(json.dumps({k: v for k, v in record.items() if k not in log_skip}) + "\n")


class EventWriter:
  """Scalars to TensorBoard event files under `logdir` (process 0 only).

  Args:
    logdir: the folder for `events.out.tfevents.*` (`tensorboard --logdir <it or a parent>`).
    purge_step: on resume, the restored step: events a crashed run wrote after it are hidden by TensorBoard,
      so the curves show what an uninterrupted run would have logged.
    enabled: False (e.g. `jax.process_index() != 0`) makes every method a no-op.
  """

  def __init__(self, logdir: str | pathlib.Path, *, purge_step: int | None = None, enabled: bool = True):
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter

      self._writer = SummaryWriter(str(logdir), purge_step=purge_step or None, flush_secs=30)

  def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
    """Writes every finite-or-not float in `values` as `<prefix><name>` at `step`; other types are skipped."""
    if self._writer is None:
      return
    for name, value in values.items():
      if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
        self._writer.add_scalar(prefix + name, float(value), global_step=int(step))

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def _save(fig, path: pathlib.Path) -> pathlib.Path:
  """Renders beside `path` then renames, so a reader (the demo) never sees half a PNG."""
  with atomic.replaced_on_success(path) as tmp:
    fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
  return path


def plot_confusion_matrix(
  cm: np.ndarray | Sequence[Sequence[int]],
  class_names: Sequence[str],
  path: str | pathlib.Path,
  title: str = "",
) -> pathlib.Path:
  """A heat map of `cm` (classes, classes), rows true, columns predicted, coloured by row-normalised rate.

  Each row is divided by its true count (recall on the diagonal), so rare and common classes read alike;
  the raw counts are written in the cells for up to 20 classes. A row without examples stays blank (0).
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
  return _save(fig, pathlib.Path(path))


def plot_per_class(
  per_class: Mapping[str, Mapping[str, float]], path: str | pathlib.Path, title: str = ""
) -> pathlib.Path:
  """Grouped bars of precision, recall and F1 for each class (`per_class` as `classification_report`)."""
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
  return _save(fig, pathlib.Path(path))


def write_charts(workdir: str | pathlib.Path, step: int, report: Mapping) -> list[pathlib.Path]:
  """`confusion_matrix.png` and `per_class.png` in `workdir` from a `classification_report` at `step`."""
  workdir = pathlib.Path(workdir)
  names = list(report["per_class"])
  head = f"step {step}: accuracy {report['accuracy']:.3f}, macro F1 {report['macro_f1']:.3f}"
  return [
    plot_confusion_matrix(report["confusion_matrix"], names, workdir / CONFUSION_PNG, title=head),
    plot_per_class(report["per_class"], workdir / PER_CLASS_PNG, title=head),
  ]
