"""A multi-label model after training: loaded from its workdir and as a bundle with its thresholds, scored by
`evaluate` as the trainer scored it, detections out of `predict` (JSON and Raven runs), event matching."""

from __future__ import annotations

import csv
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from animaljax.data.packing import pack
from animaljax.data.sources.synthetic import SyntheticSource
from animaljax.inference import outputs
from animaljax.inference.evaluate_multilabel import evaluate_split_multilabel, event_scores, match_events
from animaljax.inference.load import export_model, load_predictor

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from configs import quickstart  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path, SyntheticSource]:
  from animaljax.training.supervised import train_and_evaluate

  root = tmp_path_factory.mktemp("mlinf")
  source = SyntheticSource(num_classes=3, clips_per_class=(8, 3, 0), clip_seconds=1.0, multi_label=True)
  pack(source, root / "packed", sample_rate=16000, clip_mode="window", window_seconds=0.5, workers=0,
       progress=False)  # fmt: skip
  c = quickstart.get_config("smoke")
  c.data.dir, c.data.pack_on_first_use = str(root / "packed"), False
  c.train.loss, c.eval.metric, c.train.steps = "bce", "mAP", 12
  c.train.lr = 3e-3
  train_and_evaluate(c, root / "run")
  return root / "run", root / "packed", source


def test_the_workdir_loads_as_a_multi_label_model_with_its_thresholds(trained):
  run, _, _ = trained
  p = load_predictor(run)
  stored = json.loads((run / "best" / "thresholds.json").read_text())
  assert p.multi_label
  np.testing.assert_allclose(p.thresholds, [np.inf if t is None else t for t in stored["thresholds"]])
  probs = p.probabilities(np.array([[0.0, 2.0, -2.0]]))
  np.testing.assert_allclose(
    probs, 1 / (1 + np.exp(-np.array([[0.0, 2.0, -2.0]]))), rtol=1e-6
  )  # not a softmax
  np.testing.assert_allclose(p.pool(np.array([[0.1, 0.9, 0.2], [0.7, 0.3, 0.2]])), [0.7, 0.9, 0.2])


def test_evaluate_scores_the_validation_split_as_the_trainer_did(trained):
  run, packed, _ = trained
  best = json.loads((run / "best" / "best.json").read_text())
  result = evaluate_split_multilabel(load_predictor(run), packed, "validation", quiet=True)
  assert result["mAP"] == pytest.approx(best["value"], abs=1e-4)  # one input rule and one pooling
  assert (
    result["num_examples"]
    == json.loads((packed / "summary.json").read_text())["splits"]["validation"]["num_examples"]
  )
  from sklearn.metrics import average_precision_score

  per_class = [
    average_precision_score(result["_targets"][:, c], result["_scores"][:, c])
    for c in range(3)
    if result["_targets"][:, c].any()
  ]
  assert result["mAP"] == pytest.approx(np.mean(per_class))


def test_evaluate_cli_writes_the_multilabel_outputs(trained, tmp_path):
  run, packed, _ = trained
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax.evaluate", "--model", str(run), "--data", str(packed), "--split",
     "validation", "--out", str(tmp_path / "ev"), "--quiet", "--threshold", "0.5"],
    cwd=REPO, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "mAP" in proc.stdout and "F1" in proc.stdout
  metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
  assert metrics["thresholds"] == [0.5, 0.5, 0.5] and metrics["multi_label"] is True
  rows = list(csv.DictReader((tmp_path / "ev" / "per_class.csv").open()))
  assert [r["class"] for r in rows] == ["harmonic_up", "harmonic_down", "pulse_train"]
  for chart in ("per_class_ap.png", "pr_curves.png"):
    assert (tmp_path / "ev" / chart).read_bytes()[:4] == b"\x89PNG"


