"""`python -m animaljax.predict`: windows of long files, the three formats parsed back, options, bad files."""

from __future__ import annotations

import csv
import io
import json
import pathlib

import numpy as np
import pytest
from predict_support import LABELS, SR, write_wave

from animaljax import predict
from animaljax.inference import outputs


@pytest.fixture(scope="module")
def audio(tmp_path_factory) -> dict[str, str]:
  root = tmp_path_factory.mktemp("audio")
  return {
    "long": write_wave(root / "long.wav", 7.3, seed=1),
    "short": write_wave(root / "short.flac", 0.6, sr=44100, seed=2, subtype="PCM_16"),  # resampled to 16 kHz
    "one": write_wave(root / "one.wav", 1.0, seed=3),
  }


@pytest.fixture
def cli(bundle, monkeypatch, capsys):
  """Runs the CLI in-process on the session's bundle; returns (exit status, stdout, stderr)."""

  def run(*args: str) -> tuple[int, str, str]:
    rc = predict.main(["--model", str(bundle), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err

  return run


def expected_starts(seconds: float, window: float, hop: float) -> list[float]:
  starts = list(np.round(np.arange(0, seconds - window + 1e-9, hop), 6))
  return starts + ([round(seconds - window, 6)] if starts[-1] + window < seconds else [])


def test_long_file_json(cli, audio, bundle_predictor):
  rc, out, err = cli(audio["long"], "--hop", "0.5", "--format", "json", "--top-k", "2")
  assert rc == 0
  results = json.loads(out)  # stdout holds exactly one JSON document: the progress bar went to stderr
  assert "predict" in err and isinstance(results, list) and len(results) == 1
  (r,) = results
  assert set(r) == {"file", "labels", "windows"} and r["file"] == audio["long"]
  starts = [w["start_s"] for w in r["windows"]]
  assert starts == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5, 6.0, 6.3]
  assert starts == expected_starts(7.3, 1.0, 0.5)
  assert [w["end_s"] for w in r["windows"]] == pytest.approx([s + 1.0 for s in starts])
  for entries in [r["labels"]] + [w["labels"] for w in r["windows"]]:
    assert 1 <= len(entries) <= 3  # top 2, plus "unknown" first when the model is not sure
    assert all(set(e) == {"label", "score"} for e in entries)
    scores = [e["score"] for e in entries if e["label"] != "unknown"]
    assert scores == sorted(scores, reverse=True)
  # The numbers are the model's: window 6.3-7.3 s of the file through the Predictor directly.
  wave = bundle_predictor.load_file(audio["long"])
  probs = np.asarray(bundle_predictor.logits(wave[None, int(6.3 * SR) : int(7.3 * SR)]))
  probs = np.exp(probs - probs.max()) / np.exp(probs - probs.max()).sum()
  model_top = [e for e in r["windows"][-1]["labels"] if e["label"] != "unknown"][0]
  assert model_top["label"] == LABELS[int(probs.argmax())]
  assert model_top["score"] == pytest.approx(float(probs.max()), abs=1e-5)


def test_scan_batches_across_files_exactly(bundle_predictor, audio):
  files = [audio["one"], audio["long"], audio["short"], audio["one"]]
  scans = list(bundle_predictor.scan(files, hop_seconds=0.7, batch_size=3))  # batches span file boundaries
  assert [s.file for s in scans] == files
  for s in scans:
    wave = bundle_predictor.load_file(s.file)
    rows = bundle_predictor.windows(wave, hop=bundle_predictor.hop_samples(0.7))
    probs, embs = bundle_predictor.run_windows(rows)
    assert s.probs.shape == (len(rows), len(LABELS)) and s.duration_s == pytest.approx(len(wave) / SR)
    np.testing.assert_allclose(s.probs, probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.embeddings, embs, rtol=1e-5, atol=1e-5)
  short = scans[2]
  assert short.start_s.tolist() == [0.0] and short.end_s.tolist() == pytest.approx([0.6])


def test_csv_and_pooling(cli, audio, bundle_predictor):
  rc, out, _ = cli(audio["long"], audio["one"], "--top-k", "0", "--quiet")
  assert rc == 0
  rows = list(csv.DictReader(io.StringIO(out)))
  assert tuple(rows[0]) == outputs.CSV_COLUMNS
  long_windows = {
    (r["start_s"], r["end_s"]) for r in rows if r["file"] == audio["long"] and r["kind"] == "window"
  }
  assert sorted(float(s) for s, _ in long_windows) == expected_starts(7.3, 1.0, 1.0)  # default hop = window
  for key in long_windows | {("0.0", "7.3")}:  # --top-k 0: every class for every window and the file
    got = {r["label"] for r in rows if r["file"] == audio["long"] and (r["start_s"], r["end_s"]) == key}
    assert set(LABELS) <= got <= set(LABELS) | {"unknown"}, key
  # The file's score of a class is the mean of its windows' probabilities (--pool mean, the default).
  (scan,) = bundle_predictor.scan([audio["long"]])
  mean = dict(zip(LABELS, scan.probs.mean(0), strict=True))
  summary = {
    r["label"]: float(r["score"]) for r in rows if r["file"] == audio["long"] and r["kind"] == "file"
  }
  confident = scan.probs.mean(0).max() >= 0.5
  for label in LABELS:  # scores are the probabilities themselves (no enrolled species in this bundle)
    assert summary[label] == pytest.approx(float(mean[label]), abs=1e-6), (label, confident)
  rc, out, _ = cli(audio["long"], "--top-k", "0", "--pool", "max", "--format", "json", "--quiet")
  maxed = {e["label"]: e["score"] for e in json.loads(out)[0]["labels"]}
  for i, label in enumerate(LABELS):
    assert maxed[label] == pytest.approx(float(scan.probs[:, i].max()), abs=1e-6)


def test_raven(cli, audio, tmp_path):
  target = tmp_path / "out" / "table.txt"
  rc, out, _ = cli(
    audio["long"], audio["short"], "--format", "raven", "--top-k", "1", "--output", str(target)
  )
  assert rc == 0 and out == ""  # --output: nothing on stdout
  lines = target.read_text().splitlines()
  assert lines[0].split("\t") == list(outputs.RAVEN_COLUMNS)
  assert lines[0].startswith(
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)"
  )
  rows = list(csv.DictReader(io.StringIO(target.read_text()), delimiter="\t"))
  assert [int(r["Selection"]) for r in rows] == list(range(1, len(rows) + 1))
  long = [r for r in rows if r["Begin File"] == audio["long"]]
  labels_per_window = {}
  for r in long:
    labels_per_window.setdefault(float(r["Begin Time (s)"]), []).append(r["Species"])
  assert sorted(labels_per_window) == expected_starts(7.3, 1.0, 1.0)
  assert all(len(v) in (1, 2) for v in labels_per_window.values())  # top 1 (+ "unknown" when unsure)
  assert all(float(r["End Time (s)"]) - float(r["Begin Time (s)"]) == pytest.approx(1.0) for r in long)
  short = [r for r in rows if r["Begin File"] == audio["short"]]
  assert short and all(float(r["End Time (s)"]) == pytest.approx(0.6) for r in short)
  assert {r["High Freq (Hz)"] for r in rows} == {str(SR / 2)} and {r["View"] for r in rows} == {
    "Spectrogram 1"
  }


