"""One input rule: the trainer's evaluation of a split and `predict` on the very same files give the same top-1
labels, on clips shorter than, equal to and longer than the training window (issue 15)."""

from __future__ import annotations

import csv
import pathlib
import sys

import numpy as np
import pytest
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from configs import quickstart  # noqa: E402


@pytest.fixture(scope="module")
def corpus(esc50_root, tmp_path_factory) -> pathlib.Path:
  """3 classes x 10 real ESC-50 clips cut to 0.3-2.6 s (the window is 1 s), as WAV at 22.05 kHz."""
  import csv as csv_module

  import librosa

  rows = list(csv_module.DictReader(open(esc50_root / "meta" / "esc50.csv")))
  root = tmp_path_factory.mktemp("rule") / "corpus"
  rng = np.random.default_rng(0)
  for category in ("dog", "rooster", "frog"):
    files = sorted(r["filename"] for r in rows if r["category"] == category)[:10]
    (root / category).mkdir(parents=True)
    for name in files:
      wave, _ = librosa.load(esc50_root / "audio" / name, sr=22050)
      start = int(np.argmax(np.abs(wave) > 0.05 * np.abs(wave).max()))  # past the leading silence
      seconds = float(rng.choice([0.3, 0.7, 1.0, 1.6, 2.6]))
      sf.write(
        root / category / name.replace(".flac", ".wav"), wave[start : start + int(seconds * 22050)], 22050
      )
  return root


@pytest.mark.parametrize("rule", ["loop", "mask"])
def test_the_trainers_evaluation_and_predict_give_the_same_top1_labels(corpus, tmp_path, capsys, rule):
  from animaljax.data.shard_source import PackedDataset
  from animaljax.inference.files import predict_files
  from animaljax.training.supervised import train_and_evaluate

  c = quickstart.get_config("smoke")
  c.data.source, c.data.root, c.data.dir = "folder", str(corpus), str(tmp_path / "packed")
  c.data.clip_seconds, c.data.file_format, c.data.short_clips = 1.0, "array_record", rule
  c.data.eval_split = "train"  # the largest split: more clips, more chances to disagree
  c.train.steps, c.eval.every_steps, c.checkpoint.every_steps = 6, 6, 6
  train_and_evaluate(c, tmp_path / "run")
  # The pack has a test split the run never looked at: it says how to score it, once, at the end.
  assert f"--model {tmp_path / 'run'} --data {tmp_path / 'packed'} --split test" in capsys.readouterr().err
  import json

  trainer = json.loads((tmp_path / "run" / "metrics.json").read_text())

  data = PackedDataset(tmp_path / "packed")
  from animaljax.data import records

  source = data.source("train")
  paths = [records.parse_example(source[i])["path"] for i in range(len(source))]
  lengths = {round(sf.info(p).duration, 1) for p in paths}
  assert {0.3, 2.6} <= lengths  # shorter and longer than the window are both there

  out = tmp_path / "predict.csv"
  predict_files(  # threshold 0: the plain ranking ("unknown" is predict's own addition for unsure models)
    str(tmp_path / "run"), paths, output=str(out), format="csv", top_k=1, model_threshold=0.0, quiet=True
  )
  top1 = {
    r["file"]: r["label"] for r in csv.DictReader(open(out)) if r["kind"] == "file" and r["rank"] == "1"
  }
  assert len(top1) == len(paths)
  names = list(data.class_names)
  confusion = np.zeros((len(names), len(names)), int)
  for path in paths:
    true = pathlib.Path(path).parent.name
    confusion[names.index(true), names.index(top1[path])] += 1
  assert confusion.tolist() == trainer["confusion_matrix"]
  assert confusion.trace() / confusion.sum() == pytest.approx(trainer["accuracy"])
