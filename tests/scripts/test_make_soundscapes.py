"""`scripts/make_soundscapes.py` on the real ESC-50 animals and wind: exact tables, stated SNRs, no leakage."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
DATA = pathlib.Path(os.environ.get("ANIMALJAX_SHARED_DATA", REPO.parent / "shared" / "data"))
ESC50, WIND = DATA / "esc50-animals", DATA / "noise" / "wind"

pytestmark = pytest.mark.skipif(
  not (ESC50 / "meta" / "esc50.csv").is_file() or not WIND.is_dir(),
  reason=f"real ESC-50 animals and wind not found under {DATA} (set ANIMALJAX_SHARED_DATA to shared/data)",
)

sys.path.insert(0, str(SCRIPTS))

import make_soundscapes  # noqa: E402

SR, SECONDS = 16000, 10.0
# Loud backgrounds and high SNRs: some soundscapes (3 of 5 with this seed) must be scaled down to avoid clipping.
ARGS = [
  "--esc50", str(ESC50), "--noise", str(WIND), "--seconds", str(SECONDS), "--sample-rate", str(SR),
  "--per-split", "train=1-4:3", "test=5:2", "--events", "2-4", "--snr-db", "5", "25",
  "--background-dbfs", "-35", "-20", "--seed", "7",
]  # fmt: skip
HEADER = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tSpecies"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  out = tmp_path_factory.mktemp("soundscapes") / "out"
  assert make_soundscapes.main([*ARGS, "--out", str(out)]) == 0
  return out, json.loads((out / "soundscapes.json").read_text())


@pytest.fixture(scope="module")
def meta():
  with open(ESC50 / "meta" / "esc50.csv", newline="") as f:
    return {row["filename"]: row for row in csv.DictReader(f)}


def read_table(path: pathlib.Path) -> list[dict]:
  """The selections, through crowsetta's Raven reader where it is installed (csv otherwise)."""
  lines = path.read_text().splitlines()
  assert lines[0] == HEADER
  rows = list(csv.DictReader(lines, delimiter="\t"))
  try:
    import crowsetta
  except ImportError:
    return rows
  df = crowsetta.formats.bbox.Raven.from_file(path, annot_col="Species").df
  assert len(df) == len(rows)
  assert np.allclose(df["begin_time_s"], [float(r["Begin Time (s)"]) for r in rows])
  assert list(df["annotation"]) == [r["Species"] for r in rows]
  bboxes = crowsetta.formats.bbox.Raven.from_file(path, annot_col="Species").to_bbox()
  assert all(b.onset < b.offset and b.low_freq < b.high_freq for b in bboxes)
  return rows


def test_layout_and_tables(built, meta):
  out, report = built
  scapes = report["soundscapes"]
  assert [s["name"] for s in scapes] == [
    "training_000",
    "training_001",
    "training_002",
    "test_000",
    "test_001",
  ]
  written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
  expected = ["soundscapes.json"] + [s["wav"] for s in scapes] + [s["table"] for s in scapes]
  assert written == sorted(expected)
  for s in scapes:
    info = sf.info(out / s["wav"])
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (SR, 1, "PCM_16", SR * SECONDS)
    rows = read_table(out / s["table"])
    assert 2 <= len(rows) == len(s["events"]) <= 4
    assert [int(r["Selection"]) for r in rows] == list(range(1, len(rows) + 1))
    begins = [float(r["Begin Time (s)"]) for r in rows]
    assert begins == sorted(begins)
    for row, ev in zip(rows, s["events"], strict=True):
      assert (row["View"], row["Channel"]) == ("Spectrogram 1", "1")
      begin, end = float(row["Begin Time (s)"]), float(row["End Time (s)"])
      low, high = float(row["Low Freq (Hz)"]), float(row["High Freq (Hz)"])
      assert 0 <= begin < end <= SECONDS and 0 <= low < high <= SR / 2
      assert len(row["Begin Time (s)"].split(".")[1]) == 6
      # Sample-exact: the table's span is the event's samples.
      assert abs(begin - ev["onset_sample"] / SR) <= 5e-7 + 1e-9
      assert abs(end - (ev["onset_sample"] + ev["samples"]) / SR) <= 5e-7 + 1e-9
      assert ev["onset_sample"] >= 0 and ev["onset_sample"] + ev["samples"] <= SR * SECONDS
      assert row["Species"] == meta[ev["file"]]["category"]


def test_folds_and_backgrounds_do_not_leak(built, meta):
  _, report = built
  folds = {"Training": set(), "Test": set()}
  for s in report["soundscapes"]:
    folds[s["split"]] |= {int(meta[ev["file"]]["fold"]) for ev in s["events"]}
    assert s["background"]["file"] in report["noise_split"][s["split"]]
    assert len({ev["file"] for ev in s["events"]}) == len(s["events"])  # distinct clips within a soundscape
  assert folds["Training"] <= {1, 2, 3, 4} and folds["Training"]
  assert folds["Test"] == {5}
  train, test = (set(report["noise_split"][k]) for k in ("Training", "Test"))
  assert not train & test and train | test == {p.name for p in WIND.glob("*.flac")}
  assert (len(train), len(test)) == (18, 6)
  source = make_soundscapes.source_recording
  assert not {source(f) for f in train} & {source(f) for f in test}  # takes of one recording stay together


