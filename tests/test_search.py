"""`python -m animaljax.search` (issue 19): the cosine index of window embeddings, queries by example, the
fingerprint check, and linear heads trained on labelled windows."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from search_support import tiny_models

from animaljax.fewshot import linear_head
from animaljax.inference import outputs
from animaljax.retrieval import index as search_index
from animaljax.retrieval import query

pytest.importorskip("faiss")
REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def write_embeddings(path, files, starts, emb, fingerprint="fp-a", fmt="parquet"):
  cols = {"file": [], "kind": [], "start_s": [], "end_s": [], "embedding": []}
  for f, s, e in zip(files, starts, emb, strict=True):
    for k, v in zip(cols, (f, "window", s, s + 1.0, e), strict=True):
      cols[k].append(v)
  cols["file"].append(files[0])  # a file row: never indexed
  for k, v in zip(list(cols)[1:], ("file", 0.0, 99.0, emb.mean(0)), strict=True):
    cols[k].append(v)
  if fmt == "npz":
    outputs.write_npz(path, cols)
  else:
    outputs.write_parquet(path, cols, {"embed_dim": str(emb.shape[1]), "fingerprint": fingerprint})
  return path


@pytest.fixture
def synthetic(tmp_path):
  rng = np.random.default_rng(0)
  emb = rng.normal(size=(300, 16)).astype(np.float32)
  files = [f"rec{i // 50}.wav" for i in range(300)]
  starts = [float(i % 50) for i in range(300)]
  (tmp_path / "emb").mkdir()
  a = write_embeddings(tmp_path / "emb" / "a.parquet", files[:200], starts[:200], emb[:200])
  write_embeddings(tmp_path / "emb" / "b.parquet", files[200:], starts[200:], emb[200:])
  return {"root": tmp_path, "folder": tmp_path / "emb", "a": a, "emb": emb, "files": files, "starts": starts}


def test_index_query_round_trip_finds_the_exact_neighbours(synthetic, monkeypatch):
  monkeypatch.setattr(search_index, "ADD_CHUNK", 64)  # 300 windows added in 5 chunks: ids stay row numbers
  out = synthetic["root"] / "index"
  path, count = query.index_embeddings([synthetic["folder"]], out)
  assert count == 300 and sorted(p.name for p in path.iterdir()) == [
    "index.faiss",
    "index.json",
    "windows.parquet",
  ]
  info = json.loads((out / "index.json").read_text())
  assert info["fingerprint"] == "fp-a" and info["embed_dim"] == 16 and info["metric"] == "cos"
  idx = search_index.open_index(out)
  emb = synthetic["emb"]
  unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
  rng = np.random.default_rng(1)
  for q in rng.normal(size=(20, 16)).astype(np.float32):
    hits = idx.search(q, 5)
    truth = np.argsort(-(unit @ (q / np.linalg.norm(q))))[:5]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    assert [(h["file"], h["start_s"]) for h in hits] == [
      (synthetic["files"][i], synthetic["starts"][i]) for i in truth
    ]
    np.testing.assert_allclose([h["score"] for h in hits], (unit @ (q / np.linalg.norm(q)))[truth], atol=1e-5)
  top = idx.search(emb[237], 1)[0]
  assert (top["file"], top["start_s"], top["end_s"]) == ("rec4.wav", 37.0, 38.0) and top[
    "score"
  ] == pytest.approx(1)
  assert json.loads((out / "index.json").read_text())["kind"] == "flat"


def test_a_large_index_is_an_hnsw_graph(synthetic, monkeypatch):
  monkeypatch.setattr(search_index, "EXACT_UP_TO", 100)
  monkeypatch.setattr(search_index, "ADD_CHUNK", 64)
  out = synthetic["root"] / "index"
  query.index_embeddings([synthetic["folder"]], out)
  assert json.loads((out / "index.json").read_text())["kind"] == "hnsw32"
  idx = search_index.open_index(out)
  for i in (3, 150, 299):  # a stored vector finds itself
    top = idx.search(synthetic["emb"][i], 1)[0]
    assert (top["file"], top["start_s"]) == (synthetic["files"][i], synthetic["starts"][i])


def test_index_refuses_what_it_did_not_write(synthetic):
  out = synthetic["root"] / "index"
  query.index_embeddings([synthetic["a"]], out)
  with pytest.raises(search_index.IndexError_, match="--overwrite"):
    query.index_embeddings([synthetic["a"]], out)
  beside = synthetic["root"] / ".index.old"  # a folder that happens to have the name a replaced index once took
  beside.mkdir()
  (beside / "notes.txt").write_text("keep me")
  query.index_embeddings([synthetic["folder"]], out, overwrite=True)
  assert json.loads((out / "index.json").read_text())["count"] == 300
  assert (beside / "notes.txt").read_text() == "keep me"
  assert sorted(p.name for p in synthetic["root"].iterdir() if p.name.startswith(".index")) == [".index.old"]
  mine = synthetic["root"] / "mine"
  mine.mkdir()
  (mine / "notes.txt").write_text("keep me")
  with pytest.raises(search_index.IndexError_, match="not a search index"):
    query.index_embeddings([synthetic["a"]], mine, overwrite=True)
  assert (mine / "notes.txt").read_text() == "keep me"
  npz = write_embeddings(synthetic["root"] / "c.npz", ["x.wav"], [0.0], synthetic["emb"][:1], fmt="npz")
  with pytest.raises(ValueError, match="--model"):
    query.index_embeddings([npz], synthetic["root"] / "index2")
  other = write_embeddings(synthetic["root"] / "d.parquet", ["x.wav"], [0.0], synthetic["emb"][:1], "fp-b")
  with pytest.raises(ValueError, match="different models"):
    query.index_embeddings([synthetic["a"], other], synthetic["root"] / "index3")


def test_head_separates_separable_data_and_round_trips(tmp_path):
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 32)) * 3
  y = np.repeat(np.arange(3), 40)
  x = (centres[y] + rng.normal(size=(120, 32))).astype(np.float32)
  names = np.array(["dog", "cat", "negative"])[y].tolist()
  head = linear_head.train_head(x[::2], names[::2], fingerprint="fp")
  assert head.labels == ("cat", "dog", "other") and head.classes == ("cat", "dog")
  predicted = head.predict(x[1::2])
  assert (
    np.mean(np.array(predicted) == np.array([linear_head.canonical_label(n) for n in names[1::2]])) == 1.0
  )
  loaded = linear_head.load(linear_head.save(head, tmp_path / "head"))
  np.testing.assert_allclose(loaded.probabilities(x), head.probabilities(x), rtol=1e-6)
  assert loaded.fingerprint == "fp" and loaded.extra["steps"] == 300
  with pytest.raises(ValueError, match="at least 2 classes"):
    linear_head.train_head(x[:5], ["dog"] * 5)


def test_train_from_labels_matches_windows_and_reports_validation(synthetic, monkeypatch):
  # Windows of rec0 and rec1 around two centres; rec2 windows are labelled negative.
  rng = np.random.default_rng(2)
  centres = rng.normal(size=(3, 16)) * 4
  cls = np.repeat(np.arange(3), 20)
  emb = (centres[cls] + rng.normal(size=(60, 16))).astype(np.float32)
  files = [f"/data/rec{c}.wav" for c in cls]
  starts = [float(i % 20) for i in range(60)]
  emb_path = write_embeddings(synthetic["root"] / "l.parquet", files, starts, emb)
  labels = synthetic["root"] / "labels.csv"
  with labels.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "start_s", "end_s", "label"])
    for c, name in enumerate(["frog", "owl", "negative"]):
      for s in range(20):
        w.writerow([f"rec{c}.wav", s + 0.2, s + 0.7, name])  # by name; inside one window each
    w.writerow(["nowhere.wav", 0, 1, "frog"])
  monkeypatch.setattr(query, "_fingerprint", lambda table, model: "fp-a")  # no model needed for this check
  report = query.train_from_labels(labels, [emb_path], "model", synthetic["root"] / "head", validation=0.25)
  assert report["windows"] == 60 and report["rows_unmatched"] == 1 and report["ambiguous"] == 0
  assert report["validation"]["n"] == 15 and report["validation"]["accuracy"] == 1.0
  head = linear_head.load(report["head"])
  assert head.labels == ("frog", "owl", "other") and head.fingerprint == "fp-a"
  with pytest.raises(ValueError, match="--overwrite"):
    query.train_from_labels(labels, [emb_path], "model", synthetic["root"] / "head")


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
  """Two tiny CNN6 model dirs (16 kHz, 1 s windows): the same architecture, different weights."""
  return tiny_models(tmp_path_factory.mktemp("search-models"))


def test_query_by_example_and_a_refused_model(two_models, tmp_path):
  from animaljax.inference.files import embed_files

  a, b = two_models["models"]
  emb = tmp_path / "e.parquet"
  assert embed_files(a, [two_models["audio"]], emb, quiet=True) == 3
  query.index_embeddings([emb], tmp_path / "index")
  clip = two_models["audio"] / "tone1.wav"
  hits, predictor = query.query_index(tmp_path / "index", a, clip, start_s=1.0, end_s=2.0, top_k=4)
  # tone1's windows [1, 2) and [2, 3) hold the same samples: either is an exact match
  assert pathlib.Path(hits[0]["file"]).name == "tone1.wav" and hits[0]["start_s"] in (1.0, 2.0)
  assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
  written = query.write_snippets(hits[:2], tmp_path / "snips", predictor)
  assert len(written) == 2 and written[0].name.startswith("001_tone1_")
  with pytest.raises(search_index.IndexError_, match="not the model that made"):
    query.query_index(tmp_path / "index", b, clip)
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax.search", "query", "--index", str(tmp_path / "index"), "--model", str(b),
     str(clip)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 2 and proc.stderr.strip().startswith("error: ") and "Traceback" not in proc.stderr
  assert len(proc.stderr.strip().splitlines()) == 1 and "not the model that made" in proc.stderr


@pytest.mark.parametrize(
  "args, expected",
  [
    (["index", "--embeddings", "nowhere.parquet", "--out", "ix"], "nowhere.parquet"),
    (["query", "--index", "nowhere", "--model", "m", "x.wav"], "nowhere"),
    (["train", "--labels", "l.csv", "--embeddings", "e.parquet", "--model", "m", "--out", "h", "--validation", "2"],
     "--validation"),
  ],
)  # fmt: skip
def test_cli_mistakes_give_one_line(tmp_path, args, expected):
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax.search", *args], cwd=tmp_path, env=ENV, capture_output=True, text=True,
    timeout=120,
  )  # fmt: skip
  lines = proc.stderr.strip().splitlines()
  assert (
    proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
  ), proc.stderr
