"""`inference.load`: a bundle written before the package was restructured (issue 14) still loads, runs and
re-exports unchanged.

`data/bundle_v1/` was exported by animaljax at d4c5c3a (the flat `animaljax.export` / `animaljax.predictor`
modules): a random-weight CNN6 at 1/16 width, 16 kHz, 1 s window, three classes (one a Unicode name), with the
serialised `jax.export` forward, and one species ("Nightjar", three clips) enrolled through that version's
`fewshot.enrol.enroll` (its npz still holds the `<key>/prototype` arrays that version wrote and never read).
`data/bundle_v1_expected.npz` holds a (2, 16000) wave and that version's logits and embeddings for it.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from animaljax.bundle import read_manifest
from animaljax.inference import export_model, load_bundle, load_predictor

DATA = pathlib.Path(__file__).resolve().parent / "data"


@pytest.fixture
def old_bundle(tmp_path) -> pathlib.Path:
  """A copy (the species store takes a lock file in its folder, so the checked-in one is never touched)."""
  return pathlib.Path(shutil.copytree(DATA / "bundle_v1", tmp_path / "bundle_v1"))


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
  with np.load(DATA / "bundle_v1_expected.npz", allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


@pytest.mark.parametrize("use_exported", [True, False])
def test_old_bundle_loads_and_gives_the_same_outputs(old_bundle, expected, use_exported):
  p = load_predictor(old_bundle) if use_exported else load_bundle(old_bundle, use_exported=False)
  manifest = read_manifest(old_bundle)
  assert p.labels == ("owl", "Red fox 🦊", "bat") and p.sample_rate == 16000 and p.clip_samples == 16000
  assert (p.exported is not None) == use_exported
  assert p.fingerprint == manifest["fingerprint"]  # unchanged recipe: the enrolled species are not stale
  assert p.source == {"kind": "bundle", "path": str(old_bundle)}
  logits, emb = p._run(expected["wave"])
  np.testing.assert_allclose(np.asarray(logits), expected["logits"], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(emb), expected["embedding"], rtol=1e-5, atol=1e-5)


def test_old_species_store_still_ranks(old_bundle, expected):
  p = load_bundle(old_bundle)
  store = p.species_store()
  species = store.load()
  assert list(species) == ["Nightjar"] and not store.stale
  assert species["Nightjar"].num_clips == 3 and species["Nightjar"].threshold_source == "loo"
  ranking = p.classify(expected["wave"][0], top_k=None)
  assert {r["label"] for r in ranking} >= {"owl", "Red fox 🦊", "bat", "Nightjar"}


def test_old_bundle_reexports_with_its_species(old_bundle, expected, tmp_path):
  out = export_model(old_bundle, tmp_path / "again")
  new, old = read_manifest(out), read_manifest(old_bundle)
  assert new["source"] == {"kind": "bundle", "path": str(old_bundle)}
  # Same weights, same window, same serialised-forward contract (symbolic time from the same minimum).
  for key in ("labels", "sample_rate", "clip_samples", "embed_dim", "fingerprint"):
    assert new[key] == old[key], key
  assert new["inference"] == old["inference"]
  assert new["files"]["params.safetensors"] == old["files"]["params.safetensors"]
  record = json.loads((out / "model.json").read_text())
  assert record.pop("short_clips") == "pad"  # the input rule old bundles were trained with, now recorded
  assert record == json.loads((old_bundle / "model.json").read_text())
  # The species are copied as they are (same embedding), not re-embedded from their (absent) clips.
  assert new["species"]["enrolled"] == ["Nightjar"] and new["species"]["reembedded"] == []
  again = load_bundle(out)
  np.testing.assert_array_equal(
    again.species_store().load()["Nightjar"].embeddings,
    load_bundle(old_bundle).species_store().load()["Nightjar"].embeddings,
  )
  logits, _ = again._run(expected["wave"])
  np.testing.assert_allclose(np.asarray(logits), expected["logits"], rtol=1e-5, atol=1e-5)


def test_neither_a_bundle_a_model_dir_nor_a_workdir(tmp_path):
  with pytest.raises(FileNotFoundError, match="neither a model dir"):
    load_predictor(tmp_path)
