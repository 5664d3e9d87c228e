"""Export bundles: contents, round trip against the workdir, jax.export parity, enrolled species, damaged bundles."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
from predict_support import LABELS, REPO, SR, write_wave

from animaljax import export
from animaljax.bundle import BundleError, export_bundle, read_manifest, tflite
from animaljax.bundle import format as bformat
from animaljax.inference import Predictor, load_bundle, load_predictor

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def workdir_predictor(workdir) -> Predictor:
  return load_predictor(workdir)


def waves(n: int, samples: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(0, 0.1, (n, samples)).astype(np.float32)


def test_bundle_contents(bundle, workdir):
  manifest = json.loads((bundle / bformat.MANIFEST).read_text())
  assert manifest["format"] == bformat.FORMAT and manifest["format_version"] == bformat.FORMAT_VERSION
  assert manifest["animaljax_version"] == bformat.animaljax_version() and manifest["created"].startswith("20")
  assert (
    manifest["labels"] == list(LABELS) and manifest["sample_rate"] == SR and manifest["clip_samples"] == SR
  )
  assert manifest["source"]["kind"] == "workdir" and manifest["source"]["checkpoint"].startswith("best/")
  # The training metrics summary and evaluation charts come along.
  metrics = json.loads((workdir / "metrics.json").read_text())
  assert (
    manifest["metrics"]["accuracy"] == metrics["accuracy"] and manifest["metrics"]["step"] == metrics["step"]
  )
  for name in ("metrics.json", "confusion_matrix.png", "per_class.png", "model.json", "params.safetensors"):
    assert name in manifest["files"], name
  assert (bundle / "confusion_matrix.png").read_bytes() == (workdir / "confusion_matrix.png").read_bytes()
  # Every listed file: its real size and sha256; nothing pickled; an empty species store.
  for rel, info in manifest["files"].items():
    data = (bundle / rel).read_bytes()
    assert len(data) == info["size"] and hashlib.sha256(data).hexdigest() == info["sha256"], rel
  assert not [p for p in bundle.rglob("*") if p.suffix in (".pkl", ".pickle", ".pt")]
  species = json.loads((bundle / "species" / "species.json").read_text())
  assert species["species"] == [] and manifest["species"]["enrolled"] == []
  inference = manifest["inference"]
  assert (
    inference["batch"] == "symbolic" and inference["time"] == "symbolic" and "cpu" in inference["platforms"]
  )
  assert not list(bundle.parent.glob(".tiny.tmp-*"))  # built beside, renamed into place


def test_round_trip_matches_workdir(bundle_predictor, workdir_predictor):
  p, w = bundle_predictor, workdir_predictor
  assert p.labels == w.labels and p.fingerprint == w.fingerprint and p.clip_samples == w.clip_samples
  x = waves(3, SR)
  np.testing.assert_allclose(p.logits(x), w.logits(x), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(p.embed(x), w.embed(x), rtol=1e-5, atol=1e-5)
  long = waves(1, int(2.5 * SR), seed=1)[0]
  a, b = p.classify(long, top_k=None), w.classify(long, top_k=None)
  assert [e["label"] for e in a] == [e["label"] for e in b]
  np.testing.assert_allclose([e["score"] for e in a], [e["score"] for e in b], rtol=1e-5, atol=1e-6)
  assert load_predictor(p.path).exported is not None  # load_predictor hands a bundle to load_bundle


def test_jax_export_parity(bundle):
  fast = load_bundle(bundle)
  flax = load_bundle(bundle, use_exported=False)
  assert fast.exported is not None and flax.exported is None
  for samples in (SR, int(0.8 * SR), 3 * SR):  # the window, and other multiples of the hop (symbolic time)
    assert fast.exported.accepts(samples)
    x = waves(5, samples, seed=samples)
    for a, b in zip(fast._run(x), flax._run(x), strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-4)
  assert fast._flax is None  # every call so far went through the deserialised function: no Flax tracing
  int16 = np.round(waves(2, SR) * 32768).astype(np.int16)  # int16 input is scaled as the model does
  np.testing.assert_allclose(fast.logits(int16), flax.logits(int16), rtol=1e-4, atol=1e-4)
  short = waves(1, 3000)  # shorter than the exported minimum: falls back to the Flax model
  assert not fast.exported.accepts(3000)
  np.testing.assert_allclose(fast.embed(short), flax.embed(short), rtol=1e-5, atol=1e-6)


def test_species_carried_from_model_dir(workdir_predictor, tmp_path):
  from animaljax.fewshot import enrol
  from animaljax.models.pretrained import save_converted

  model_dir = tmp_path / "model"
  p = workdir_predictor
  save_converted(model_dir, p.config, p.variables, labels=list(p.labels))
  (model_dir / "model.json").write_text(
    json.dumps({**json.loads((model_dir / "model.json").read_text()), "clip_seconds": 1.0})
  )
  clips = [write_wave(tmp_path / f"fox{i}.wav", 1.0, seed=10 + i) for i in range(3)]
  enrol.enroll(load_predictor(model_dir), "Red fox 🦊", clips)
  out = tmp_path / "bundle"
  assert export.main(["--model", str(model_dir), "--out", str(out)]) == 0
  manifest = read_manifest(out)
  assert manifest["source"]["kind"] == "model_dir" and manifest["species"]["enrolled"] == ["Red fox 🦊"]
  assert manifest["metrics"] is None and "metrics.json" not in manifest["files"]
  bundled = load_bundle(out)
  assert list(bundled.species_store().load()) == ["Red fox 🦊"]
  ranking = bundled.classify(clips[0], top_k=3)
  assert ranking[0]["label"] == "Red fox 🦊" and ranking[0]["source"] == "enrolled"


def test_overwrite(bundle, tmp_path, capsys):
  out = tmp_path / "copy"
  shutil.copytree(bundle, out)
  assert export.main(["--model", str(bundle), "--out", str(out)]) == 2
  assert "already exists" in capsys.readouterr().err
  # A file an older export wrote (listed in its manifest) goes with the bundle it belongs to.
  (out / "stale.txt").write_text("from the old bundle")
  manifest = json.loads((out / bformat.MANIFEST).read_text())
  manifest["files"]["stale.txt"] = {"size": 19, "sha256": hashlib.sha256(b"from the old bundle").hexdigest()}
  (out / bformat.MANIFEST).write_text(json.dumps(manifest))
  assert export.main(["--model", str(bundle), "--out", str(out), "--overwrite", "--no-jax-export"]) == 0
  assert not (out / "stale.txt").exists() and read_manifest(out)["inference"] is None
  assert load_bundle(out).exported is None  # no serialised function: the Flax model
  assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
  assert (
    export.main(["--model", str(bundle), "--out", str(bundle), "--overwrite"]) == 2
  )  # never over its source


# ----------------------------------------------------------------------------------------------------------------
# Damaged bundles
# ----------------------------------------------------------------------------------------------------------------
def _damaged(bundle: pathlib.Path, tmp_path: pathlib.Path, how: str) -> pathlib.Path:
  out = tmp_path / how
  shutil.copytree(bundle, out)
  params = out / bformat.PARAMS
  if how == "missing":
    params.unlink()
  elif how == "truncated":
    params.write_bytes(params.read_bytes()[:-1000])
  elif how == "flipped":
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF
    params.write_bytes(bytes(data))
  elif how == "newer":
    m = json.loads((out / bformat.MANIFEST).read_text())
    (out / bformat.MANIFEST).write_text(json.dumps({**m, "format_version": bformat.FORMAT_VERSION + 1}))
  elif how == "no_manifest":
    (out / bformat.MANIFEST).unlink()
  return out


@pytest.mark.parametrize(
  "how, file, reason",
  [
    ("missing", "params.safetensors", "missing from the bundle"),
    ("truncated", "params.safetensors", "truncated or modified"),
    ("flipped", "params.safetensors", "sha256 differs"),
    ("newer", "manifest.json", "newer animaljax"),
    ("no_manifest", "manifest.json", "not an animaljax bundle"),
  ],
)
def test_damaged_bundle(bundle, tmp_path, how, file, reason):
  with pytest.raises(BundleError, match=reason) as info:
    load_bundle(_damaged(bundle, tmp_path, how))
  assert pathlib.Path(info.value.path).name == file


def test_cli_reports_damaged_bundle_in_one_line(bundle, tmp_path, capsys):
  from animaljax import embed

  damaged = _damaged(bundle, tmp_path, "truncated")
  clip = write_wave(tmp_path / "clip.wav", 1.0)
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax.predict", "--model", str(damaged), clip],
    capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 2 and proc.stdout == "", proc.stderr
  assert "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "params.safetensors" in errors[0] and "truncated" in errors[0], proc.stderr
  assert embed.main(["--model", str(damaged), clip, "--out", str(tmp_path / "e.parquet")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error:") and "\n" not in err and "params.safetensors" in err
  assert not (tmp_path / "e.parquet").exists()


# ----------------------------------------------------------------------------------------------------------------
# TFLite
# ----------------------------------------------------------------------------------------------------------------
def test_tflite(bundle_predictor, tmp_path):
  from animaljax.audio import frontend
  from animaljax.data.sources.synthetic import synthesize

  p = bundle_predictor
  out = export_bundle(p, tmp_path / "tfl", jax_export=False, tflite=True)
  entry = read_manifest(out)["tflite"]  # the checksums of every file were verified here
  assert entry["input"] == [1, SR] and entry["files"] == {
    "float32": [bformat.TFLITE], "float16": [bformat.TFLITE_FP16],
    "int8": [bformat.TFLITE_FRONTEND, bformat.TFLITE_INT8],
  }  # fmt: skip
  # Held-out synthetic calls of the 4 trained types (6 each).
  x = np.stack(
    [synthesize(k, i, "test", seed=11, sample_rate=SR, clip_seconds=1.0) for k in LABELS for i in range(6)]
  )
  x = x.astype(np.float32)
  ref_logits, ref_emb = (np.asarray(a) for a in p._run(x))
  results = {
    k: tflite.tflite_forward([out / f for f in files], len(LABELS))(x) for k, files in entry["files"].items()
  }
  logits, emb = results["float32"]
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(emb, ref_emb, rtol=1e-4, atol=1e-4)
  agree = {k: float((v[0].argmax(1) == ref_logits.argmax(1)).mean()) for k, v in results.items()}
  assert agree["float16"] == 1.0 and np.abs(results["float16"][0] - ref_logits).max() < 0.05
  # int8 quantises only the network; its float32 front end alone gives the model's log-mel (one file held int8
  # matrices and kept 62.5% of the labels, see tflite.write_tflite). Stated tolerance: >= 95% top-1 agreement.
  assert agree["int8"] >= 0.95, agree
  front = tflite.tflite_forward(out / bformat.TFLITE_FRONTEND, 0)
  feats = front(x[:4])[1].reshape(4, *entry["features"][1:])
  np.testing.assert_allclose(feats, np.asarray(frontend.features(x[:4], p.config.frontend)), atol=1e-2)
  # The int8 network is about 4x smaller than the same network in float32 (the float file minus its front end).
  sizes = {
    name: (out / name).stat().st_size
    for name in (bformat.TFLITE, bformat.TFLITE_FRONTEND, bformat.TFLITE_INT8)
  }
  assert sizes[bformat.TFLITE_INT8] < 0.35 * (sizes[bformat.TFLITE] - sizes[bformat.TFLITE_FRONTEND]), sizes
