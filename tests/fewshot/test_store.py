"""The species store on its own (numpy only, no model): round trip, atomic saves, concurrent writers, names."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from animaljax.fewshot import enrol
from animaljax.fewshot.store import Species, SpeciesStore, StoreError, validate_name

REPO = pathlib.Path(__file__).resolve().parents[2]
DIM = 8


def species(name: str, k: int = 3, seed: int = 0, **kw) -> Species:
  emb = np.random.default_rng(seed).normal(size=(k, DIM)).astype(np.float32)
  return Species(name=name, embeddings=emb, files=[f"/clips/{name}_{i}.wav" for i in range(k)],
                 added=["2026-01-01T00:00:00+00:00"] * k, threshold=0.3, **kw)  # fmt: skip


def test_round_trip_keeps_everything(tmp_path):
  store = SpeciesStore(tmp_path, embed_dim=DIM, fingerprint="abc")
  a, b = species("Red fox", 3, 1), species("Лиса 🦊", 2, 2, threshold_source="user")
  store.add(a)
  store.add(b)
  loaded = SpeciesStore(tmp_path, embed_dim=DIM, fingerprint="abc").load()
  assert list(loaded) == ["Red fox", "Лиса 🦊"]  # enrolment order
  for orig in (a, b):
    got = loaded[orig.name]
    np.testing.assert_array_equal(got.embeddings, orig.embeddings)
    assert (got.files, got.added, got.threshold, got.threshold_source, got.created) == (
      orig.files, orig.added, orig.threshold, orig.threshold_source, orig.created
    )  # fmt: skip
  meta = json.loads((tmp_path / "species" / "species.json").read_text(encoding="utf-8"))
  assert meta["embed_dim"] == DIM and meta["fingerprint"] == "abc"
  assert "Лиса 🦊" in (tmp_path / "species" / "species.json").read_text(encoding="utf-8")  # readable JSON
  # The arrays file opens without pickle and holds the clips' embeddings only (the prototype derives from them:
  # fewshot.prototypes).
  with np.load(tmp_path / "species" / meta["embeddings"], allow_pickle=False) as npz:
    assert sorted(npz.files) == sorted(f"{s.key}/embeddings" for s in (a, b))


def test_empty_store_and_remove(tmp_path):
  store = SpeciesStore(tmp_path, embed_dim=DIM)
  assert store.load() == {}
  assert not (tmp_path / "species").exists()  # reading creates nothing
  store.add(species("Red fox"))
  store.add(species("Badger"))
  assert store.remove("red FOX").name == "Red fox"  # case-insensitive
  assert list(store.load()) == ["Badger"]
  with pytest.raises(StoreError, match="no species named 'Otter'.*Badger"):
    store.remove("Otter")
  store.remove("Badger")
  assert store.load() == {}


def test_embedding_dim_mismatch_is_a_clear_error(tmp_path):
  SpeciesStore(tmp_path, embed_dim=DIM).add(species("Red fox"))
  with pytest.raises(StoreError, match="8-dim embeddings but this model gives 16-dim"):
    SpeciesStore(tmp_path, embed_dim=16).load()
  with pytest.raises(StoreError, match="model gives 8"):
    SpeciesStore(tmp_path, embed_dim=DIM).add(
      Species(name="Wide", embeddings=np.ones((2, 16)), files=["a", "b"], added=["t", "t"], threshold=1.0)
    )


def _valid_meta(tmp_path) -> dict:
  SpeciesStore(tmp_path, embed_dim=DIM, fingerprint="abc").add(species("Red fox"))
  return json.loads((tmp_path / "species" / "species.json").read_text())


@pytest.mark.parametrize(
  "damage, what",
  [
    (lambda m: {"format": 1}, "no 'embed_dim' field"),
    (lambda m: [m], "expected a JSON object"),
    (lambda m: {**m, "embed_dim": "eight"}, "'embed_dim' is 'eight'"),
    (lambda m: {**m, "species": {"Red fox": {}}}, "'species' is"),
    (lambda m: {**m, "embeddings": None}, "'embeddings'"),
    (lambda m: {**m, "species": [{k: v for k, v in m["species"][0].items() if k != "key"}]}, "no 'key' field"),
    (lambda m: {**m, "species": [{**m["species"][0], "threshold": "0.3"}]}, "'threshold' = '0.3'"),
    (lambda m: {**m, "species": [{**m["species"][0], "threshold": 0}]}, "threshold 0"),
    (lambda m: {**m, "species": [{**m["species"][0], "threshold_source": "guess"}]}, "threshold_source 'guess'"),
    (lambda m: {**m, "species": [{**m["species"][0], "clips": [{"file": "a.wav"}]}]}, "clips without"),
    (lambda m: {**m, "species": ["Red fox"]}, "species entry 0 is str"),
  ],
  ids=["only-format", "list", "dim-type", "species-dict", "no-npz", "no-key", "threshold-str", "threshold-0",
       "source", "clip-fields", "entry-str"],
)  # fmt: skip
def test_valid_json_with_wrong_fields_is_a_damaged_store(tmp_path, damage, what):
  """Valid JSON with the wrong fields is as damaged as unparseable JSON: a StoreError naming the file and
  what is wrong (it was a bare KeyError), for every way of reading the store."""
  path = tmp_path / "species" / "species.json"
  path.write_text(json.dumps(damage(_valid_meta(tmp_path))))
  store = SpeciesStore(tmp_path, embed_dim=DIM, fingerprint="abc")
  for read in (store.load, store.recorded, lambda: store.add(species("Badger"))):
    with pytest.raises(StoreError) as info:
      read()
    assert str(path) in str(info.value) and "damaged" in str(info.value) and what in str(info.value)
    assert isinstance(info.value, ValueError)  # answered in one line by the commands (animaljax.cli.run)


def test_recorded_model(tmp_path):
  store = SpeciesStore(tmp_path, embed_dim=1)  # any size: `recorded` reads what the store says
  assert store.recorded() is None
  _valid_meta(tmp_path)
  assert store.recorded() == (DIM, "abc")


def test_other_model_fingerprint_warns(tmp_path):
  SpeciesStore(tmp_path, embed_dim=DIM, fingerprint="old").add(species("Red fox"))
  store = SpeciesStore(tmp_path, embed_dim=DIM, fingerprint="new")
  with pytest.warns(UserWarning, match="other model weights"):
    assert list(store.load()) == ["Red fox"]
  assert store.stale


def test_duplicates_rejected_or_merged(tmp_path):
  store = SpeciesStore(tmp_path, embed_dim=DIM)
  first = store.add(species("Red fox", 2, 1))
  with pytest.raises(StoreError, match="already enrolled.*merge"):
    store.add(species("red fox", 3, 2))
  assert store.load()["Red fox"].num_clips == 2  # the refused add changed nothing
  new = species("RED FOX", 3, 2)
  merged = store.add(new, merge=True, recalibrate=lambda s: enrol.calibrate(s.embeddings))
  loaded = store.load()
  assert list(loaded) == ["Red fox"]  # the first spelling and the creation time are kept
  got = loaded["Red fox"]
  assert got.num_clips == 5 and got.created == first.created and got.key == first.key
  np.testing.assert_array_equal(got.embeddings, np.concatenate([first.embeddings, new.embeddings]))
  assert got.files == first.files + new.files
  assert merged.threshold_source == "loo"
  assert got.threshold == pytest.approx(enrol.calibrate(got.embeddings)[0])


@pytest.mark.parametrize(
  "name", ["Red fox", "Renard roux 🦊", "Лиса", "  Grey wolf  ", "Cuculus canorus (f.)", "狐"]
)
def test_valid_names(name):
  assert validate_name(name) == name.strip()


@pytest.mark.parametrize(
  "name, why",
  [
    ("", "empty"), ("   \t", "empty"), ("a/b", "separator"), ("a\\b", "separator"), ("../x", "separator"),
    ("fox\n", "control"), ("fo\x00x", "control"), ("fo\u2028x", "control"), ("..", "not allowed"),
    ("x" * 201, "limit"),
  ],
)  # fmt: skip
def test_invalid_names(name, why):
  with pytest.raises(ValueError, match=why):
    validate_name(name)


# ----------------------------------------------------------------------------------------------------------------
# Crash safety
# ----------------------------------------------------------------------------------------------------------------
def test_failure_mid_save_leaves_previous_store(tmp_path, monkeypatch):
  store = SpeciesStore(tmp_path, embed_dim=DIM)
  store.add(species("Red fox", 2, 1))
  before = {p.name: p.read_bytes() for p in (tmp_path / "species").iterdir() if p.is_file()}
  real_replace = os.replace

  def failing_replace(src, dst):  # the new npz lands, then the commit (species.json) fails
    if str(dst).endswith("species.json"):
      raise OSError("disk full")
    return real_replace(src, dst)

  monkeypatch.setattr(os, "replace", failing_replace)
  with pytest.raises(OSError, match="disk full"):
    store.add(species("Badger", 2, 2))
  monkeypatch.undo()
  assert list(SpeciesStore(tmp_path, embed_dim=DIM).load()) == ["Red fox"]
  for name, data in before.items():
    assert (tmp_path / "species" / name).read_bytes() == data
  # The next save sweeps the orphaned npz and temporaries, and works.
  store.add(species("Otter", 2, 3))
  files = sorted(p.name for p in (tmp_path / "species").iterdir())
  assert len([f for f in files if f.startswith("embeddings-")]) == 1 and not [f for f in files if ".tmp" in f]
  assert list(store.load()) == ["Red fox", "Otter"]


def test_process_killed_mid_save_leaves_previous_store(tmp_path):
  """A real crash (os._exit, no cleanup) at each point of a save: after the npz, during the json write."""
  SpeciesStore(tmp_path, embed_dim=DIM).add(species("Red fox", 2, 1))
  for point in ("after_npz", "json_written"):
    script = textwrap.dedent(f"""
      import os, numpy as np
      from animaljax.fewshot import store as st
      real_replace, real_write = os.replace, st._write_atomic
      def write(path, fn):
        if path.name == "species.json" and "{point}" == "json_written":
          def partial(f):  # half the json reaches the temporary file, then the process dies
            fn(f); f.flush(); f.truncate(f.tell() // 2); os._exit(3)
          return real_write(path, partial)
        if path.name == "species.json":
          os._exit(3)
        return real_write(path, fn)
      st._write_atomic = write
      emb = np.ones((2, {DIM}), np.float32)
      s = st.Species(name="Badger", embeddings=emb, files=["a", "b"], added=["t", "t"], threshold=0.2)
      st.SpeciesStore({str(tmp_path)!r}, embed_dim={DIM}).add(s)
    """)
    proc = subprocess.run(
      [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3, proc.stderr
    assert list(SpeciesStore(tmp_path, embed_dim=DIM).load()) == ["Red fox"], point


# ----------------------------------------------------------------------------------------------------------------
# Concurrency
# ----------------------------------------------------------------------------------------------------------------
_WRITER = """
import sys, time, numpy as np
from animaljax.fewshot.store import Species, SpeciesStore
root, prefix, go, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
store = SpeciesStore(root, embed_dim=8)
while not __import__("os").path.exists(go):  # both writers start together
  time.sleep(0.001)
for i in range(n):
  emb = np.full((2, 8), i, np.float32)
  store.add(Species(name=f"{prefix} {i}", embeddings=emb, files=["a", "b"], added=["t", "t"], threshold=0.1))
"""


def test_concurrent_adds_from_two_processes_lose_nothing(tmp_path):
  n = 8
  for trial in range(3):
    root = tmp_path / f"model{trial}"
    go = tmp_path / f"go{trial}"
    procs = [
      subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(root), prefix, str(go), str(n)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
      )  # fmt: skip
      for prefix in ("Fox", "Owl")
    ]
    go.touch()
    for p in procs:
      _, err = p.communicate(timeout=120)
      assert p.returncode == 0, err
    names = set(SpeciesStore(root, embed_dim=DIM).load())
    assert names == {f"{p} {i}" for p in ("Fox", "Owl") for i in range(n)}, trial
