"""TensorBoard events read back from disk, and the PNG charts of an evaluation."""

from __future__ import annotations

import pathlib
import struct

import numpy as np
import pytest

from animaljax import metrics
from animaljax.metrics import plots
from animaljax.training import report


def read_events(logdir: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
  """Every scalar in the event files under `logdir`: `{tag: [(step, value), ...]}`.

  Reads the TFRecord framing itself and parses each record as a TensorBoard `Event` proto, so the check
  does not reuse the writer's code (nor import TensorFlow).
  """
  from tensorboardX.proto import event_pb2

  out: dict[str, list[tuple[int, float]]] = {}
  files = sorted(logdir.glob("events.out.tfevents.*"))
  assert files, f"no event file in {logdir}"
  for path in files:
    data, pos = path.read_bytes(), 0
    while pos < len(data):
      (length,) = struct.unpack_from("<Q", data, pos)
      event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
      pos += 12 + length + 4
      for v in event.summary.value:
        out.setdefault(v.tag, []).append((event.step, v.simple_value))
  return out


def test_event_writer_writes_scalars_that_read_back(tmp_path):
  w = report.EventWriter(tmp_path)
  for step in (1, 2, 3):
    w.scalars(step, {"loss": 1.0 / step, "lr": 0.1, "note": "text is skipped", "flag": True}, prefix="train/")
  w.scalars(3, {"accuracy": 0.75, "per_class": {"a": 1}}, prefix="eval/")
  w.close()
  events = read_events(tmp_path)
  assert set(events) == {"train/loss", "train/lr", "eval/accuracy"}
  assert [s for s, _ in events["train/loss"]] == [1, 2, 3]
  np.testing.assert_allclose([v for _, v in events["train/loss"]], [1.0, 0.5, 1 / 3], rtol=1e-6)
  assert events["eval/accuracy"] == [(3, 0.75)]


def test_disabled_writer_writes_nothing(tmp_path):
  w = report.EventWriter(tmp_path / "tb", enabled=False)
  w.scalars(1, {"loss": 1.0})
  w.close()
  assert not (tmp_path / "tb").exists()


def _report(num_classes: int, n: int = 200, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, num_classes, n)
  scores = rng.normal(size=(n, num_classes)) + 2.0 * np.eye(num_classes)[labels]
  names = [f"species_{i}" for i in range(num_classes)]
  return metrics.classification_report(labels, scores, names)


def _png_size(path: pathlib.Path) -> tuple[int, int]:
  head = path.read_bytes()[:24]
  assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
  return struct.unpack(">II", head[16:24])  # IHDR width, height


@pytest.mark.parametrize("num_classes", [3, 10, 30])
def test_charts_are_pngs_that_grow_with_the_class_count(tmp_path, num_classes):
  r = _report(num_classes)
  paths = report.write_charts(tmp_path, 7, r)
  assert [p.name for p in paths] == [report.CONFUSION_PNG, report.PER_CLASS_PNG]
  assert not list(tmp_path.glob("*.tmp"))  # rendered atomically
  w_cm, h_cm = _png_size(paths[0])
  w_pc, _ = _png_size(paths[1])
  assert min(w_cm, h_cm) >= 300
  if num_classes == 30:
    (tmp_path / "small").mkdir()
    w_small, _ = _png_size(report.write_charts(tmp_path / "small", 7, _report(3))[0])
    assert w_cm > 1.5 * w_small  # room for 30 names instead of squeezing them


def test_confusion_chart_colours_follow_the_row_normalised_rate(tmp_path):
  """Rows normalised: a class with 2 examples both right is as dark on its diagonal as one with 200."""
  import matplotlib.image

  cm = np.array([[200, 0], [0, 2]])
  path = tmp_path / "cm.png"
  path.write_bytes(plots.confusion_matrix_png(cm, ["common", "rare"]))
  rgb = matplotlib.image.imread(path)[..., :3]
  # The deep blue of rate 1.0: dark and blue (black text, axes and white digits are excluded).
  dark = (rgb.sum(-1) < 0.9) & (rgb[..., 2] - rgb[..., 0] > 0.3)
  # Keep the first run of columns holding such pixels (the matrix); the colour bar is a later run.
  has = dark.any(axis=0)
  first = int(np.argmax(has))
  end = first + int(np.argmin(has[first:])) if not has[first:].all() else has.size
  dark = dark[:, first:end]
  rows, cols = np.nonzero(dark)
  # Dark pixels form two blocks on the diagonal: upper-left and lower-right quadrants of the plot area.
  mid_r, mid_c = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
  assert ((rows < mid_r) & (cols < mid_c)).sum() > 1000 and ((rows > mid_r) & (cols > mid_c)).sum() > 1000
  assert ((rows < mid_r) & (cols > mid_c)).sum() < 50  # off-diagonal cells (rate 0) stay white


def test_confusion_chart_rejects_a_shape_that_does_not_match_the_names():
  with pytest.raises(ValueError, match="does not match 3 class names"):
    plots.confusion_matrix_png(np.eye(2, dtype=int), ["a", "b", "c"])
