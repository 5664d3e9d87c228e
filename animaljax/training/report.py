"""What a person looks at after (and during) training: TensorBoard scalars and PNG charts of an evaluation.

* `EventWriter`: scalars to TensorBoard event files through tensorboardX, which writes the same protobuf
  records as `tf.summary` without importing TensorFlow (~7 s and a pool of threads in the training process).
  Only process 0 writes; on the others every call is a no-op, so the loop calls it unconditionally.
* `write_charts`: the PNG charts of an evaluation (drawn by `metrics.plots`, which `evaluate` shares), each
  written whole or not at all.
* `write_metrics`: `metrics.json` (replaced atomically) and a line of `eval_log.jsonl`, for every trainer.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from animaljax.data import atomic
from animaljax.metrics.plots import CONFUSION_PNG, PER_CLASS_PNG, report_charts  # noqa: F401 - the chart names


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


def write_charts(workdir: str | pathlib.Path, step: int, report: Mapping) -> list[pathlib.Path]:
  """`confusion_matrix.png` and `per_class.png` in `workdir` from a `classification_report` at `step`.

  Each is written to a temporary file and renamed: the demo shows them while the run goes on.
  """
  workdir = pathlib.Path(workdir)
  head = f"step {step}: accuracy {report['accuracy']:.3f}, macro F1 {report['macro_f1']:.3f}"
  paths = []
  for name, png in report_charts(report, head).items():
    atomic.write_bytes(workdir / name, png)
    paths.append(workdir / name)
  return paths
