"""`python -m animaljax.evaluate` counts what `predict` says: the same clips through both give the same labels.

The model is the session's tiny trained CNN (tests/predict/predict_support.py, 4 synthetic call types, 1 s
window). `--files` is checked on real ESC-50 clips (5 s at 44.1 kHz: five windows each, resampled) filed under
the model's class names, plus a short clip and an unreadable file; `--data --split` on a pack of the synthetic
calls at 22.05 kHz (not the model's 16 kHz), against `predict` on the very same records written out as WAV.
"""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
import pytest
import soundfile as sf
from predict_support import LABELS

from animaljax import evaluate as evaluate_cmd
from animaljax import predict
from animaljax.data import records
from animaljax.data.shard_source import PackedDataset
from animaljax.inference import evaluate

PACK_RATE = 22050


def read_csv(path: pathlib.Path) -> list[dict]:
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def predict_top1(model: pathlib.Path, inputs: list[str], out: pathlib.Path, *extra: str) -> dict[str, tuple]:
  """`predict` as a user runs it, then its CSV's file rows of rank 1: {file: (label, score)}."""
  args = ["--model", str(model), *inputs, "--output", str(out), "--top-k", "1", "--model-threshold", "0"]
  assert predict.main([*args, "--quiet", *extra]) == 0
  rows = read_csv(out)
  return {
    r["file"]: (r["label"], float(r["score"])) for r in rows if r["kind"] == "file" and r["rank"] == "1"
  }


# ------------------------------------------------------------------------------------------------ --files
@pytest.fixture(scope="module")
def tree(esc50_root, tmp_path_factory) -> pathlib.Path:
  """Real clips under the model's class names: 2 ESC-50 clips a class, a 0.4 s cut, a file that is not audio."""
  root = tmp_path_factory.mktemp("tree")
  clips = sorted((esc50_root / "audio").glob("*.flac"))[:8]
  for i, clip in enumerate(clips):
    (root / LABELS[i % 4]).mkdir(exist_ok=True)
    (root / LABELS[i % 4] / clip.name).write_bytes(clip.read_bytes())
  wave, sr = sf.read(clips[0], dtype="float32")
  sf.write(root / LABELS[1] / "short.wav", wave[: int(0.4 * sr)], sr)  # shorter than the window: padded
  (root / LABELS[2] / "broken.wav").write_bytes(b"RIFF0000WAVEnot audio")
  (root / LABELS[3] / ".hidden.wav").write_bytes(b"skipped: hidden")
  return root


@pytest.fixture(scope="module", params=[("mean", None), ("max", "0.5")], ids=["mean", "max-hop0.5"])
def files_run(request, bundle, tree, tmp_path_factory) -> dict:
  pool, hop = request.param
  out = tmp_path_factory.mktemp("eval")
  extra = ["--pool", pool] + (["--hop", hop] if hop else [])
  assert evaluate_cmd.main(["--model", str(bundle), "--files", str(tree), "--out", str(out / "ev"), "--quiet",
                            *extra]) == 0  # fmt: skip
  expected = predict_top1(bundle, [str(tree)], out / "predict.csv", *extra)
  return {"out": out / "ev", "predict": expected}


def test_files_equal_predict_plus_counting(files_run, tree):
  preds = read_csv(files_run["out"] / evaluate.PREDICTIONS_CSV)
  expected = files_run["predict"]
  assert len(preds) == 9 and {p["file"] for p in preds} == set(expected)  # broken.wav and .hidden.wav are not
  for p in preds:
    label, score = expected[p["file"]]
    assert p["predicted"] == label and float(p["score"]) == pytest.approx(score, rel=1e-6, abs=1e-7)
    assert p["true"] == pathlib.Path(p["file"]).parent.name
  right = sum(label == pathlib.Path(f).parent.name for f, (label, _) in expected.items())
  m = json.loads((files_run["out"] / evaluate.METRICS_JSON).read_text())
  assert m["accuracy"] == right / len(expected) and m["num_examples"] == len(expected)
  assert m["num_skipped"] == 1 and "broken.wav" in m["skipped"][0]


def test_output_files_exist_and_parse(files_run):
  out = files_run["out"]
  m = json.loads((out / evaluate.METRICS_JSON).read_text())
  assert {
    "accuracy",
    "macro_f1",
    "weighted_f1",
    "mAP",
    "per_class",
    "confusion_matrix",
    "model",
    "pool",
  } <= set(m)
  assert "predictions" not in m and list(m["per_class"]) == list(LABELS)
  cm = np.array(m["confusion_matrix"])
  assert cm.shape == (4, 4) and cm.sum() == m["num_examples"]
  per_class = read_csv(out / evaluate.PER_CLASS_CSV)
  assert [r["class"] for r in per_class] == list(LABELS)
  assert [int(r["support"]) for r in per_class] == cm.sum(axis=1).tolist()
  assert [float(r["f1"]) for r in per_class] == pytest.approx([m["per_class"][c]["f1"] for c in LABELS])
  for png in ("confusion_matrix.png", "per_class.png"):
    assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not list(out.glob(".*.tmp"))


