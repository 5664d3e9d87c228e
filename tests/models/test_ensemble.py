"""Ensembles (`model.members`, `models.ensemble`): each member is exactly a single model with its own weights,
the ensemble scores their mean logits and concatenates their embeddings, the trainer's loss is each member's
own, and a trained ensemble travels through the workdir, `export` and `predict` like any model."""

from __future__ import annotations

import dataclasses
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animaljax.models import serialize
from animaljax.models.classifier import ClassifierConfig, cnn14_config, inference_forward, make_model
from animaljax.training import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from configs import quickstart  # noqa: E402


def _wave(n: int = 3, samples: int = 8000, seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(0, 0.1, (n, samples)), jnp.float32)


@pytest.mark.parametrize("encoder", ["cnn6", "resnet22"])
def test_each_member_is_a_single_model_with_its_own_weights(encoder):
  single = cnn14_config(4, 16000, 0.25, variant=encoder)
  config = dataclasses.replace(single, members=3)
  wave = _wave()
  variables = make_model(config).init(jax.random.key(0), wave)
  heads = variables["params"]["head"]["kernel"]
  assert heads.shape[0] == 3 and not np.allclose(heads[0], heads[1])  # initialised apart
  logits, out = jax.jit(lambda v, w: make_model(config).apply(v, w))(variables, wave)
  forward = jax.jit(inference_forward(single))
  dim = out["embedding"].shape[1] // 3
  for i in range(3):
    member_logits, member_embedding = forward(jax.tree.map(lambda a, i=i: a[i], variables), wave)
    np.testing.assert_allclose(out["member_logits"][i], member_logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["embedding"][:, i * dim : (i + 1) * dim], member_embedding, atol=1e-6)
  np.testing.assert_allclose(logits, out["member_logits"].mean(0), rtol=1e-6, atol=1e-7)


def test_train_mode_draws_dropout_per_member_and_updates_each_members_batch_stats():
  config = cnn14_config(4, 16000, 0.25, variant="cnn6", members=2)
  wave = _wave(4)
  model = make_model(config)
  variables = model.init(jax.random.key(0), wave)
  (_, out), updates = model.apply(
    variables, wave, train=True, mutable=["batch_stats"], rngs={"dropout": jax.random.key(1)}
  )
  assert out["member_logits"].shape == (2, 4, 4)
  for path, new in jax.tree_util.tree_leaves_with_path(updates["batch_stats"]):
    old = variables["batch_stats"]
    for key in path:
      old = old[key.key]
    assert new.shape[0] == 2 and not np.allclose(new, old), path  # both members' running statistics move


def test_an_ensemble_is_refused_where_it_does_not_apply():
  with pytest.raises(ValueError, match="members must be >= 1"):
    dataclasses.replace(cnn14_config(3, 16000, 0.25), members=0)
  with pytest.raises(ValueError, match="an ensemble .* head 'decision_att'"):
    cnn14_config(3, 16000, 0.25, head="decision_att", members=2)
  with pytest.raises(ValueError, match="an ensemble .* not WavegramConfig"):
    cnn14_config(3, 32000, 0.25, variant="wavegram_cnn14", members=2)
  c = config_lib.parse(quickstart.get_config("smoke"))
  with pytest.raises(ValueError, match="model.members must be an integer >= 1"):
    config_lib.validate(config_lib.replace(c, model={"members": 0}))
  with pytest.raises(ValueError, match=r"model.members=2 \(an ensemble\) needs the supervised trainer"):
    config_lib.validate(dataclasses.replace(config_lib.replace(c, model={"members": 2}), trainer="simclr"))
  with pytest.raises(ValueError, match="needs the supervised trainer and a CNN encoder"):
    config_lib.validate(
      config_lib.replace(c, model={"members": 2, "encoder": "ast"}, data={"sample_rate": 16000})
    )


def test_the_saved_config_carries_the_members_and_a_single_models_record_is_unchanged():
  single = cnn14_config(5, 16000, 0.5, variant="cnn10")
  ensemble = dataclasses.replace(single, members=4)
  assert "members" not in serialize.config_to_dict(single)  # older models' model.json and fingerprints hold
  record = serialize.config_to_dict(ensemble)
  assert record["members"] == 4 and serialize.config_from_dict(record) == ensemble
  assert serialize.config_from_dict(serialize.config_to_dict(single)) == single
  assert isinstance(serialize.config_from_dict(record), ClassifierConfig)


def test_a_trained_ensemble_learns_per_member_and_exports_and_predicts_like_any_model(tmp_path):
  """A 2-member smoke run: the members stay apart, the workdir's predictor and an exported bundle give the same
  scores (mean logits), and `init_from` the run's encoder refuses a single model but fills every member."""
  from animaljax.bundle import export_bundle
  from animaljax.inference import load_bundle, load_predictor
  from animaljax.training import workdir as run_dir
  from animaljax.training.supervised import train_and_evaluate

  c = quickstart.get_config("smoke")
  c.model.members, c.train.steps, c.eval.every_steps, c.checkpoint.every_steps = 2, 4, 4, 4
  c.data.dir = str(tmp_path / "packed")
  result = train_and_evaluate(c, tmp_path / "run")
  assert result["step"] == 4 and np.isfinite(result["train_loss"])
  variables, _ = run_dir.read_variables(tmp_path / "run")
  kernel = variables["params"]["head"]["kernel"]
  assert kernel.shape[0] == 2 and not np.allclose(kernel[0], kernel[1])

  workdir = load_predictor(tmp_path / "run")
  assert workdir.config.members == 2
  bundle = load_bundle(export_bundle(workdir, tmp_path / "bundle"))
  wave = np.asarray(_wave(2, workdir.clip_samples, seed=3))
  np.testing.assert_allclose(bundle.logits(wave), workdir.logits(wave), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(bundle.embed(wave), workdir.embed(wave), rtol=1e-5, atol=1e-5)

  # init_from the run: an ensemble of as many members takes each member's encoder one to one; a single model
  # does not fit; an ensemble from a single model's weights gets them in every member.
  from animaljax.training import setup

  parsed = config_lib.replace(config_lib.parse(c), model={"init_from": str(tmp_path / "run")})
  kernel_path = ("encoder", "conv_block1", "conv1", "kernel")

  def leaf(tree):
    for key in kernel_path:
      tree = tree[key]
    return np.asarray(tree)

  params, _ = setup.start_from(parsed, jax.tree.map(np.zeros_like, variables["params"]), {})
  np.testing.assert_array_equal(leaf(params), leaf(variables["params"]))
  single = config_lib.replace(parsed, model={"members": 1})
  with pytest.raises(ValueError, match="does not fit the configured model"):
    setup.start_from(single, jax.tree.map(lambda a: np.zeros_like(a[0]), variables["params"]), {})
  export_dir = tmp_path / "single"
  from animaljax.models.pretrained import save_converted

  one = jax.tree.map(lambda a: np.asarray(a[1]), variables)
  save_converted(export_dir, dataclasses.replace(workdir.config, members=1), one, labels=workdir.labels)
  three = config_lib.replace(parsed, model={"members": 3, "init_from": str(export_dir), "keep_head": True})
  init = jax.tree.map(lambda a: np.zeros((3, *a.shape[1:]), a.dtype), variables["params"])
  params, _ = setup.start_from(three, init, {})
  for i in range(3):
    np.testing.assert_array_equal(leaf(params)[i], leaf(variables["params"])[1])
