"""Predictor + enrolment end to end on a small CNN trained here on 4 of the synthetic call types.

One module fixture packs the synthetic source with 4 classes (harmonic_up, harmonic_down, pulse_train,
chirp_broadband) and trains a CNN6 at 1/8 width for 150 steps on 1 s clips; "trill" and "whistle_flat" (the
source's next call types) are never seen in training and are written to WAV files for enrolment.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from animaljax import enroll as cli
from animaljax.audio.io import AudioError
from animaljax.data.sources.synthetic import synthesize
from animaljax.fewshot import enrol, prototypes
from animaljax.fewshot.store import StoreError
from animaljax.inference import Predictor, load_predictor

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # configs/ is imported as `configs`, as the CLIs do from the repo root

from configs import quickstart  # noqa: E402

SR = 16000
TRAINED = ("harmonic_up", "harmonic_down", "pulse_train", "chirp_broadband")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def write_clips(folder: pathlib.Path, kind: str, split: str, n: int, seed: int = 7) -> list[str]:
  folder.mkdir(parents=True, exist_ok=True)
  paths = []
  for i in range(n):
    path = folder / f"{kind}_{split}_{i}.wav"
    sf.write(path, synthesize(kind, i, split, seed=seed, sample_rate=SR, clip_seconds=1.0), SR)
    paths.append(str(path))
  return paths


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> pathlib.Path:
  from animaljax.data.packing import pack
  from animaljax.data.sources import SyntheticSource
  from animaljax.training.supervised import train_and_evaluate

  root = tmp_path_factory.mktemp("fewshot")
  source = SyntheticSource(num_classes=4, clips_per_class=(24, 6, 0), clip_seconds=1.0, noise_clips=0)
  pack(source, root / "packed", sample_rate=SR, workers=0, progress=False)
  c = quickstart.get_config("smoke")
  c.data.dir, c.data.pack_on_first_use, c.data.clip_seconds = str(root / "packed"), False, 1.0
  c.model.width = 1 / 8
  c.train.batch_size, c.train.steps, c.train.lr, c.train.log_every = 16, 150, 3e-3, 50
  c.eval.every_steps = c.checkpoint.every_steps = 150
  c.checkpoint.async_save = False
  result = train_and_evaluate(c, root / "run")
  assert result["accuracy"] >= 0.5  # the model learned its own classes (chance 0.25)
  return root / "run"


@pytest.fixture(scope="module")
def predictor(workdir) -> Predictor:
  return load_predictor(workdir)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict:
  folder = tmp_path_factory.mktemp("clips")
  out = {kind: {"support": write_clips(folder, kind, "train", 5), "held_out": write_clips(folder, kind, "test", 10)}
         for kind in ("trill", "whistle_flat")}  # fmt: skip
  out.update({kind: {"held_out": write_clips(folder, kind, "test", 6)} for kind in TRAINED})
  return out


# ----------------------------------------------------------------------------------------------------------------
# Predictor
# ----------------------------------------------------------------------------------------------------------------
def test_predictor_from_workdir(predictor):
  assert predictor.labels == TRAINED  # read from the packed dataset's summary
  assert predictor.sample_rate == SR and predictor.clip_samples == SR
  waves = np.random.default_rng(0).normal(0, 0.1, (3, SR)).astype(np.float32)
  emb, logits = predictor.embed(waves), predictor.logits(waves)
  assert emb.shape == (3, predictor.embed_dim) and logits.shape == (3, 4)
  assert np.isfinite(emb).all() and np.isfinite(logits).all()
  int16 = np.round(waves * 32768).astype(np.int16)  # int16 input means the same audio
  np.testing.assert_allclose(predictor.embed(int16), emb, rtol=1e-3, atol=1e-3)


def test_windows_and_embed_file(predictor, tmp_path):
  rng = np.random.default_rng(1)
  long = (0.1 * rng.normal(size=int(2.5 * SR))).astype(np.float32)
  win = predictor.windows(long)
  assert win.shape == (3, SR)  # hop = window, the tail window aligned to the end
  np.testing.assert_array_equal(win[1], long[SR : 2 * SR])
  np.testing.assert_array_equal(win[2], long[-SR:])
  short = long[:100]
  (padded,) = predictor.windows(short)  # the run's rule (data.short_clips, loop by default): one full window
  np.testing.assert_array_equal(padded, np.resize(short, predictor.clip_samples))
  path = tmp_path / "long.wav"
  sf.write(path, long, SR, subtype="FLOAT")
  expected = np.asarray(predictor.embed(win)).mean(0)
  np.testing.assert_allclose(predictor.embed_file(path), expected, rtol=1e-4, atol=1e-5)


def test_model_dir_round_trip(predictor, tmp_path):
  from animaljax.models.pretrained import save_converted

  save_converted(tmp_path / "m", predictor.config, predictor.variables, labels=list(predictor.labels))
  other = load_predictor(tmp_path / "m")
  assert other.labels == predictor.labels and other.fingerprint == predictor.fingerprint
  wave = np.random.default_rng(2).normal(0, 0.1, (1, SR)).astype(np.float32)
  np.testing.assert_allclose(other.embed(wave), predictor.embed(wave), rtol=1e-5, atol=1e-6)
  with pytest.raises(FileNotFoundError, match="neither a model dir"):
    load_predictor(tmp_path)


# ----------------------------------------------------------------------------------------------------------------
# Enrolment
# ----------------------------------------------------------------------------------------------------------------
def test_loo_threshold_matches_direct_computation():
  rng = np.random.default_rng(3)
  emb = rng.normal(size=(5, 6)).astype(np.float32)
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  direct = [np.linalg.norm(unit[i] - np.delete(unit, i, 0).mean(0)) for i in range(5)]
  np.testing.assert_allclose(prototypes.loo_distances(emb), direct, rtol=1e-5)
  assert enrol.calibrate(emb, margin=1.3) == (pytest.approx(1.3 * max(direct), rel=1e-5), "loo")
  assert enrol.calibrate(emb[:1]) == (enrol.DEFAULT_THRESHOLD, "default")
  assert enrol.calibrate(np.repeat(emb[:1], 3, 0))[0] == enrol.MIN_THRESHOLD  # identical clips: the floor


def test_enrol_errors(predictor, clips, tmp_path):
  model = tmp_path / "m"
  from animaljax.models.pretrained import save_converted

  save_converted(model, predictor.config, predictor.variables, labels=list(predictor.labels))
  p = load_predictor(model)
  bad = tmp_path / "notaudio.wav"
  bad.write_bytes(b"this is not audio at all")
  with pytest.raises(AudioError, match="notaudio.wav"):
    enrol.enroll(p, "Trill", [clips["trill"]["support"][0], str(bad)])
  silent = tmp_path / "silent.wav"
  sf.write(silent, np.zeros(SR, np.float32), SR)
  with pytest.raises(AudioError, match="silent.wav.*silent"):
    enrol.enroll(p, "Trill", [str(silent)])
  with pytest.raises(ValueError, match="at least one"):
    enrol.enroll(p, "Trill", [])
  with pytest.raises(ValueError, match="model's own classes"):
    enrol.enroll(p, "Pulse_Train", clips["trill"]["support"])
  with pytest.raises(ValueError, match="separator"):
    enrol.enroll(p, "a/b", clips["trill"]["support"])
  assert enrol.list_species(p) == []  # nothing was stored by the failures
  enrol.enroll(p, "Trill", clips["trill"]["support"][:2])
  with pytest.raises(StoreError, match="already enrolled"):
    enrol.enroll(p, "trill", clips["trill"]["support"][2:])
  merged = enrol.enroll(p, "trill", clips["trill"]["support"][2:], merge=True)
  assert merged.name == "Trill" and merged.num_clips == 5
  assert [os.path.basename(f) for f in merged.files] == [
    os.path.basename(f) for f in clips["trill"]["support"]
  ]
  one = enrol.enroll(p, "Renard roux 🦊", clips["whistle_flat"]["support"][:1])
  assert one.threshold_source == "default"
  user = enrol.enroll(p, "Лиса", clips["whistle_flat"]["support"][1:3], threshold=0.25)
  assert (user.threshold, user.threshold_source) == (0.25, "user")
  assert [s["name"] for s in enrol.list_species(p)] == ["Trill", "Renard roux 🦊", "Лиса"]


def test_classify_enrolled_and_unknown(predictor, clips, tmp_path):
  """With the model's head zeroed (it is never sure), enrolled clips are recognised, other calls unknown."""
  from animaljax.models.pretrained import save_converted

  variables = {**predictor.variables}
  variables["params"] = {
    **variables["params"],
    "head": {k: np.zeros_like(v) for k, v in variables["params"]["head"].items()},
  }
  save_converted(tmp_path / "m", predictor.config, variables, labels=list(predictor.labels))
  p = load_predictor(tmp_path / "m")
  enrol.enroll(p, "Trill", clips["trill"]["support"])
  own = [p.classify(f)[0]["label"] for f in clips["trill"]["held_out"]]
  assert own.count("Trill") >= 7, own
  # A very different sound: rising harmonic stacks (this tiny model maps white noise close to trills).
  others = [p.classify(f) for f in clips["harmonic_up"]["held_out"]]
  assert len(others) == 6
  for ranking in others:
    assert ranking[0]["label"] == "unknown" and ranking[0]["source"] == "unknown", ranking
    assert {r["source"] for r in ranking[1:]} <= {"model", "enrolled"}