def test_metrics_agree_with_scikit_learn(files_run):
  sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
  preds = read_csv(files_run["out"] / evaluate.PREDICTIONS_CSV)
  m = json.loads((files_run["out"] / evaluate.METRICS_JSON).read_text())
  y, p = [LABELS.index(r["true"]) for r in preds], [LABELS.index(r["predicted"]) for r in preds]
  assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
  assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p, average="macro", zero_division=0))
  assert m["weighted_f1"] == pytest.approx(sk.f1_score(y, p, average="weighted", zero_division=0))
  assert m["confusion_matrix"] == sk.confusion_matrix(y, p, labels=range(4)).tolist()


# ------------------------------------------------------------------------------------------------ --data --split
@pytest.fixture(scope="module")
def pack22k(tmp_path_factory) -> pathlib.Path:
  from animaljax.data.packing import pack
  from animaljax.data.sources import SyntheticSource

  out = tmp_path_factory.mktemp("pack22k") / "packed"
  source = SyntheticSource(num_classes=4, clips_per_class=(1, 3, 0), clip_seconds=1.7, noise_clips=0)
  pack(source, out, sample_rate=PACK_RATE, workers=0, progress=False)
  return out


def test_split_equals_predict_on_the_same_clips_as_wav(workdir, pack22k, tmp_path):
  from animaljax.inference import load_predictor

  result = evaluate.evaluate_split(load_predictor(workdir), pack22k, "validation", hop=0.5, quiet=True)
  source = PackedDataset(pack22k).source("validation")
  wavs, truth = {}, {}
  for i in range(len(source)):
    rec = records.parse_example(source[i])
    path = tmp_path / "wav" / f"{i:02d}.wav"
    path.parent.mkdir(exist_ok=True)
    sf.write(path, rec["audio"], PACK_RATE, subtype="PCM_16")  # the pack's int16 samples, exactly
    wavs[rec["path"]], truth[str(path)] = str(path), rec["label_name"]
  expected = predict_top1(workdir, [str(tmp_path / "wav")], tmp_path / "p.csv", "--hop", "0.5")
  assert len(result["predictions"]) == len(expected) == 12
  for row in result["predictions"]:
    label, score = expected[wavs[row["file"]]]
    assert (row["predicted"], row["true"]) == (label, truth[wavs[row["file"]]])
    assert row["score"] == pytest.approx(score, rel=1e-6, abs=1e-7)
  right = sum(label == truth[f] for f, (label, _) in expected.items())
  assert result["accuracy"] == right / 12 and result["split"] == "validation"


# ------------------------------------------------------------------------------------------------ mistakes
def one_error(capsys, argv: list[str]) -> str:
  assert evaluate_cmd.main(argv) == 2
  lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), lines
  return lines[0]


def test_a_class_the_model_does_not_know_is_named(bundle, tmp_path, capsys):
  for name in (LABELS[0], "Wolf"):
    (tmp_path / "t" / name).mkdir(parents=True)
    sf.write(tmp_path / "t" / name / "a.wav", np.zeros(1600, np.float32), 16000)
  line = one_error(capsys, ["--model", str(bundle), "--files", str(tmp_path / "t"), "--quiet"])
  assert "does not know: Wolf" in line


def test_renamed_classes_are_never_mapped_by_position(bundle, tmp_path, capsys):
  for name in ("a", "b", "c", "d"):
    (tmp_path / name).mkdir()
    sf.write(tmp_path / name / "x.wav", np.zeros(1600, np.float32), 16000)
  assert "never by position" in one_error(capsys, ["--model", str(bundle), "--files", str(tmp_path)])


def test_bad_split_bad_model_and_missing_split_are_one_line(bundle, tiny_root, tmp_path, capsys):
  packed = tiny_root / "packed"  # the session's own pack: train and validation only
  assert "unknown split" in one_error(
    capsys, ["--model", str(bundle), "--data", str(packed), "--split", "tset"]
  )
  assert "no-such" in one_error(capsys, ["--model", str(tmp_path / "no-such"), "--files", str(tmp_path)])
  assert "--data needs --split" in one_error(capsys, ["--model", str(bundle), "--data", str(packed)])
  (tmp_path / "file").write_text("")
  line = one_error(
    capsys, ["--model", str(bundle), "--files", str(tmp_path), "--out", str(tmp_path / "file")]
  )
  assert "not a folder" in line
