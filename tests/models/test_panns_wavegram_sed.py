"""Parity of converted Wavegram-(Logmel-)CNN14, CNN14 decision-level (Max/Att) and Cnn14_8k with PyTorch
references (`tests/reference/panns_sed_torch.py`): random weights, perturbed BatchNorm statistics, 1 s clips;
clip-wise and framewise outputs and embeddings within 1e-4. Plus one jitted train step per model."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("librosa")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
import panns_sed_torch  # noqa: E402
import panns_torch  # noqa: E402

from animaljax.models import torch_weights  # noqa: E402
from animaljax.models.classifier import cnn14_config, make_model  # noqa: E402

ATOL = 1e-4
SR = 32000


def _waves(batch: int, n: int, sr: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(n) / sr
  tone = np.sin(2 * np.pi * rng.uniform(200, sr / 5, (batch, 1)) * t)
  return (0.1 * rng.standard_normal((batch, n)) + 0.3 * tone).astype(np.float32)


def _prepare(model: torch.nn.Module, sr: int, seed: int) -> torch.nn.Module:
  """Running statistics from real-looking input, then every BN statistic/affine perturbed; fc1 and the head
  scaled so embeddings and logits are O(1)."""
  bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
  for bn in bns:
    bn.momentum = None
    bn.reset_running_stats()
  model.train()
  with torch.no_grad():
    model(torch.from_numpy(_waves(2, sr, sr, seed + 1)))
  model.eval()
  with torch.no_grad():
    for bn in bns:
      c = bn.num_features
      bn.running_mean.add_(0.1 * torch.randn(c))
      bn.running_var.mul_(torch.exp(0.2 * torch.randn(c)))
      bn.weight.copy_(1 + 0.2 * torch.randn(c))
      bn.bias.copy_(0.1 * torch.randn(c))
    x = torch.from_numpy(_waves(2, sr, sr, seed + 2))
    std = model(x)["embedding"].std()
    model.fc1.weight.div_(std)
    model.fc1.bias.div_(std)
    heads = [model.att_block.att, model.att_block.cla] if hasattr(model, "att_block") else [model.fc_audioset]
    for h in heads:
      h.weight.mul_(3.0 / (h.weight.shape[1] ** 0.5 * h.weight.std()))
      h.bias.copy_(0.1 * torch.randn_like(h.bias))
  return model


def _convert(model, tmp_path, name: str):
  path = tmp_path / name
  torch.save({"model": model.state_dict(), "iteration": 1}, path)
  return torch_weights.convert_checkpoint(path)


def _close(name, ours, theirs):
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
  err = float(np.abs(ours - theirs).max())
  assert err < ATOL, f"{name}: max abs error {err:.3g} (scale {np.abs(theirs).max():.3g})"
  return err


CASES = {
  "wavegram_cnn14": (lambda: panns_sed_torch.Wavegram(False, classes_num=5, width=0.5), "Wavegram_Cnn14.pth"),
  "wavegram_logmel_cnn14": (
    lambda: panns_sed_torch.Wavegram(True, classes_num=5, width=0.5),
    "Wavegram_Logmel_Cnn14.pth",
  ),
  "decision_max": (
    lambda: panns_sed_torch.Cnn14Decision(False, classes_num=5, width=0.125),
    "Cnn14_DecisionLevelMax.pth",
  ),
  "decision_att": (
    lambda: panns_sed_torch.Cnn14Decision(True, classes_num=5, width=0.125),
    "Cnn14_DecisionLevelAtt.pth",
  ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity(case, tmp_path):
  torch.manual_seed(0)
  build, name = CASES[case]
  ref = _prepare(build(), SR, seed=3)
  config, variables, detected = _convert(ref, tmp_path, name)
  expect_head = {"decision_max": "decision_max", "decision_att": "decision_att"}.get(case, "clip")
  assert detected["head"] == expect_head and config.encoder.head == expect_head
  assert detected["encoder"] == ("cnn" if case.startswith("decision") else case.removesuffix("_cnn14"))
  wave = _waves(2, SR, SR, seed=9)
  with torch.no_grad():
    theirs = ref(torch.from_numpy(wave))
  logits, out = jax.jit(make_model(config).apply)(variables, jnp.asarray(wave))
  errs = {
    "clip": _close("clipwise", jax.nn.sigmoid(logits), theirs["clipwise_output"]),
    "embedding": _close("embedding", out["embedding"], theirs["embedding"]),
  }
  if "framewise_output" in theirs:
    assert out["framewise"].shape == (2, 101, 5)  # the front end's 10 ms frames
    errs["framewise"] = _close("framewise", out["framewise"], theirs["framewise_output"])
  print(case, {k: f"{v:.2e}" for k, v in errs.items()})


def test_cnn14_8k_parity(tmp_path):
  torch.manual_seed(0)
  kw = dict(
    sample_rate=8000, window_size=256, hop_size=80, fmin=50.0, fmax=4000.0, classes_num=4, width=0.125
  )
  ref = _prepare(panns_torch.Cnn14(**kw), 8000, seed=5)
  config, variables, detected = _convert(ref, tmp_path, "Cnn14_8k.pth")
  assert detected["sample_rate"] == 8000 and config.frontend == cnn14_config(4, 8000).frontend
  wave = _waves(1, 8000, 8000, seed=4)
  with torch.no_grad():
    theirs = ref(torch.from_numpy(wave))
  logits, out = make_model(config).apply(variables, jnp.asarray(wave))
  _close("clipwise", jax.nn.sigmoid(logits), theirs["clipwise_output"])
  _close("embedding", out["embedding"], theirs["embedding"])


TRAIN_STEP_CASES = [("wavegram_cnn14", "clip"), ("wavegram_logmel_cnn14", "clip"), ("cnn14", "decision_max"),
                    ("cnn14", "decision_att")]  # fmt: skip
# The encoders `test_jitted_train_step` takes through a jitted train step (`tests/models/test_encoder_coverage`).
TRAIN_STEP_ENCODERS = tuple(sorted({variant for variant, _ in TRAIN_STEP_CASES}))


@pytest.mark.parametrize("variant,head", TRAIN_STEP_CASES)
def test_jitted_train_step(variant, head):
  """One BCE step on the clip-wise output (as PANNs trains its decision-level models): finite, params move."""
  config = cnn14_config(3, SR, 1 / 16, variant=variant, head=head)
  model = make_model(config)
  wave = jnp.asarray(_waves(2, SR // 2, SR, seed=1))
  targets = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  variables = model.init(jax.random.key(0), wave)
  tx = optax.adam(1e-3)
  opt = tx.init(variables["params"])

  @jax.jit
  def step(params, stats, opt, key):
    def loss_fn(p):
      (logits, out), new = model.apply(
        {"params": p, "batch_stats": stats}, wave, train=True, mutable=["batch_stats"], rngs={"dropout": key}
      )
      return optax.sigmoid_binary_cross_entropy(logits, targets).mean(), (new["batch_stats"], out)

    (loss, (stats, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt)
    return optax.apply_updates(params, updates), stats, opt, loss, out

  params, stats, opt, loss, out = step(variables["params"], variables["batch_stats"], opt, jax.random.key(1))
  assert np.isfinite(float(loss))
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, variables["params"])
  assert max(jax.tree.leaves(moved)) > 0
  if head != "clip":
    assert out["framewise"].shape == (2, 51, 3)
