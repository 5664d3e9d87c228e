"""PANNs ResNet22/38/54 and MobileNetV1/V2: converted weights match a PyTorch reference; one train step each.

The reference (`tests/reference/panns_resnet_torch.py`, written from the architecture description) carries the
published checkpoints' state-dict names, so the converter is exercised on the real key layout. As in
`test_convert.py`: random weights, BatchNorm statistics from real-looking input then perturbed, fc1 and the head
scaled so embeddings and logits are O(1); a tolerance of 1e-4 on 1 s at 32 kHz (the whole pipeline: the reference
computes its own log-mel). ResNets run at 1/4 width (same keys and code path); MobileNets at full width.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
import panns_resnet_torch  # noqa: E402

from animaljax.models import serialize, torch_weights  # noqa: E402
from animaljax.models.classifier import cnn14_config, encoder_config, make_model  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 32000
ATOL = 1e-4
WIDTHS = {"resnet22": 0.25, "resnet38": 0.25, "resnet54": 0.25, "mobilenetv1": 1.0, "mobilenetv2": 1.0}
# The encoders `test_train_step` takes through a jitted train step (`tests/models/test_encoder_coverage`).
TRAIN_STEP_ENCODERS = tuple(sorted(WIDTHS))


def _waves(batch: int, num_samples: int, seed: int = 0) -> np.ndarray:
  """Noise plus a tone per clip (energy in every bin, no log floor), float32."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / SR
  tone = np.sin(2 * np.pi * rng.uniform(200, SR / 5, (batch, 1)) * t)
  return (0.1 * rng.standard_normal((batch, num_samples)) + 0.3 * tone).astype(np.float32)


def _reference(variant: str, width: float, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  model = panns_resnet_torch.VARIANTS[variant](width=width)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  for bn in bns:  # cumulative running statistics over real-looking input keep activations in range ...
    bn.momentum = None
    bn.reset_running_stats()
  model.train()
  with torch.no_grad():
    model(torch.from_numpy(_waves(2, SR, seed=seed + 1)))
  model.eval()
  with torch.no_grad():
    for bn in bns:  # ... then every statistic and affine parameter is perturbed.
      c = bn.num_features
      bn.running_mean.add_(0.1 * torch.randn(c))
      bn.running_var.mul_(torch.exp(0.2 * torch.randn(c)))
      bn.weight.copy_(1 + 0.2 * torch.randn(c))
      bn.bias.copy_(0.1 * torch.randn(c))
    x = torch.from_numpy(_waves(2, SR, seed=seed + 2))
    emb = model(x)["embedding"]
    model.fc1.weight.div_(emb.std())
    model.fc1.bias.div_(emb.std())
    model.fc_audioset.weight.div_(model(x)["logits"].std())
    model.fc_audioset.bias.copy_(0.1 * torch.randn_like(model.fc_audioset.bias))
  return model


def _max_err(ours, theirs) -> float:
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
  return float(np.abs(ours - theirs).max())


@pytest.fixture(scope="module")
def mobilenet_checkpoint(tmp_path_factory) -> tuple[torch.nn.Module, pathlib.Path]:
  ref = _reference("mobilenetv1", 1.0)
  path = tmp_path_factory.mktemp("mnv1") / "MobileNetV1.pth"
  torch.save({"model": ref.state_dict(), "iteration": 10}, path)
  return ref, path


# ----------------------------------------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------------------------------------
def _parity(tmp_path, variant: str, width: float) -> dict[str, float]:
  ref = _reference(variant, width)
  path = tmp_path / "ckpt.pth"
  torch.save({"model": ref.state_dict(), "iteration": 1000}, path)
  config, variables, detected = torch_weights.convert_checkpoint(path)
  assert detected["variant"] == variant and detected["width"] == width and detected["sample_rate"] == SR
  assert config.encoder.variant == variant and config.num_classes == 527
  assert serialize.config_from_dict(serialize.config_to_dict(config)) == config  # model.json round trip

  wave = _waves(2, SR + 123, seed=7)
  with torch.no_grad():
    want = ref(torch.from_numpy(wave))
  logits, out = jax.jit(make_model(config).apply)(variables, wave)
  assert 0.2 < float(want["logits"].std()) < 5.0 and float(want["clipwise_output"].max()) < 0.999
  errs = {
    "probs": _max_err(jax.nn.sigmoid(logits), want["clipwise_output"]),
    "logits": _max_err(logits, want["logits"]),
    "embedding": _max_err(out["embedding"], want["embedding"]),
  }
  print(f"{variant} width {width}: max abs errors {errs}")
  assert all(e < ATOL for e in errs.values()), errs
  assert out["embedding"].shape == (2, config.encoder.embed_dim) and out["frame_embeddings"].ndim == 3
  return errs


@pytest.mark.parametrize("variant", sorted(WIDTHS))
def test_parity(tmp_path, variant):
  _parity(tmp_path, variant, WIDTHS[variant])


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["resnet22", "resnet38", "resnet54"])
def test_parity_full_width(tmp_path, variant):
  """The published ResNets (63-104 M parameters)."""
  _parity(tmp_path, variant, 1.0)


