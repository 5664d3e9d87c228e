"""Linear heads attached to their model (issue 19): `search attach`, and predict, evaluate, classify and export
scoring the head's classes from the very window embeddings `embed` writes."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest
from search_support import tiny_models, whistle_labels

from animaljax import enroll, search
from animaljax.fewshot import enrol, linear_head
from animaljax.fewshot import heads as fewshot_heads
from animaljax.inference import export_model, load_predictor
from animaljax.inference.evaluate import evaluate_files
from animaljax.inference.files import embed_files, predict_files
from animaljax.retrieval import query
from animaljax.retrieval.table import read_windows

pytest.importorskip("faiss")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """Model m0's embeddings of the tones, and a head trained on them: tone1's windows are "whistle"."""
  root = tmp_path_factory.mktemp("heads")
  m = tiny_models(root)
  emb = root / "e.parquet"
  assert embed_files(m["models"][0], [m["audio"]], emb, quiet=True) == 3
  report = query.train_from_labels(whistle_labels(root / "labels.csv"), [emb], m["models"][0], root / "whistle",
                                   validation=0.0)  # fmt: skip
  return {**m, "emb": emb, "head": pathlib.Path(report["head"])}


def attach_cli(capsys, *args) -> tuple[int, list[str]]:
  code = search.main(["attach", *map(str, args)])
  return code, capsys.readouterr().err.strip().splitlines()


def test_predict_scores_the_attached_head_from_the_embed_windows(trained, tmp_path, capsys):
  model = shutil.copytree(trained["models"][0], tmp_path / "m")
  code, err = attach_cli(capsys, "--head", trained["head"], "--model", model)
  assert code == 0 and "attached 'whistle'" in err[-1]
  assert (model / "heads" / "whistle" / "head.json").is_file()
  out = tmp_path / "p.json"
  audio = trained["audio"]
  assert predict_files(model, [audio / "tone1.wav", audio / "tone0.wav"], output=out, format="json", top_k=0,
                       quiet=True) == 2  # fmt: skip
  results = {pathlib.Path(r["file"]).name: r for r in json.loads(out.read_text())}
  head = linear_head.load(trained["head"])
  table = read_windows(trained["emb"])
  col = head.labels.index("whistle")
  for name, result in results.items():
    rows = [i for i, f in enumerate(table.file) if pathlib.Path(f).name == name]
    expected = head.probabilities(table.embedding[rows])[:, col]
    got = []
    for w, i in zip(result["windows"], rows, strict=True):
      assert (w["start_s"], w["end_s"]) == (table.start_s[i], table.end_s[i])
      labels = {e["label"]: e["score"] for e in w["labels"]}
      assert set(labels) == {"a", "b", "c", "whistle"}  # "other" is never a class
      got.append(labels["whistle"])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    summary = {e["label"]: e["score"] for e in result["labels"]}
    assert summary["whistle"] == pytest.approx(expected.mean(), abs=1e-5)  # pooled as the model's classes
  assert results["tone1.wav"]["labels"][0]["label"] == "whistle"  # the head learned its windows
  assert results["tone0.wav"]["labels"][0]["label"] != "whistle"
  ranked = load_predictor(model).classify(audio / "tone1.wav", top_k=None)
  assert ranked[0]["label"] == "whistle" and ranked[0]["source"] == "head"

  # Attaching twice, under another name (its class is taken), or to another model: one line, exit 2.
  code, err = attach_cli(capsys, "--head", trained["head"], "--model", model)
  assert code == 2 and len(err) == 1 and "already attached" in err[0]
  code, err = attach_cli(capsys, "--head", trained["head"], "--model", model, "--name", "again")
  assert code == 2 and len(err) == 1 and "already a class of the attached head 'whistle'" in err[0]
  code, err = attach_cli(capsys, "--head", trained["head"], "--model", trained["models"][1])
  assert code == 2 and len(err) == 1 and "another model" in err[0]
  assert not (trained["models"][1] / "heads").exists()
  assert search.main(["detach", "--model", str(model), "--name", "whistle"]) == 0
  assert not (model / "heads" / "whistle").exists()


def test_enroll_refuses_a_species_named_like_an_attached_heads_class(trained, tmp_path, capsys):
  model = shutil.copytree(trained["models"][0], tmp_path / "m")
  fewshot_heads.attach_head(load_predictor(model), trained["head"])
  clip = trained["audio"] / "tone1.wav"
  # Names match ignoring case (the species name rules), so "WHISTLE" is the head's class "whistle".
  code = enroll.main(["add", "--model", str(model), "--name", "WHISTLE", str(clip)])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and "already a class of the attached head 'whistle'" in err[0]
  assert enrol.list_species(load_predictor(model)) == []
  assert enroll.main(["add", "--model", str(model), "--name", "warbler", str(clip)]) == 0  # other names enrol
  assert [s["name"] for s in enrol.list_species(load_predictor(model))] == ["warbler"]


def test_evaluate_counts_the_heads_classes(trained, tmp_path):
  model = shutil.copytree(trained["models"][0], tmp_path / "m")
  predictor = load_predictor(model)
  fewshot_heads.attach_head(predictor, trained["head"])
  for cls, tone in (("whistle", 1), ("a", 0), ("b", 2)):
    (tmp_path / "data" / cls).mkdir(parents=True)
    shutil.copy(trained["audio"] / f"tone{tone}.wav", tmp_path / "data" / cls)
  result = evaluate_files(predictor, tmp_path / "data", quiet=True)
  assert (
    list(result["per_class"]) == ["a", "b", "c", "whistle"] and result["per_class"]["whistle"]["support"] == 1
  )
  row = next(r for r in result["predictions"] if r["true"] == "whistle")
  head = linear_head.load(trained["head"])
  table = read_windows(trained["emb"])
  rows = [i for i, f in enumerate(table.file) if pathlib.Path(f).name == "tone1.wav"]
  whistle = head.probabilities(table.embedding[rows])[:, head.labels.index("whistle")].mean()
  model_probs = predictor.analyse([predictor.load_file(trained["audio"] / "tone1.wav")])[0][0]
  assert row["score"] == pytest.approx(max(whistle, model_probs.max()), abs=1e-5)
  assert row["predicted"] == (
    "whistle" if whistle > model_probs.max() else predictor.labels[model_probs.argmax()]
  )


def test_export_carries_the_head_and_refuses_it_for_other_weights(trained, tmp_path):
  from animaljax.bundle import BundleError

  model = shutil.copytree(trained["models"][0], tmp_path / "m")
  fewshot_heads.attach_head(load_predictor(model), trained["head"])
  bundle = export_model(model, tmp_path / "bundle", jax_export=False)
  manifest = json.loads((bundle / "manifest.json").read_text())
  assert manifest["heads"]["attached"] == ["whistle"] and not any(
    f.startswith("heads/") for f in manifest["files"]
  )
  loaded = load_predictor(bundle)
  assert [a.name for a in loaded.heads()] == ["whistle"]
  # The bundle can be replaced (its heads/ is an export's, not a user's file) ...
  export_model(model, tmp_path / "bundle", overwrite=True, jax_export=False)
  # ... but not from other weights, whose embeddings the head was never trained on, unless dropped.
  with pytest.raises(BundleError, match="--drop-heads"):
    export_model(trained["models"][1], tmp_path / "bundle", overwrite=True, jax_export=False)
  assert (bundle / "heads" / "whistle").is_dir()
  export_model(trained["models"][1], tmp_path / "bundle", overwrite=True, jax_export=False, drop_heads=True)
  assert load_predictor(bundle).heads() == []
  assert json.loads((bundle / "manifest.json").read_text())["heads"]["dropped"][0]["name"] == "whistle"
