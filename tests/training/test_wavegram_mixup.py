"""Mixup reaches both branches of Wavegram-Logmel-CNN14 (PANNs mixes the SpecAugmented log-mel and the wavegram
after `pre_block4` with the same lam and partners), and the supervised step hands the model that mixing."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.models.classifier import cnn14_config, make_model
from animaljax.training import config as config_lib
from animaljax.training.supervised import make_steps

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))
from configs import quickstart  # noqa: E402

PERM = jnp.array([1, 2, 3, 0])


def test_swapping_both_branches_is_the_model_on_swapped_clips():
  """With mixup at lam = 0 (rows replaced by their partners) on the log-mel and the wavegram, train-mode outputs
  are exactly those of the permuted batch: BatchNorm's batch statistics do not see the order. Mixing only the
  log-mel (the wavegram left unmixed, as before the fix) gives different outputs."""
  model = make_model(cnn14_config(3, variant="wavegram_logmel_cnn14", width=1 / 16, dropout=False))
  wave = jnp.asarray(np.random.default_rng(0).normal(0, 0.3, (4, 16000)).astype(np.float32))
  variables = model.init(jax.random.PRNGKey(0), wave[:1])

  def run(x, **kw):
    rngs = {"augment": jax.random.PRNGKey(1)}
    logits, _ = model.apply(variables, x, train=True, mutable=["batch_stats"], rngs=rngs, **kw)[0]
    return np.asarray(logits)

  swap = lambda x: x[PERM]  # noqa: E731
  feature_swap = lambda feats, key: feats[PERM]  # noqa: E731
  expected = run(wave[PERM])
  np.testing.assert_allclose(run(wave, feature_fn=feature_swap, mix_fn=swap), expected, atol=1e-5)
  assert np.abs(run(wave, feature_fn=feature_swap) - expected).max() > 1e-3
  # Eval mode never mixes.
  ev = lambda **kw: np.asarray(model.apply(variables, wave, train=False, **kw)[0])  # noqa: E731
  np.testing.assert_array_equal(ev(mix_fn=swap), ev())


class _Spy:
  """A stand-in model for `make_steps`: records the `feature_fn` and `mix_fn` it is applied with."""

  def __init__(self):
    self.seen = {}

  def apply(self, variables, audio, *, train, feature_fn, mix_fn, rngs, mutable):
    self.seen.update(feature_fn=feature_fn, mix_fn=mix_fn, key=rngs["augment"])
    logits = audio[:, :3] * variables["params"]["w"]
    return (logits, {}), {"batch_stats": {}}


def test_the_train_step_mixes_the_wavegram_as_the_features():
  import optax

  c = config_lib.parse(quickstart.get_config("smoke"))
  c = config_lib.replace(c, train={"mixup_alpha": 1.0, "specaugment": False})
  spy = _Spy()
  tx = optax.sgd(0.1)
  params = {"w": jnp.ones(())}
  from animaljax.training.state import TrainState

  state = TrainState(jnp.zeros((), jnp.int32), params, {}, tx.init(params), jax.random.PRNGKey(3))
  batch = {"audio": jnp.ones((6, 100)), "label": jnp.arange(6) % 3, "mask": jnp.ones(6, bool)}
  train_step, _ = make_steps(c, spy, tx, lambda step: 0.1, 3, None)
  train_step(state, batch)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 5, 4)).astype(np.float32))
  mixed = np.asarray(spy.seen["mix_fn"](x))
  assert np.abs(mixed - np.asarray(x)).max() > 1e-3  # alpha 1: rows really are mixed
  # SpecAugment off: the features' hook is exactly this mixing (same lam, same partners).
  np.testing.assert_allclose(mixed, np.asarray(spy.seen["feature_fn"](x, spy.seen["key"])), rtol=1e-6)

  spy.seen.clear()
  c0 = config_lib.replace(c, train={"mixup_alpha": 0.0})
  make_steps(c0, spy, tx, lambda step: 0.1, 3, None)[0](state, batch)
  assert spy.seen["mix_fn"] is None