def test_audio_is_the_claimed_mix(built):
  """Every event, rebuilt straight from its ESC-50 file, sits in the WAV at its stated span, SNR and band."""
  import librosa

  out, report = built
  settings = report["settings"]
  assert 1 <= report["scaled_to_avoid_clipping"] < 5  # these settings exercise both paths
  for s in report["soundscapes"]:
    wav, sr = sf.read(out / s["wav"], dtype="int16")
    assert sr == SR
    mixture = wav.astype(np.float64) / 32767 / s["output_gain"]
    assert np.abs(wav).max() / 32767 <= 0.99 + 1e-4
    assert s["scaled_to_avoid_clipping"] == (s["output_gain"] < 1.0) == (s["peak_before_limit"] > 0.99)
    residual = mixture.copy()
    stems = []
    for ev in s["events"]:
      clip, native = sf.read(ESC50 / "audio" / ev["file"], dtype="float64")
      clip = librosa.resample(clip, orig_sr=native, target_sr=SR, res_type="soxr_hq")
      a, b = round(ev["clip_start_s"] * SR), round(ev["clip_end_s"] * SR)
      assert b - a == ev["samples"]
      outside = np.concatenate([clip[:a], clip[b:]])
      if outside.size:  # what the trim dropped is near-silence
        assert np.sqrt(np.mean(outside**2)) <= 2 * np.abs(clip).max() * 10 ** (-settings["trim_db"] / 20)
      stem = clip[a:b] * ev["gain"]
      residual[ev["onset_sample"] : ev["onset_sample"] + len(stem)] -= stem
      stems.append((ev, stem))
    # What is left once the events are taken out is the background, at its stated level ...
    background, _ = make_soundscapes.render(
      s, make_soundscapes.Sources(ESC50, WIND, SR, settings["trim_db"]), int(SR * SECONDS)
    )
    assert np.abs(residual - background).max() < 2 / 32767 / s["output_gain"]
    level = 20 * np.log10(np.sqrt(np.mean(residual**2)))
    assert abs(level - s["background"]["level_dbfs"]) < 0.5 and -35 <= s["background"]["level_dbfs"] <= -20
    for ev, stem in stems:
      span = residual[ev["onset_sample"] : ev["onset_sample"] + len(stem)]
      # ... and each event stands at its stated SNR above it, measured on the written audio.
      snr = 20 * np.log10(np.sqrt(np.mean(stem**2)) / np.sqrt(np.mean(span**2)))
      assert abs(snr - ev["snr_db"]) < 0.5 and 5 <= ev["snr_db"] <= 25
      # The table's band holds at least 90% of the event's energy (DC excluded).
      power = np.abs(np.fft.rfft(stem)) ** 2
      power[0] = 0
      freqs = np.fft.rfftfreq(len(stem), 1 / SR)
      inside = power[(freqs >= ev["low_hz"]) & (freqs <= ev["high_hz"])].sum()
      assert inside >= 0.9 * power.sum() - 1e-9


def test_same_seed_same_bytes_and_refusals(built, tmp_path):
  out, _ = built
  again = tmp_path / "again"
  cmd = [sys.executable, str(SCRIPTS / "make_soundscapes.py")]
  done = subprocess.run([*cmd, *ARGS, "--out", str(again)], capture_output=True, text=True, timeout=120)
  assert done.returncode == 0, done.stderr
  files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
  assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
  for f in files:
    assert (out / f).read_bytes() == (again / f).read_bytes(), f

  # A non-empty --out is refused and left as it was.
  before = (out / "soundscapes.json").read_bytes()
  refused = subprocess.run([*cmd, *ARGS, "--out", str(out)], capture_output=True, text=True, timeout=60)
  assert refused.returncode == 2
  assert refused.stderr.startswith("error: ") and len(refused.stderr.strip().splitlines()) == 1
  assert "not empty" in refused.stderr and (out / "soundscapes.json").read_bytes() == before


@pytest.mark.parametrize(
  "change, message",
  [
    (["--per-split", "train=1-4:3", "test=4,5:2"], "in both Training and Test"),
    (["--esc50", "/nonexistent/esc50"], "is not a folder"),
    (["--noise", "/nonexistent/wind"], "is not a folder"),
    (["--per-split", "train=1-4"], "NAME=FOLDS:COUNT"),
    (["--events", "5-2"], "bad --events"),
  ],
)
def test_bad_arguments_are_one_error_line(change, message, tmp_path, capsys):
  out = tmp_path / "out"
  assert make_soundscapes.main([*ARGS, *change, "--out", str(out)]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
  assert not out.exists()