def test_end_to_end_cli(workdir, clips, predictor):
  """Enrol an unseen call type from 5 clips with the CLI: its held-out clips become that class; removed, not."""
  held_out = clips["trill"]["held_out"]
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax.enroll", "add", "--model", str(workdir), "--name", "Trill", *clips["trill"]["support"]],
    cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "enrolled 'Trill': 5 clips" in proc.stdout

  def top1(files: list[str]) -> list[str]:
    out = cli.run(cli._parser().parse_args(["classify", "--model", str(workdir), "--json", *files]))
    return [r["ranking"][0]["label"] for r in out["results"]]

  enrolled = top1(held_out)
  # Chance among the 5 labels is 20%; the model alone can never say "Trill".
  assert enrolled.count("Trill") >= 7, enrolled
  own = top1([f for k in TRAINED for f in clips[k]["held_out"]])
  expected = [k for k in TRAINED for _ in clips[k]["held_out"]]
  # This 64-dim toy embedding puts trills near pulse trains and chirps, so those get claimed; the others not.
  assert sum(a == b for a, b in zip(own, expected, strict=True)) >= len(own) // 4, own
  assert cli.main(["list", "--model", str(workdir), "--json"]) == 0
  assert cli.main(["remove", "--model", str(workdir), "--name", "trill"]) == 0
  assert "Trill" not in top1(held_out)
  assert cli.main(["remove", "--model", str(workdir), "--name", "trill"]) == 2  # clear error, not a traceback


def test_cli_reports_bad_file(workdir, tmp_path, capsys):
  bad = tmp_path / "empty.wav"
  bad.write_bytes(b"")
  assert cli.main(["add", "--model", str(workdir), "--name", "X", str(bad)]) == 2
  assert "empty.wav" in capsys.readouterr().err
  out = cli.run(cli._parser().parse_args(["list", "--model", str(workdir)]))
  assert "X" not in [s["name"] for s in out["species"]]
