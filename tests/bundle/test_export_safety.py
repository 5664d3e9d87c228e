"""Nothing lost by `export` (issue 13): --overwrite replaces only a bundle (item 2), and re-exporting never drops
enrolled species silently (item 3): they are copied, re-embedded from their clips, or the export is refused.

Audio: real ESC-50 animal clips (the `esc50_root` fixture), copied so that a test can delete one.
"""

from __future__ import annotations

import json
import pathlib
import shutil

import jax
import numpy as np
import pytest
from predict_support import snapshot

from animaljax import export
from animaljax.bundle import read_manifest
from animaljax.fewshot import enrol
from animaljax.fewshot.store import SpeciesStore
from animaljax.inference import load_bundle, load_predictor

EXPORT = ["--no-jax-export"]  # the serialised forward is not what these tests are about: keep them quick


def one_error_line(err: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
  return lines[0]


@pytest.fixture(scope="module")
def esc50_clips(esc50_root) -> dict[str, list[pathlib.Path]]:
  """ESC-50 clips by category (the CSV's `category` column)."""
  by = {}
  for line in (esc50_root / "meta" / "esc50.csv").read_text().splitlines()[1:]:
    name, _fold, _target, category = line.split(",")[:4]
    by.setdefault(category, []).append(esc50_root / "audio" / name)
  return {k: sorted(v) for k, v in by.items()}


def copy_clips(esc50_clips, folder: pathlib.Path, category: str, n: int) -> list[str]:
  folder.mkdir(parents=True, exist_ok=True)
  return [str(shutil.copy(p, folder / p.name)) for p in esc50_clips[category][:n]]


@pytest.fixture(scope="module")
def retrained(workdir, tmp_path_factory) -> pathlib.Path:
  """A converted model dir of the workdir's model with every weight nudged by ~5%: the same embed_dim, another
  fingerprint (what a retrained model looks like to the species store)."""
  from animaljax.models.pretrained import save_converted

  p = load_predictor(workdir)
  rng = np.random.default_rng(0)
  nudged = jax.tree.map(
    lambda x: (np.asarray(x) * (1 + 0.05 * rng.standard_normal(np.shape(x)))).astype(np.asarray(x).dtype),
    p.variables,
  )
  root = save_converted(
    tmp_path_factory.mktemp("retrained") / "model", p.config, nudged, labels=list(p.labels)
  )
  meta = json.loads((root / "model.json").read_text())
  (root / "model.json").write_text(json.dumps({**meta, "clip_seconds": 1.0}))
  assert load_predictor(root).fingerprint != p.fingerprint
  return root


def bundle_with_species(bundle, esc50_clips, tmp_path) -> tuple[pathlib.Path, dict]:
  """A copy of the session bundle with three species enrolled: LOO (margin 1.5), a user threshold, one clip."""
  out = tmp_path / "bundle"
  shutil.copytree(bundle, out)
  p = load_bundle(out)
  clips = {
    "Red fox 🦊": copy_clips(esc50_clips, tmp_path / "clips" / "fox", "dog", 3),
    "Owl": copy_clips(esc50_clips, tmp_path / "clips" / "owl", "crow", 2),
    "Bat": copy_clips(esc50_clips, tmp_path / "clips" / "bat", "insects", 1),
  }
  enrol.enroll(p, "Red fox 🦊", clips["Red fox 🦊"], margin=1.5)
  enrol.enroll(p, "Owl", clips["Owl"], threshold=0.4)
  enrol.enroll(p, "Bat", clips["Bat"])
  return out, p.species_store().load()


# ----------------------------------------------------------------------------------------------------------------
# Item 2: --overwrite replaces a bundle, nothing else
# ----------------------------------------------------------------------------------------------------------------
def test_overwrite_never_replaces_a_folder_that_is_not_a_bundle(bundle, esc50_clips, tmp_path, capsys):
  recordings = tmp_path / "recordings"
  copy_clips(esc50_clips, recordings / "dogs", "dog", 3)
  copy_clips(esc50_clips, recordings, "rooster", 2)
  (recordings / "notes.txt").write_text("field notes, 12 May\n")
  (tmp_path / "beside.txt").write_text("a file next to the folder\n")
  before = snapshot(tmp_path)
  for flags in ([], ["--overwrite"]):
    assert export.main(["--model", str(bundle), "--out", str(recordings), *EXPORT, *flags]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(recordings) in line and "not an animaljax bundle" in line and "--overwrite" not in line
  assert snapshot(tmp_path) == before  # every recording, byte for byte; no temporaries left

  # A bundle holding a file no export wrote is not replaced either: the file is named.
  kept = tmp_path / "kept"
  shutil.copytree(bundle, kept)
  shutil.copy(esc50_clips["pig"][0], kept / "my_recording.flac")
  before = snapshot(tmp_path)
  assert export.main(["--model", str(bundle), "--out", str(kept), "--overwrite", *EXPORT]) == 2
  assert "my_recording.flac" in one_error_line(capsys.readouterr().err)
  assert snapshot(tmp_path) == before

  # What may be written: an empty folder, and a bundle with --overwrite.
  (tmp_path / "empty").mkdir()
  assert export.main(["--model", str(bundle), "--out", str(tmp_path / "empty"), *EXPORT]) == 0
  (kept / "my_recording.flac").unlink()
  assert export.main(["--model", str(bundle), "--out", str(kept), "--overwrite", *EXPORT]) == 0
  assert read_manifest(kept)["inference"] is None
  assert snapshot(recordings) == {
    k[len("recordings/") :]: v for k, v in before.items() if k.startswith("recordings/")
  }


# ----------------------------------------------------------------------------------------------------------------
# Item 3: enrolled species are carried over, re-embedded, or the export is refused
# ----------------------------------------------------------------------------------------------------------------
def test_reexport_carries_enrolled_species(bundle, workdir, retrained, esc50_clips, tmp_path, capsys):
  out, before = bundle_with_species(bundle, esc50_clips, tmp_path)
  names = list(before)

  # The same model (the workdir the bundle came from): the store is copied as is.
  assert export.main(["--workdir", str(workdir), "--out", str(out), "--overwrite", *EXPORT]) == 0
  assert "carried 3 enrolled species" in capsys.readouterr().out
  manifest = read_manifest(out)
  assert manifest["species"]["enrolled"] == sorted(names) and manifest["species"]["reembedded"] == []
  copied = load_bundle(out).species_store().load()
  assert list(copied) == names
  for name, s in copied.items():
    old = before[name]
    np.testing.assert_array_equal(s.embeddings, old.embeddings)
    assert (s.key, s.files, s.threshold, s.threshold_source) == (
      old.key,
      old.files,
      old.threshold,
      old.threshold_source,
    )

  # Another model with the same embed_dim: re-embedded from the stored clips, names and user thresholds kept.
  assert export.main(["--model", str(retrained), "--out", str(out), "--overwrite", *EXPORT]) == 0
  assert "3 re-embedded from their clips" in capsys.readouterr().out
  new = load_bundle(out)
  store = new.species_store()
  carried = store.load()
  assert list(carried) == names and not store.stale  # written for the new model's fingerprint
  assert read_manifest(out)["species"]["reembedded"] == names
  for name, s in carried.items():
    old = before[name]
    assert (s.key, s.files, s.added, s.created) == (old.key, old.files, old.added, old.created)
    want = new.analyse([new.load_file(f) for f in s.files])[1]
    np.testing.assert_allclose(s.embeddings, want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(s.embeddings, old.embeddings, atol=1e-4)
  assert (carried["Owl"].threshold, carried["Owl"].threshold_source) == (0.4, "user")
  assert (carried["Bat"].threshold, carried["Bat"].threshold_source) == (enrol.DEFAULT_THRESHOLD, "default")
  fox = carried["Red fox 🦊"]  # recalibrated with the margin it was enrolled with
  assert fox.threshold_source == "loo" and fox.threshold == pytest.approx(
    1.5 * enrol.loo_distances(fox.embeddings).max()
  )
  assert fox.threshold != pytest.approx(before["Red fox 🦊"].threshold)


def test_reexport_refuses_to_drop_species_silently(bundle, retrained, esc50_clips, tmp_path, capsys):
  out, before = bundle_with_species(bundle, esc50_clips, tmp_path)
  gone = before["Red fox 🦊"].files[1]
  pathlib.Path(gone).unlink()
  snap = snapshot(tmp_path)
  assert export.main(["--model", str(retrained), "--out", str(out), "--overwrite", *EXPORT]) == 2
  line = one_error_line(capsys.readouterr().err)
  assert "'Red fox 🦊'" in line and gone in line and "--drop-species" in line and "Owl" not in line
  assert snapshot(tmp_path) == snap  # the old bundle and its species untouched

  assert (
    export.main(["--model", str(retrained), "--out", str(out), "--overwrite", "--drop-species", *EXPORT]) == 0
  )
  stdout = capsys.readouterr().out
  assert "dropped enrolled species 'Red fox 🦊'" in stdout and gone in stdout
  assert list(load_bundle(out).species_store().load()) == ["Owl", "Bat"]
  (dropped,) = read_manifest(out)["species"]["dropped"]
  assert dropped["name"] == "Red fox 🦊" and gone in dropped["reason"]


def test_export_from_a_model_dir_reembeds_species_of_other_weights(bundle, retrained, esc50_clips, tmp_path):
  """The source's own store follows the same rule: species enrolled with other weights (here: copied from a
  bundle of the workdir into the retrained model's folder) are re-embedded, not passed off as the new model's."""
  enrolled, before = bundle_with_species(bundle, esc50_clips, tmp_path)
  model = tmp_path / "model"
  shutil.copytree(retrained, model)
  shutil.copytree(enrolled / "species", model / "species")
  out = tmp_path / "new"
  assert export.main(["--model", str(model), "--out", str(out), *EXPORT]) == 0
  assert read_manifest(out)["species"]["reembedded"] == list(before)
  new = load_bundle(out)
  carried = new.species_store().load()
  assert list(carried) == list(before)
  for s in carried.values():
    want = new.analyse([new.load_file(f) for f in s.files])[1]
    np.testing.assert_allclose(s.embeddings, want, rtol=1e-5, atol=1e-5)
  recorded = SpeciesStore(out, embed_dim=new.embed_dim).recorded()
  assert recorded == (new.embed_dim, new.fingerprint)


def test_reexport_carries_background_clips(bundle, workdir, retrained, esc50_clips, tmp_path, capsys):
  """Background clips (issue 17) travel like the species: copied for the same model, re-embedded from their
  clips for another one (the species then recalibrated against them), refused or dropped when a clip is gone."""
  from animaljax.fewshot.background import add_background, embed_windows

  out, _ = bundle_with_species(bundle, esc50_clips, tmp_path)
  clips = copy_clips(esc50_clips, tmp_path / "clips" / "noise", "insects", 3)
  add_background(load_bundle(out), clips)
  before = load_bundle(out).species_store().load_background()

  assert export.main(["--workdir", str(workdir), "--out", str(out), "--overwrite", *EXPORT]) == 0
  assert "carried 3 background clips\n" in capsys.readouterr().out
  copied = load_bundle(out).species_store().load_background()
  assert (copied.files, copied.windows) == (before.files, before.windows)
  np.testing.assert_array_equal(copied.embeddings, before.embeddings)

  assert export.main(["--model", str(retrained), "--out", str(out), "--overwrite", *EXPORT]) == 0
  assert "carried 3 background clips, re-embedded from their clips" in capsys.readouterr().out
  assert read_manifest(out)["species"]["background"] == {"clips": 3, "reembedded": True, "dropped": []}
  new = load_bundle(out)
  carried = new.species_store().load_background()
  want, windows = embed_windows(new, [new.load_file(f) for f in clips])
  assert carried.files == clips and carried.windows == windows
  np.testing.assert_allclose(carried.embeddings, want, rtol=1e-5, atol=1e-5)
  fox = new.species_store().load()["Red fox 🦊"]
  assert fox.threshold == pytest.approx(enrol.calibrate(fox.embeddings, 1.5, carried.embeddings)[0])
  np.testing.assert_array_equal(fox.background, carried.embeddings)

  pathlib.Path(clips[1]).unlink()
  assert export.main(["--workdir", str(workdir), "--out", str(out), "--overwrite", *EXPORT]) == 2
  line = one_error_line(capsys.readouterr().err)
  assert "background clips" in line and clips[1] in line and "--drop-species" in line
  dropping = ["--workdir", str(workdir), "--out", str(out), "--overwrite", "--drop-species", *EXPORT]
  assert export.main(dropping) == 0
  assert "dropped the background clips of" in capsys.readouterr().out
  assert load_bundle(out).species_store().load_background() is None
  (dropped,) = read_manifest(out)["species"]["background"]["dropped"]
  assert clips[1] in dropped["reason"]
