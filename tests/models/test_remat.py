"""AST block remat (`AstConfig.remat`): same parameters, loss and gradients; fewer saved activations."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from animaljax.models import ast_config, make_model
from animaljax.models.ast import REMAT_POLICIES, AstConfig

NUM_CLASSES = 5
POLICIES = ["nothing_saveable", "dots_saveable"]


def _model(remat: str):
  cfg = ast_config(NUM_CLASSES, size="tiny", clip_seconds=1.0, depth=2, remat=remat)
  # Dropout and drop path on, so the check also covers the dropout rng inside the rematerialised blocks.
  return make_model(
    dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, dropout=0.1, drop_path=0.1))
  )


def _loss_and_grad(model):
  def loss(params, wave, labels, key):
    logits, _ = model.apply({"params": params}, wave, train=True, rngs={"dropout": key, "augment": key})
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  return jax.jit(jax.value_and_grad(loss))


@pytest.fixture(scope="module")
def inputs():
  rng = np.random.default_rng(0)
  wave = (0.1 * rng.standard_normal((4, 16000))).astype(np.float32)
  labels = rng.integers(0, NUM_CLASSES, 4)
  key = jax.random.key(1, impl="rbg")
  params = jax.jit(_model("").init)(jax.random.key(0, impl="rbg"), wave[:1])["params"]
  return params, wave, labels, key


@pytest.fixture(scope="module")
def reference(inputs):
  return _loss_and_grad(_model(""))(*inputs)


@pytest.mark.parametrize("policy", POLICIES)
def test_remat_keeps_params_loss_and_gradients(policy, inputs, reference):
  params, wave, labels, key = inputs
  model = _model(policy)
  init = jax.eval_shape(model.init, jax.random.key(0, impl="rbg"), wave[:1])["params"]
  assert jax.tree.structure(init) == jax.tree.structure(params)
  assert jax.tree.map(lambda a: a.shape, init) == jax.tree.map(jnp.shape, params)

  loss, grads = _loss_and_grad(model)(params, wave, labels, key)
  ref_loss, ref_grads = reference
  assert np.isfinite(float(loss))
  np.testing.assert_allclose(float(loss), float(ref_loss), rtol=0, atol=1e-5)
  for (path, g), r in zip(
    jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads), strict=True
  ):
    np.testing.assert_allclose(
      np.asarray(g), np.asarray(r), rtol=0, atol=1e-5, err_msg=jax.tree_util.keystr(path)
    )
  # The eval forward is untouched.
  out = model.apply({"params": params}, wave)[0]
  np.testing.assert_allclose(
    np.asarray(out), np.asarray(_model("").apply({"params": params}, wave)[0]), atol=1e-5
  )


def _residual_bytes_per_clip(remat: str, params, samples: int) -> float:
  """Bytes the forward pass keeps for the backward pass (gradients w.r.t. params), per extra clip of batch.

  Traced only (`eval_shape` of the VJP closure, whose leaves are the saved residuals), so it is the plan JAX
  hands to XLA. XLA's CPU compiler strips remat's optimisation barriers and CSEs the recomputation back into
  the forward pass, so CPU-compiled memory does not show the saving; GPU/TPU compilers keep the barriers.
  """
  model = _model(remat)

  def residuals(p, wave):
    def loss(q):
      return model.apply({"params": q}, wave, train=True, rngs={"dropout": jax.random.key(0)})[0].sum()

    return jax.vjp(loss, p)[1]

  def total(batch: int) -> int:
    wave = jax.ShapeDtypeStruct((batch, samples), jnp.float32)
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(jax.eval_shape(residuals, params, wave)))

  return (total(5) - total(1)) / 4  # the batch-independent part (parameters) cancels


def test_remat_saves_fewer_residuals(inputs):
  params, wave, _, _ = inputs
  plain = _residual_bytes_per_clip("", params, wave.shape[1])
  dots = _residual_bytes_per_clip("dots_saveable", params, wave.shape[1])
  nothing = _residual_bytes_per_clip("nothing_saveable", params, wave.shape[1])
  assert nothing < dots < plain, (nothing, dots, plain)
  assert nothing < 0.25 * plain, (nothing, plain)


def test_unknown_remat_policy_is_rejected():
  with pytest.raises(ValueError, match="remat policy 'everything'.*dots_saveable"):
    AstConfig(remat="everything")
  assert "" in REMAT_POLICIES and REMAT_POLICIES[""] is None