# ----------------------------------------------------------------------------------------------------------------
# Key layout, detection, CLI
# ----------------------------------------------------------------------------------------------------------------
def test_reference_key_names():
  """The published layouts this converter assumes (PANNs' `_ResNet._make_layer` and MobileNet Sequentials)."""
  keys = {name: set(panns_resnet_torch.VARIANTS[name](width=0.125).state_dict()) for name in WIDTHS}
  r22, r54 = keys["resnet22"], keys["resnet54"]
  assert {"resnet.layer1.1.bn2.running_var", "resnet.layer2.0.downsample.1.weight"} <= r22
  assert {"resnet.layer2.0.downsample.2.running_mean", "conv_block_after1.conv2.weight"} <= r22
  assert not any(k.startswith("resnet.layer1.0.downsample") for k in r22)  # stride 1, same channels
  assert {"resnet.layer1.0.downsample.0.weight", "resnet.layer1.0.downsample.1.running_var"} <= r54
  assert {"resnet.layer4.2.conv3.weight", "resnet.layer3.5.bn3.bias"} <= r54
  assert {
    "features.0.0.weight",
    "features.0.2.running_mean",
    "features.13.4.weight",
    "features.13.5.bias",
  } <= (keys["mobilenetv1"])
  v2 = keys["mobilenetv2"]
  assert {"features.1.conv.0.weight", "features.1.conv.5.bias", "features.2.conv.8.running_var"} <= v2
  assert {"features.17.conv.7.weight", "features.18.0.weight", "features.18.1.running_mean"} <= v2


def test_detection_errors():
  ref = panns_resnet_torch.ResNet22(width=0.125)
  state = {k: v.numpy() for k, v in ref.state_dict().items()}
  del state["resnet.layer4.1.conv1.weight"], state["resnet.layer4.1.bn1.weight"]
  state = {k: v for k, v in state.items() if not k.startswith("resnet.layer4.1.")}
  with pytest.raises(ValueError, match=r"basic blocks \[2, 2, 2, 1\]"):
    torch_weights.panns_to_flax(state)
  with pytest.raises(torch_weights.CheckpointError, match="mobilenetv2"):
    torch_weights.detect_kind({"encoder.weight": np.zeros(2)})


def test_cli_and_model_json(mobilenet_checkpoint, tmp_path):
  from animaljax.models import pretrained

  ref, path = mobilenet_checkpoint
  out = tmp_path / "converted"
  cmd = [sys.executable, "-m", "animaljax.convert", "panns", "--checkpoint", str(path), "--out", str(out)]
  proc = subprocess.run(
    cmd + ["--variant", "mobilenetv1"], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert proc.returncode == 0, proc.stderr
  assert '"variant": "mobilenetv1"' in proc.stdout
  config, variables = pretrained.load_converted(out)
  assert serialize.config_to_dict(config)["encoder"]["kind"] == "panns_mobilenet"
  wave = _waves(1, SR, seed=4)
  with torch.no_grad():
    want = ref(torch.from_numpy(wave))
  logits, _ = jax.jit(make_model(config).apply)(variables, wave)
  assert _max_err(logits, want["logits"]) < ATOL


# ----------------------------------------------------------------------------------------------------------------
# One jitted train step per architecture
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", TRAIN_STEP_ENCODERS)
def test_train_step(variant):
  assert encoder_config(variant).variant == variant
  config = cnn14_config(3, SR, width=WIDTHS[variant] / 2, variant=variant)
  model = make_model(config)
  wave = jnp.asarray(_waves(2, SR // 2, seed=1))
  labels = jnp.array([0, 2])
  key = jax.random.key(0, impl="rbg")
  variables = jax.jit(model.init)(key, wave)
  tx = optax.adam(1e-3)
  opt_state = tx.init(variables["params"])

  @jax.jit
  def step(params, batch_stats, opt_state, key):
    def loss_fn(p):
      (logits, out), upd = model.apply(
        {"params": p, "batch_stats": batch_stats},
        wave,
        train=True,
        rngs={"dropout": key},
        mutable=["batch_stats"],
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (out, upd)

    (loss, (out, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), upd["batch_stats"], opt_state, loss, out

  params, stats, _, loss, out = step(variables["params"], variables["batch_stats"], opt_state, key)
  assert np.isfinite(float(loss))
  assert out["embedding"].shape == (2, config.encoder.embed_dim) and out["frame_embeddings"].shape[:2] == (
    2,
    1,
  )
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  changed = jax.tree.map(
    lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), stats, variables["batch_stats"]
  )
  assert all(jax.tree.leaves(changed))  # every BatchNorm saw the batch
