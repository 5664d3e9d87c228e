"""Packing sources into TFDS shards: real ESC-50 clips read back, rejects, windows, kill-and-resume determinism."""

from __future__ import annotations

import collections
import csv
import hashlib
import inspect
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from animaljax.audio.io import load_audio, to_int16
from animaljax.data import packing, records
from animaljax.data.sources import SOURCES, make_source
from animaljax.data.sources.base import Example, Source

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 16_000


def _tf_records(paths) -> list[bytes]:
  import tensorflow as tf

  return [r.numpy() for r in tf.data.TFRecordDataset([str(p) for p in paths])]


def _shards(out: pathlib.Path, split: str) -> list[pathlib.Path]:
  return sorted(out.glob(f"*-{split}.tfrecord-*-of-*"))


def _rejected(out: pathlib.Path) -> dict[str, str]:
  with open(out / "rejected.csv", newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["path", "reason"]
  return {os.path.basename(p.rstrip("/")): reason for p, reason in rows[1:]}


# ---------------------------------------------------------------- real ESC-50 animals


@pytest.fixture(scope="module")
def esc50_pack(esc50_root, tmp_path_factory):
  out = tmp_path_factory.mktemp("esc") / "pack"
  source = make_source("esc50", root=str(esc50_root), category="animals")
  start = time.perf_counter()
  summary = packing.pack(source, out, sample_rate=SR, workers=2, progress=False)
  print(f"packed {sum(s['num_examples'] for s in summary['splits'].values())} ESC-50 clips at {SR} Hz in "
        f"{time.perf_counter() - start:.1f} s (incl. TensorFlow import)")  # fmt: skip
  return source, out, summary


def test_esc50_layout_and_counts(esc50_root, esc50_pack):
  _, out, summary = esc50_pack
  with open(esc50_root / "meta" / "esc50.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if int(r["target"]) < 10]  # the animal classes are targets 0-9
  expected = collections.defaultdict(collections.Counter)
  for r in rows:
    expected[f"fold{r['fold']}"][r["category"]] += 1

  names = {p.name for p in out.iterdir()}
  assert {"dataset_info.json", "features.json", "summary.json", "rejected.csv", "warnings.csv"} <= names
  assert not [p for p in out.parent.iterdir() if p.name != "pack"], "scratch folders must be gone"
  assert json.loads((out / "summary.json").read_text()) == summary
  assert summary["class_names"] == [
    c for _, c in sorted({int(r["target"]): r["category"] for r in rows}.items())
  ]
  assert summary["num_classes"] == 10 and summary["sample_rate"] == SR and summary["num_rejected"] == 0
  assert sorted(summary["splits"]) == sorted(expected) == [f"fold{i}" for i in range(1, 6)]
  assert _rejected(out) == {}
  with open(out / "warnings.csv", newline="") as f:
    warned = list(csv.reader(f))
  assert warned[0] == ["path", "reason"] and len(warned) - 1 == summary["num_warnings"]
  for split, counts in expected.items():
    s = summary["splits"][split]
    assert s["per_class"] == dict(counts)
    assert s["num_examples"] == sum(counts.values())
    assert s["seconds"] == pytest.approx(5.0 * s["num_examples"])
    shards = _shards(out, split)
    assert len(shards) == s["num_shards"]
    assert re.fullmatch(rf"animal_sounds-{split}\.tfrecord-00000-of-\d{{5}}", shards[0].name)
    parsed = [records.parse_example(r) for r in _tf_records(shards)]
    assert collections.Counter(p["label_name"] for p in parsed) == counts
    assert {p["split"] for p in parsed} == {split} and {p["fold"] for p in parsed} == {int(split[-1])}


def test_esc50_reports_groups_by_src_file_and_no_duplicates(esc50_pack):
  """The folds are grouped by recording except two freesound files cut into a hen and a rooster clip each
  (src_file 134049: folds 2, 3; 234879: folds 4, 5): reported, not moved (the folds are ESC-50's)."""
  _, out, summary = esc50_pack
  assert summary["groups"] == {
    "by": "src_file",
    "count": 267,
    "files": 400,
    "ungrouped": 0,
    "multi_clip": 84,
    "straddling": 2,
  }
  assert summary["duplicates"]["clusters"] == 0 and summary["splitting"] == {
    "group_by": "src_file",
    "carved": {},
  }
  assert (out / "duplicates.csv").read_text().splitlines() == [
    "path,duplicate_of,split,duplicate_of_split,label,duplicate_of_label"
  ]


def test_esc50_waveforms_and_tfds_read_back(esc50_pack):
  """fold1 through `tfds.builder_from_directory` and through our codec: the exact `load_audio` samples."""
  import tensorflow_datasets as tfds

  source, out, summary = esc50_pack
  builder = tfds.builder_from_directory(str(out))
  assert builder.info.metadata["class_names"] == summary["class_names"]
  assert builder.info.metadata["sample_rate"] == SR
  assert builder.info.splits["fold1"].num_examples == 80

  raw = _tf_records(_shards(out, "fold1"))
  via_tfds = list(tfds.as_numpy(builder.as_dataset(split="fold1", shuffle_files=False)))
  assert len(raw) == len(via_tfds) == 80
  labels = {name: i for i, name in enumerate(summary["class_names"])}
  for rec, ex in zip(raw, via_tfds, strict=True):
    mine = records.parse_example(rec)
    assert records.serialize_example(mine) == rec  # our codec writes the bytes TFDS wrote
    np.testing.assert_array_equal(mine["audio"], ex["audio"])
    assert mine["path"] == ex["path"].decode() and mine["label"] == ex["label"]
    assert labels[mine["label_name"]] == mine["label"]
    assert mine["start_s"] == 0.0 and mine["duration_s"] == pytest.approx(5.0)
    expected = to_int16(load_audio(mine["path"], SR))
    np.testing.assert_array_equal(mine["audio"], expected)


def test_esc50_second_run_is_a_no_op(esc50_pack, capsys):
  source, out, summary = esc50_pack
  before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
  again = packing.pack(source, out, sample_rate=SR, workers=2)
  assert again == summary
  assert "already holds this pack" in capsys.readouterr().out
  assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
  with pytest.raises(FileExistsError, match="overwrite"):
    packing.pack(source, out, sample_rate=22050, workers=0, progress=False)  # other settings, no overwrite


# ---------------------------------------------------------------- bad files


def _tone(seconds: float, sr: int, freq: float = 440.0) -> np.ndarray:
  t = np.arange(round(seconds * sr)) / sr
  return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_bad_files_are_rejected_with_reasons(tmp_path):
  root = tmp_path / "corpus"
  for c, cls in enumerate(["bird", "frog"]):
    (root / cls).mkdir(parents=True)
    for i in range(4):
      sf.write(root / cls / f"good{i}.wav", _tone(0.5, 22050, 300 + 100 * c + 10 * i), 22050)
  birds = root / "bird"
  sf.write(birds / "full.flac", _tone(2.0, 44100), 44100)
  data = (birds / "full.flac").read_bytes()
  (birds / "truncated.flac").write_bytes(data[: len(data) // 2])
  (birds / "full.flac").unlink()
  (birds / "text.wav").write_text("this is not audio\n" * 50)
  sf.write(birds / "empty.wav", np.zeros(0, np.float32), 16000)
  nan = _tone(0.5, 16000)
  nan[100] = np.nan
  sf.write(root / "frog" / "nan.wav", nan, 16000, subtype="FLOAT")
  (root / "frog" / "x.wav").mkdir()  # refused by the listing (`Source.rejected`), reported all the same
  source = make_source("folder", root=str(root), split_ratios=(0.5, 0.25, 0.25))
  listed = {os.path.basename(e.path) for e in source.examples()}
  assert {"truncated.flac", "text.wav", "empty.wav", "nan.wav"} <= listed and "x.wav" not in listed

  out = tmp_path / "out"
  summary = packing.pack(source, out, sample_rate=SR, workers=2, progress=False)
  rejected = _rejected(out)
  assert set(rejected) == {"truncated.flac", "text.wav", "empty.wav", "nan.wav", "x.wav"}
  assert all(rejected.values()), rejected
  assert "nan" in rejected["nan.wav"].lower()
  assert "director" in rejected["x.wav"].lower()
  assert summary["num_rejected"] == 5
  assert sum(s["num_examples"] for s in summary["splits"].values()) == 8  # every good file is in
  assert set(summary["splits"]) <= {"train", "validation", "test"}
  paths = [records.parse_example(r)["path"] for s in summary["splits"] for r in _tf_records(_shards(out, s))]
  assert sorted(os.path.basename(p) for p in paths) == sorted(f"good{i}.wav" for i in range(4) for _ in "ab")


def test_a_split_of_only_bad_files_is_dropped(tmp_path):
  good, bad = tmp_path / "good.wav", tmp_path / "bad.wav"
  sf.write(good, _tone(0.3, SR), SR)
  bad.write_bytes(b"RIFF....WAVE garbage")
  source = _Listed(["a"], [Example(str(good), 0, "a", "train"), Example(str(bad), 0, "a", "test")])
  summary = packing.pack(source, tmp_path / "out", sample_rate=SR, workers=0, progress=False)
  assert list(summary["splits"]) == ["train"] and summary["num_rejected"] == 1
  assert set(_rejected(tmp_path / "out")) == {"bad.wav"}


def test_packing_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch):
  import tempfile

  scratch = tmp_path / "tmp"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where mkdtemp & co. put things in this process
  sf.write(tmp_path / "a.wav", _tone(0.3, SR), SR)
  source = _Listed(["a"], [Example(str(tmp_path / "a.wav"), 0, "a", "train")])
  packing.pack(source, tmp_path / "out", sample_rate=SR, workers=0, progress=False)
  assert list(scratch.iterdir()) == []  # TFDS left an empty tmp*tfds folder per pack before


class _Listed(Source):
  def __init__(self, class_names, examples):
    self.name, self.class_names, self._examples = "listed", tuple(class_names), examples

  def examples(self):
    return list(self._examples)


class _Crashing(_Listed):
  """Kills the worker process that decodes `crash.wav`, as a segfaulting decoder would."""

  def load(self, example, sample_rate, **validation):
    if example.path.endswith("crash.wav"):
      os.kill(os.getpid(), signal.SIGKILL)
    return super().load(example, sample_rate, **validation)


def test_a_worker_crash_rejects_only_its_file(tmp_path):
  names = (
    ["a_crash.wav"] + [f"ok{i}.wav" for i in range(3)] + ["b_crash.wav"] + [f"ok{i}.wav" for i in range(3, 6)]
  )
  for n in names:
    sf.write(tmp_path / n, _tone(0.2, SR), SR)
  examples = [Example(str(tmp_path / n), 0, "a", "train") for n in names]
  examples.append(Example(str(tmp_path / "c_crash.wav"), 0, "a", "test"))  # a split with nothing usable
  summary = packing.pack(
    _Crashing(["a"], examples), tmp_path / "out", sample_rate=SR, workers=2, progress=False
  )
  assert list(summary["splits"]) == ["train"] and summary["splits"]["train"]["num_examples"] == 6
  reason = "the decoder crashed its worker process"
  assert _rejected(tmp_path / "out") == {f"{c}_crash.wav": reason for c in "abc"}


# ---------------------------------------------------------------- windows


def test_window_mode_on_a_long_file(tmp_path):
  long = _tone(11.0, 22050, 500.0) * np.linspace(0.1, 1.0, round(11.0 * 22050), dtype=np.float32)
  sf.write(tmp_path / "long.flac", long, 22050)
  sf.write(tmp_path / "short.wav", _tone(1.0, 22050), 22050)
  source = _Listed(
    ["call"], [Example(str(tmp_path / n), 0, "call", "train") for n in ("long.flac", "short.wav")]
  )
  out = tmp_path / "out"
  summary = packing.pack(
    source,
    out,
    sample_rate=SR,
    clip_mode="window",
    window_seconds=4.0,
    hop_seconds=3.0,
    workers=0,
    progress=False,
  )
  assert (
    summary["clip_mode"] == "window" and summary["window_seconds"] == 4.0 and summary["hop_seconds"] == 3.0
  )
  recs = sorted(
    (records.parse_example(r) for r in _tf_records(_shards(out, "train"))), key=lambda r: r["start_s"]
  )
  # 11 s, 4 s windows every 3 s: full windows at 0, 3, 6; the tail from 9 s holds 2 s = half a window: kept.
  assert [r["start_s"] for r in recs] == [0.0, 3.0, 6.0, 9.0]
  assert [len(r["audio"]) for r in recs] == [4 * SR] * 3 + [2 * SR]
  full = to_int16(load_audio(tmp_path / "long.flac", SR))
  for r in recs:
    start = round(r["start_s"] * SR)
    np.testing.assert_array_equal(r["audio"], full[start : start + 4 * SR])
    assert r["duration_s"] == pytest.approx(11.0)
  assert _rejected(out) == {"short.wav": "too short for a window: 1.00 s < 2 s"}
  assert summary["splits"]["train"]["seconds"] == pytest.approx(14.0)

  # Other settings replace the pack only with overwrite; nothing of the old one is left behind.
  with pytest.raises(FileExistsError):
    packing.pack(source, out, sample_rate=SR, workers=0, progress=False)
  again = packing.pack(source, out, sample_rate=SR, workers=0, progress=False, overwrite=True, name="whole")
  assert again["clip_mode"] == "keep" and again["splits"]["train"]["num_examples"] == 2
  assert sorted(p.name for p in out.glob("*.tfrecord-*")) == ["whole-train.tfrecord-00000-of-00001"]
  assert _rejected(out) == {} and sorted(p.name for p in out.parent.iterdir()) == [
    "long.flac",
    "out",
    "short.wav",
  ]


# ---------------------------------------------------------------- kill -9 and resume


def _sha256s(out: pathlib.Path) -> dict[str, str]:
  return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.tfrecord-*"))}


def test_kill_and_rerun_gives_identical_shards(tmp_path):
  """A `kill -9` mid-run leaves nothing that looks finished; a re-run cleans up and writes the same bytes."""
  # 32 kHz: slow enough (~17 ms a clip on one worker) that the last ~100 clips leave a wide window for the kill.
  sr = 32_000
  source = make_source("synthetic", seed=3)
  n_train = sum(e.split == "train" for e in source.examples())
  total = len(source.examples())
  reference = tmp_path / "reference"  # in this process: the bytes must not depend on the process either
  packing.pack(source, reference, sample_rate=sr, workers=2, progress=False)

  out = tmp_path / "run" / "pack"
  cmd = [sys.executable, "-m", "animaljax.pack", "--source", "synthetic", "--seed", "3", "--out", str(out),
         "--sample-rate", str(sr), "--workers"]  # fmt: skip
  log = tmp_path / "killed.log"
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  with open(log, "w") as err:
    proc = subprocess.Popen(
      [*cmd, "1"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True
    )
  done = 0
  deadline = time.monotonic() + 120
  # Kill once the train split is written to the scratch folder and the next split is under way.
  while proc.poll() is None and time.monotonic() < deadline and done < n_train + 8:
    time.sleep(0.05)
    counts = re.findall(rf"(\d+)/{total} \[", log.read_text(errors="replace"))
    done = int(counts[-1]) if counts else 0
  assert proc.poll() is None, f"the pack finished before it could be killed (at {done}/{total})"
  os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its decode worker
  proc.wait()
  assert n_train < done < total
  assert not out.exists(), "a killed run must not leave anything at the output path"
  scratch = out.parent / ".pack.incomplete"
  assert list(scratch.rglob("*-train.tfrecord-*")), "the train shards were written to the scratch folder"

  rerun = subprocess.run([*cmd, "2"], cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert not scratch.exists()
  want = _sha256s(reference)
  assert len(want) >= 4 and _sha256s(out) == want  # train, validation, test, noise
  summary = json.loads((out / "summary.json").read_text())
  assert summary["source"] == "synthetic" and summary["num_rejected"] == 0
  per_split = collections.Counter(e.split for e in source.examples())
  assert {s: v["num_examples"] for s, v in summary["splits"].items()} == dict(per_split)
  assert summary["splits"]["noise"]["per_class"] == {packing.UNLABELLED_KEY: per_split["noise"]}


# ---------------------------------------------------------------- ArrayRecord


def test_array_record_output(tmp_path):
  """The random-access format: the same records, readable without TensorFlow and through tfds.data_source."""
  import tensorflow_datasets as tfds
  from array_record.python import array_record_module

  source = make_source("synthetic", clips_per_class=(3, 1, 1), noise_clips=2, seed=1)
  out = tmp_path / "ar"
  summary = packing.pack(source, out, sample_rate=8000, workers=0, file_format="array_record", progress=False)
  assert summary["file_format"] == "array_record"
  shards = sorted(out.glob("animal_sounds-train.array_record-*-of-*"))
  assert len(shards) == summary["splits"]["train"]["num_shards"] >= 1
  raw = []
  for shard in shards:
    reader = array_record_module.ArrayRecordReader(str(shard))
    raw += list(reader.read_all())
    reader.close()
  parsed = [records.parse_example(r) for r in raw]
  train = [e for e in source.examples() if e.split == "train"]
  assert sorted(p["path"] for p in parsed) == sorted(e.path for e in train)
  for p in parsed[:3]:
    ex = next(e for e in train if e.path == p["path"])
    np.testing.assert_array_equal(p["audio"], to_int16(source.load(ex, 8000)))
  data_source = tfds.builder_from_directory(str(out)).as_data_source(split="train")
  assert len(data_source) == len(parsed)
  np.testing.assert_array_equal(data_source[0]["audio"], parsed[0]["audio"])


# ---------------------------------------------------------------- CLI


@pytest.mark.parametrize(
  "argv, expected",
  [
    (["--source", "esc50", "--root", "R", "--category", "animals"], {"root": "R", "category": "animals"}),
    (["--source", "esc50", "--root", "R", "--category", "dog,cat"], {"root": "R", "category": ["dog", "cat"]}),
    (["--source", "folder", "--root", "R", "--split-ratios", "0.7,0.2,0.1"],
     {"root": "R", "seed": 0, "split_ratios": (0.7, 0.2, 0.1)}),
    (["--source", "csv", "--root", "m.csv", "--seed", "4"], {"manifest": "m.csv", "seed": 4}),
    (["--source", "synthetic", "--seed", "2"], {"seed": 2}),
  ],
)  # fmt: skip
def test_cli_source_arguments(argv, expected):
  from animaljax import pack as cli

  args = cli.parse_args([*argv, "--out", "O"])
  assert cli.source_kwargs(args) == expected
  # The constructor accepts exactly these keywords (bind checks names without touching any file).
  inspect.signature(SOURCES[args.source]).bind(**expected)
