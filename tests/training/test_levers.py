"""Two of the recipe's levers: the parameter average (`train.ema_decay`) and per-clip log-mel standardisation
(`model.clip_norm`). The average must be what is evaluated, kept as best and read by inference; the
standardisation must make the model blind to a recording's gain, in every code path that builds the model."""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from animaljax.training import config as config_lib
from animaljax.training.state import ema_params, track_ema, with_ema

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from configs import quickstart  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------
# The parameter average
# ----------------------------------------------------------------------------------------------------------------
def test_track_ema_averages_the_parameters_after_each_update():
  d = 0.9
  tx = with_ema(optax.sgd(0.1), d)
  params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
  state = tx.init(params)
  np.testing.assert_array_equal(ema_params(state)["w"], params["w"])  # starts at the initial parameters
  expected = jax.tree.map(np.asarray, params)
  for grad in (
    {"w": jnp.array([1.0, 2.0]), "b": jnp.array(-1.0)},
    {"w": jnp.array([0.5, 0.0]), "b": jnp.array(4.0)},
  ):
    updates, state = tx.update(grad, state, params)
    params = optax.apply_updates(params, updates)
    expected = jax.tree.map(lambda e, p: d * e + (1 - d) * np.asarray(p), expected, params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), ema_params(state), expected)
  assert not np.allclose(ema_params(state)["w"], params["w"])  # an average, not the parameters themselves


def test_no_average_without_a_decay():
  tx = with_ema(optax.sgd(0.1), 0.0)
  with pytest.raises(ValueError, match="no parameter average"):
    ema_params(tx.init({"w": jnp.zeros(2)}))
  with pytest.raises(ValueError, match="needs the parameters"):
    track_ema(0.5).update({"w": jnp.zeros(2)}, track_ema(0.5).init({"w": jnp.zeros(2)}))


def test_ema_and_clip_norm_are_refused_where_they_do_not_apply():
  c = config_lib.parse(quickstart.get_config("smoke"))
  with pytest.raises(ValueError, match="train.ema_decay must be in"):
    config_lib.validate(config_lib.replace(c, train={"ema_decay": 1.0}))
  with pytest.raises(ValueError, match="ema_decay applies to the supervised trainer"):
    config_lib.validate(dataclasses_replace(c, trainer="simclr", train={"ema_decay": 0.9}))
  with pytest.raises(ValueError, match="clip_norm applies to the CNN"):
    config_lib.validate(
      config_lib.replace(c, model={"encoder": "ast", "clip_norm": True}, data={"sample_rate": 16000})
    )


def dataclasses_replace(c, trainer: str, **sections):
  import dataclasses

  return dataclasses.replace(config_lib.replace(c, **sections), trainer=trainer)


def test_the_best_state_and_inference_use_the_average(tmp_path):
  """A smoke run with an average: `best/` holds the averaged parameters of that step's checkpoint (not the raw
  ones), `workdir.read_variables` (predict, evaluate, export) reads them, and a resumed run matches."""
  import orbax.checkpoint as ocp

  from animaljax.training import workdir as run_dir
  from animaljax.training.supervised import train_and_evaluate

  c = quickstart.get_config("smoke")
  c.data.dir = str(tmp_path / "packed")
  c.train.ema_decay = 0.5
  c.checkpoint.keep = 5
  result = train_and_evaluate(c, tmp_path / "run")
  best = result["best"]["step"]
  with ocp.StandardCheckpointer() as ckpt:
    raw = ckpt.restore(tmp_path / "run" / "checkpoints" / str(best) / "state")
    kept = ckpt.restore(tmp_path / "run" / "best" / str(best) / "state")
  average = (
    raw["opt_state"][-1]["params"] if isinstance(raw["opt_state"][-1], dict) else raw["opt_state"][-1][0]
  )
  flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])  # noqa: E731
  np.testing.assert_allclose(flat(kept["params"]), flat(average), rtol=1e-6)
  assert not np.allclose(flat(kept["params"]), flat(raw["params"]))
  variables, path = run_dir.read_variables(tmp_path / "run")
  assert path.parent.parent.name == "best"
  np.testing.assert_allclose(flat(variables["params"]), flat(average), rtol=1e-6)
  # The reported metric is the average's: evaluate (predict's code path) agrees with the run's best value.
  from animaljax.inference.evaluate import evaluate_split  # noqa: PLC0415
  from animaljax.inference.load import load_predictor  # noqa: PLC0415

  report = evaluate_split(
    load_predictor(str(tmp_path / "run")), tmp_path / "packed", "validation", quiet=True
  )
  assert report["accuracy"] == pytest.approx(
    json.loads((tmp_path / "run" / "best" / "best.json").read_text())["value"]
  )


