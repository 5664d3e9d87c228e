"""The demo's Search tab (issue 19): its service functions without a browser (query an index by an uploaded call,
listen to the hits, train a head from accept/reject marks, download or attach it), and the served app answering
`/search` after a bad upload. A tiny untrained CNN6 and three tones: no ESC-50 model is trained for this."""

from __future__ import annotations

import json
import pathlib
import shutil
import zipfile

import numpy as np
import pytest
import soundfile as sf
from demo_support import free_port
from search_support import tiny_models

from animaljax.fewshot import linear_head
from animaljax.inference import load_predictor
from animaljax.inference.files import embed_files
from animaljax.retrieval import query
from demo import search as search_service
from demo import service
from demo.service import DemoError, Limits

pytest.importorskip("faiss")
LIMITS = Limits(max_seconds=30.0, max_mb=2.0)


@pytest.fixture(scope="module")
def corpus_setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("search-tab")
  m = tiny_models(root, seeds=(0,))
  model = m["models"][0]
  assert embed_files(model, [m["audio"]], root / "e.parquet", quiet=True) == 3
  query.index_embeddings([root / "e.parquet"], root / "index")
  predictor = load_predictor(model)
  corpus = search_service.open_corpus(root / "index", predictor, workdir=root / "work")
  return {**m, "root": root, "predictor": predictor, "corpus": corpus}


def test_find_listen_mark_train_attach(corpus_setup, tmp_path):
  predictor, corpus, audio = corpus_setup["predictor"], corpus_setup["corpus"], corpus_setup["audio"]
  hits = search_service.find(predictor, corpus, str(audio / "tone1.wav"), LIMITS, top_k=9)
  assert len(hits) == 9 and pathlib.Path(hits[0]["file"]).name == "tone1.wav"
  assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)  # tone1's windows [1, 2) and [2, 3) are its mean
  for h in hits:  # each window can be listened to: its own second of the recording
    wave, sr = sf.read(h["snippet"])
    source, _ = sf.read(h["file"])
    assert sr == 16000 and wave.shape == (16000,)
    np.testing.assert_allclose(wave, source[round(h["start_s"] * sr) : round(h["end_s"] * sr)], atol=1e-4)
  assert search_service.hit_rows(hits)[0][:2] == [1, "tone1.wav"]

  marks = [search_service.ACCEPT if pathlib.Path(h["file"]).name == "tone1.wav" else search_service.REJECT
           for h in hits]  # fmt: skip
  with pytest.raises(DemoError, match="accept and one reject"):
    search_service.train(predictor, corpus, hits, [search_service.ACCEPT] * 9, "whistle")
  with pytest.raises(DemoError, match="name"):
    search_service.train(predictor, corpus, hits, marks, " ")
  head, report = search_service.train(predictor, corpus, hits, marks, "whistle")
  assert report["windows"] == 9 and report["classes"] == ["other", "whistle"] and linear_head.is_head(head)
  with zipfile.ZipFile(search_service.head_zip(head)) as z:
    assert sorted(z.namelist()) == ["whistle/head.json", "whistle/head.safetensors"]

  # Attached to a copy of the model: the Classify tab's analysis then ranks the head's class.
  model = load_predictor(shutil.copytree(predictor.path, tmp_path / "m"))
  assert "attached 'whistle'" in search_service.attach(model, head)
  with pytest.raises(DemoError, match="already attached"):
    search_service.attach(model, head)
  analysis = service.analyse(model, model.load_file(audio / "tone1.wav"))
  assert analysis.ranking[0]["label"] == "whistle" and analysis.ranking[0]["source"] == "head"
  assert "head trained by search" in service.summary(analysis.ranking)
  assert "whistle" in service.about_markdown(model)


def test_bad_uploads_and_a_foreign_index_are_refused(corpus_setup, tmp_path):
  predictor, corpus = corpus_setup["predictor"], corpus_setup["corpus"]
  junk = tmp_path / "notes.wav"
  junk.write_bytes(b"not audio at all" * 10)
  with pytest.raises(DemoError, match="notes.wav"):
    search_service.find(predictor, corpus, str(junk), LIMITS)
  with pytest.raises(DemoError, match="no audio"):
    search_service.find(predictor, corpus, None, LIMITS)
  other = shutil.copytree(corpus_setup["root"] / "index", tmp_path / "index")
  info = json.loads((other / "index.json").read_text())
  (other / "index.json").write_text(json.dumps({**info, "fingerprint": "another"}))
  with pytest.raises(ValueError, match="another model"):
    search_service.open_corpus(other, predictor)


def test_served_app_keeps_serving_after_a_bad_upload(corpus_setup, tmp_path):
  from gradio_client import Client, handle_file
  from gradio_client.exceptions import AppError

  from demo import app as demo_app

  blocks = demo_app.build_app(corpus_setup["predictor"], limits=LIMITS, corpus=corpus_setup["corpus"])
  url = demo_app.serve(blocks, port=free_port(), limits=LIMITS, block=False)
  try:
    client = Client(url, verbose=False)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(AppError, match="junk.wav"):
      client.predict(handle_file(str(junk)), 3, api_name="/search")
    out = client.predict(handle_file(str(corpus_setup["audio"] / "tone2.wav")), 3, api_name="/search")
    rows = out[0][
      "data"
    ]  # the table, then (audio, mark) per listening slot; the hits' state stays server-side
    assert [r[1] for r in rows] == ["tone2.wav"] * 3 and len(out) == 1 + 2 * demo_app.MAX_HITS
    assert out[1]["visible"] and out[1]["value"].endswith(".wav") and not out[1 + 2 * 3]["visible"]
  finally:
    blocks.close()