def test_export_keeps_multi_label_and_thresholds_and_predict_detects(trained, tmp_path):
  import soundfile as sf

  from animaljax.data.sources.synthetic import mixed_recording

  run, _, source = trained
  bundle = export_model(run, tmp_path / "bundle", tflite=False)
  b, w = load_predictor(bundle), load_predictor(run)
  assert b.multi_label and np.array_equal(b.thresholds, w.thresholds)
  wave, events = mixed_recording(3, "test", seed=5, sample_rate=16000, clip_seconds=1.0, kinds=source.class_names,
                                 windows=4, max_calls=3)  # fmt: skip
  sf.write(tmp_path / "rec.wav", wave, 16000, subtype="PCM_16")
  for fmt in ("json", "raven"):
    proc = subprocess.run(
      [sys.executable, "-m", "animaljax.predict", "--model", str(bundle), str(tmp_path / "rec.wav"),
       "--format", fmt, "--hop", "0.25", "--threshold", "0.3", "--output", str(tmp_path / f"out.{fmt}"), "--quiet"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
  result = json.loads((tmp_path / "out.json").read_text())[0]
  for window in result["windows"]:
    for entry in window["labels"]:
      assert entry["detected"] == (entry["score"] >= 0.3)
  detected = [e for w in result["windows"] for e in w["labels"] if e["detected"]]
  table = (tmp_path / "out.raven").read_text().splitlines()
  assert table[0].split("\t")[:8] == list(outputs.RAVEN_COLUMNS[:8])
  rows = [dict(zip(outputs.RAVEN_COLUMNS, line.split("\t"), strict=True)) for line in table[1:]]
  expected = outputs.detection_runs(result["windows"])
  assert len(rows) == len(expected) and len(expected) >= 2 and detected  # real material for the round trip
  for row, (begin, end, label, score) in zip(rows, expected, strict=True):
    assert row["Species"] == label
    assert (float(row["Begin Time (s)"]), float(row["End Time (s)"])) == pytest.approx((begin, end), abs=1e-4)
    assert float(row["Score"]) == pytest.approx(score, abs=1e-6) and score >= 0.3

  # Round trip: the table, put beside its recording, reads back through `--source raven` as those boxes, and
  # `evaluate --raven` on it with the same model and threshold finds every event and nothing else.
  from animaljax.data.sources.raven import read_annotated_recordings

  folder = tmp_path / "annotated"
  folder.mkdir()
  (folder / "rec.wav").write_bytes((tmp_path / "rec.wav").read_bytes())
  (folder / "rec.Table.1.selections.txt").write_text((tmp_path / "out.raven").read_text())
  recordings, rejected = read_annotated_recordings(folder)
  assert rejected == () and [pathlib.Path(f).name for f, _ in recordings] == ["rec.wav"]
  boxes = sorted(recordings[0][1], key=lambda b: (b[0], b[2]))
  assert [b[2] for b in boxes] == [e[2] for e in expected]
  np.testing.assert_allclose([b[:2] for b in boxes], [e[:2] for e in expected], atol=1e-4)
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax.evaluate", "--model", str(bundle), "--raven", str(folder), "--hop", "0.25",
     "--threshold", "0.3", "--quiet", "--out", str(tmp_path / "events")],
    cwd=REPO, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-2000:]
  events = json.loads((tmp_path / "events" / "events.json").read_text())
  micro = events["event_micro"]
  assert micro["predicted"] == micro["reference"] == micro["matched"] == len(expected)


def test_detection_runs_merge_consecutive_windows_of_a_class():
  win = lambda s, e, *labels: {"start_s": s, "end_s": e,  # noqa: E731
                               "labels": [{"label": k, "score": v, "detected": d} for k, v, d in labels]}  # fmt: skip
  windows = [
    win(0.0, 1.0, ("a", 0.9, True), ("b", 0.2, False)),
    win(0.5, 1.5, ("a", 0.95, True), ("b", 0.6, True)),
    win(1.0, 2.0, ("a", 0.3, False), ("b", 0.7, True)),
    win(1.5, 2.5, ("a", 0.8, True)),
    win(3.0, 4.0, ("b", 0.9, True)),  # a gap after 2.5: a new run
  ]
  assert outputs.detection_runs(windows) == [
    (0.0, 1.5, "a", 0.95), (0.5, 2.0, "b", 0.7), (1.5, 2.5, "a", 0.8), (3.0, 4.0, "b", 0.9),
  ]  # fmt: skip


def test_event_matching_is_one_to_one_with_the_overlap_rule():
  reference = [(1.0, 3.0, "dog"), (5.0, 5.2, "dog"), (8.0, 9.0, "cat")]
  predicted = [(0.0, 2.0, "dog"), (1.5, 2.5, "dog"), (4.0, 6.0, "dog"), (8.8, 10.0, "cat"), (0.0, 1.0, "cat")]
  counts = match_events(predicted, reference, min_overlap_s=0.5)
  # dog: (1,3) matched once (two candidates, one match); the 0.2 s box lies wholly inside (4,6): matched.
  assert counts["dog"] == {"predicted": 3, "reference": 2, "matched": 2}
  assert counts["cat"] == {"predicted": 2, "reference": 1, "matched": 0}  # 0.2 s of a 1 s box: too little
  scores = event_scores([counts], ["cat", "dog"])
  assert scores["event_micro"]["precision"] == pytest.approx(2 / 5)
  assert scores["event_micro"]["recall"] == pytest.approx(2 / 3)
  assert scores["event_per_class"]["dog"]["f1"] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