# ----------------------------------------------------------------------------------------------------------------
# Per-clip standardisation
# ----------------------------------------------------------------------------------------------------------------
def test_standardize_per_clip():
  from animaljax.models.cnn14 import standardize_per_clip

  x = jnp.asarray(np.random.default_rng(0).normal(3.0, 5.0, size=(2, 40, 16)), jnp.float32)
  y = np.asarray(standardize_per_clip(x))
  np.testing.assert_allclose(y.mean(axis=(1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(axis=(1, 2)), 1.0, atol=1e-4)
  np.testing.assert_allclose(
    np.asarray(standardize_per_clip(x - 7.0)), y, atol=1e-5
  )  # blind to a level shift
  assert np.all(np.asarray(standardize_per_clip(jnp.full((1, 8, 4), -100.0))) == 0.0)  # silence: zeros


@pytest.mark.parametrize("clip_norm", [True, False])
def test_clip_norm_makes_the_model_blind_to_gain(clip_norm):
  from animaljax.models.classifier import cnn14_config, make_model

  model = make_model(cnn14_config(4, 16000, width=1 / 16, variant="cnn6", clip_norm=clip_norm))
  rng = np.random.default_rng(1)
  t = np.arange(16000) / 16000
  wave = (0.3 * np.sin(2 * np.pi * 1500 * t * (1 + t)) + 0.05 * rng.normal(size=t.shape)).astype(np.float32)
  batch = jnp.asarray(np.stack([wave, 0.1 * wave]))  # the same recording 20 dB quieter
  variables = model.init({"params": jax.random.PRNGKey(0)}, batch[:1], train=False)
  # Non-trivial BatchNorm statistics, so a shifted input is not hidden by a zero-mean, unit-variance bn0.
  variables = jax.tree.map(lambda x: x, variables)
  variables["batch_stats"]["encoder"]["bn0"]["mean"] = jnp.full_like(
    variables["batch_stats"]["encoder"]["bn0"]["mean"], -30.0
  )
  variables["batch_stats"]["encoder"]["bn0"]["var"] = jnp.full_like(
    variables["batch_stats"]["encoder"]["bn0"]["var"], 100.0
  )
  logits, _ = model.apply(variables, batch, train=False)
  logits = np.asarray(logits)
  if clip_norm:
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-3, atol=1e-4)
  else:
    assert not np.allclose(logits[0], logits[1], rtol=1e-3, atol=1e-4)


def test_clip_norm_travels_with_the_saved_model_config():
  from animaljax.models.serialize import config_from_dict, config_to_dict

  c = config_lib.parse(quickstart.get_config("smoke"))
  c = config_lib.replace(c, model={"clip_norm": True})
  model = config_lib.model_config(c, 3)
  assert model.encoder.clip_norm
  assert config_from_dict(json.loads(json.dumps(config_to_dict(model)))) == model
  old = config_to_dict(config_lib.model_config(config_lib.replace(c, model={"clip_norm": False}), 3))
  assert (
    "clip_norm" not in old["encoder"]
  )  # off: written as before the option (same model.json and fingerprint)
  assert config_from_dict(old).encoder.clip_norm is False