def test_min_score(cli, audio):
  args = (audio["long"], "--top-k", "0", "--format", "json", "--quiet")
  everything = json.loads(cli(*args)[1])[0]
  filtered = json.loads(cli(*args, "--min-score", "0.2")[1])[0]
  all_scores = [e["score"] for w in everything["windows"] for e in w["labels"]]
  kept = [e["score"] for w in filtered["windows"] for e in w["labels"]]
  assert (
    kept and all(s >= 0.2 for s in kept) and len(kept) == sum(s >= 0.2 for s in all_scores) < len(all_scores)
  )
  assert len(filtered["windows"]) == len(everything["windows"])  # windows stay, with fewer labels


def test_bad_files(cli, audio, tmp_path, capsys):
  folder = tmp_path / "mixed"
  (folder / "deep").mkdir(parents=True)
  (folder / "deep" / "good.wav").write_bytes(pathlib.Path(audio["one"]).read_bytes())
  (folder / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file")
  (folder / "notes.txt").write_text("not listed: not an audio extension")
  rc, out, err = cli(str(folder), "--format", "json")
  assert rc == 0
  assert [r["file"] for r in json.loads(out)] == [str(folder / "deep" / "good.wav")]
  assert str(folder / "broken.wav") in err and "notes.txt" not in err
  rc, out, err = cli(str(folder / "broken.wav"), str(tmp_path / "absent.flac"), "--format", "json")
  assert rc == 1 and json.loads(out) == []
  assert "broken.wav" in err and "absent.flac: no such file" in err
  with pytest.raises(SystemExit) as exit_:  # refused by argparse, before the model is loaded
    cli(audio["one"], "--top-k", "-1")
  assert exit_.value.code == 2 and "--top-k" in capsys.readouterr().err


def test_esc50_clip_at_native_rate(cli, esc50_root):
  from animaljax.audio.io import audio_info

  clip = sorted((esc50_root / "audio").glob("*.flac"))[0]
  rate, frames, _ = audio_info(clip)
  assert rate == 44100  # read at 44.1 kHz, resampled to the model's 16 kHz
  rc, out, _ = cli(str(clip), "--format", "json", "--quiet")
  assert rc == 0
  (r,) = json.loads(out)
  assert r["windows"][-1]["end_s"] == pytest.approx(frames / rate, abs=1e-4)
  assert [w["start_s"] for w in r["windows"]] == expected_starts(frames / rate, 1.0, 1.0)
