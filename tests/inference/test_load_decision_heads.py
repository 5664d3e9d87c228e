"""Loading models with decision-level heads: `_head_size` for every head, and a `decision_att` smoke workdir
(trained with train.loss=bce, as PANNs trains its SED models) loads, exports and predicts framewise events."""

from __future__ import annotations

import csv
import io
import pathlib
import sys

import jax
import numpy as np
import pytest
import soundfile as sf

from animaljax.inference.load import _head_size
from animaljax.models.classifier import ast_config, cnn14_config, make_model

REPO = pathlib.Path(__file__).resolve().parents[2]


def _param_shapes(config) -> dict:
  model = make_model(config)
  n = 16000 if config.is_ast else config.frontend.sample_rate
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), np.zeros((1, n), np.float32)))["params"]


@pytest.mark.parametrize("head", ["clip", "decision_max", "decision_att"])
def test_head_size_of_every_cnn_head(head):
  assert _head_size(_param_shapes(cnn14_config(7, 8000, 1 / 16, variant="cnn6", head=head))) == 7


def test_head_size_of_ast_and_unknown_heads():
  assert _head_size(_param_shapes(ast_config(5, "tiny", 1.0, depth=1))) == 5
  with pytest.raises(ValueError, match="number of classes"):
    _head_size({"head": {"other": {"bias": np.zeros(3)}}})


@pytest.fixture(scope="module")
def att_workdir(tmp_path_factory) -> pathlib.Path:
  sys.path.insert(0, str(REPO))  # configs/ is imported as `configs`, as the CLIs do from the repo root
  from animaljax.training.supervised import train_and_evaluate
  from configs import quickstart

  root = tmp_path_factory.mktemp("att")
  c = quickstart.get_config("smoke")
  c.data.dir = str(root / "packed")
  c.model.head, c.train.loss = "decision_att", "bce"
  c.train.steps = c.eval.every_steps = c.checkpoint.every_steps = 2
  c.checkpoint.async_save = False
  train_and_evaluate(c, root / "run")
  return root / "run"


def test_decision_att_workdir_loads_exports_and_predicts_events(att_workdir, tmp_path, capsys):
  from animaljax import predict
  from animaljax.inference.load import export_model, load_predictor

  pred = load_predictor(att_workdir)
  assert pred.config.encoder.head == "decision_att" and len(pred.labels) == pred.config.num_classes == 3
  bundle = export_model(att_workdir, tmp_path / "bundle", jax_export=False)
  assert load_predictor(bundle).fingerprint == pred.fingerprint
  sf.write(tmp_path / "a.wav", np.random.default_rng(0).normal(0, 0.1, 24000).astype(np.float32), 16000)
  for model in (att_workdir, bundle):
    rc = predict.main(
      ["--model", str(model), str(tmp_path / "a.wav"), "--framewise", "--threshold", "0", "--quiet"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted((r["label"], float(r["onset_s"]), float(r["offset_s"])) for r in rows) == [
      (label, 0.0, 1.5) for label in sorted(pred.labels)
    ]
