"""ResNet18/34 and ResNeSt-50d over log-mel: imported ImageNet weights match a PyTorch reference; one train step each.

The reference (`tests/reference/resnet_timm_torch.py`, written from timm's architecture with timm's key names)
is an RGB ImageNet backbone fed the gray log-mel image in all three channels; ours is the imported one-channel
encoder (first conv summed over RGB), so parity also checks that adaptation. Random weights, BatchNorm
statistics from real input then perturbed; tolerance 1e-4 on a (2, 64 frames, 64 mels) log-mel input.
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
import resnet_timm_torch  # noqa: E402

from animaljax.models import imagenet_weights, pretrained, serialize  # noqa: E402
from animaljax.models.classifier import cnn14_config, encoder_config, make_model  # noqa: E402
from animaljax.models.imagenet_resnet import ImageNetResNet  # noqa: E402
from animaljax.training.state import merge_pretrained  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
ATOL = 1e-4
VARIANTS = ("resnet18", "resnet34", "resnest50")
WIDTHS = {"resnet18": 1.0, "resnet34": 0.5, "resnest50": 0.5}  # same keys and code path; less CPU
# The encoders `test_jitted_train_step` takes through a jitted train step (`tests/models/test_encoder_coverage`).
TRAIN_STEP_ENCODERS = VARIANTS


def _logmel(batch: int = 2, frames: int = 64, mels: int = 64, seed: int = 0) -> np.ndarray:
  """A log-mel-like input: around -40 dB with structure over time and mel."""
  rng = np.random.default_rng(seed)
  base = (
    -40 + 10 * np.sin(np.arange(mels) / 7.0)[None, None] + 3 * np.cos(np.arange(frames) / 5.0)[None, :, None]
  )
  return (base + 4 * rng.standard_normal((batch, frames, mels))).astype(np.float32)


def _reference(variant: str, width: float, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  model = resnet_timm_torch.SpecEncoder(resnet_timm_torch.VARIANTS[variant](in_chans=3, width=width), 64)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  for bn in bns:  # running statistics of real input keep activations in range ...
    bn.momentum = None
    bn.reset_running_stats()
  model.train()
  with torch.no_grad():
    model(torch.from_numpy(_logmel(4, seed=seed + 1)))
  model.eval()
  with torch.no_grad():
    for bn in bns:  # ... then every statistic and affine parameter is perturbed.
      c = bn.num_features
      bn.running_mean.add_(0.1 * torch.randn(c))
      bn.running_var.mul_(torch.exp(0.2 * torch.randn(c)))
      bn.weight.copy_(1 + 0.2 * torch.randn(c))
      bn.bias.copy_(0.1 * torch.randn(c))
    # Small residual branches (in the spirit of timm's zero_init_last) keep embeddings O(1) after 16 blocks.
    for name, block in model.backbone.named_modules():
      if name.count(".") == 1 and name.startswith("layer"):
        last = block.bn2 if isinstance(block, resnet_timm_torch.BasicBlock) else block.bn3
        last.weight.mul_(0.3)
        last.bias.mul_(0.3)
  return model


def _import(ref: torch.nn.Module) -> tuple:
  """Our encoder variables from the reference backbone's state dict (bn0, not ImageNet's, copied after)."""
  state = {k: v.numpy() for k, v in ref.backbone.state_dict().items()}
  config, variables, detected = imagenet_weights.imagenet_to_flax(state)
  bn0 = ref.bn0
  variables["params"]["encoder"]["bn0"] = {
    "scale": bn0.weight.detach().numpy(),
    "bias": bn0.bias.detach().numpy(),
  }
  variables["batch_stats"]["encoder"]["bn0"] = {
    "mean": bn0.running_mean.numpy(),
    "var": bn0.running_var.numpy(),
  }
  return config, variables, detected


@pytest.mark.parametrize("variant", VARIANTS)
def test_imported_encoder_matches_the_reference(variant):
  ref = _reference(variant, WIDTHS[variant])
  config, variables, detected = _import(ref)
  assert detected == {"kind": "imagenet", "variant": variant, "width": WIDTHS[variant], "input_channels": 3}
  x = _logmel()
  with torch.no_grad():
    want = ref(torch.from_numpy(x))
  encoder_vars = {k: v["encoder"] for k, v in variables.items()}
  got = jax.jit(lambda v, f: ImageNetResNet(config.encoder).apply(v, f))(encoder_vars, x)
  assert got["embedding"].shape == (2, config.encoder.embed_dim)
  assert got["frame_embeddings"].shape == (2, 2, config.encoder.embed_dim)
  for key in ("embedding", "frame_embeddings"):
    err = float(np.abs(np.asarray(got[key]) - want[key].numpy()).max())
    print(f"{variant} {key}: max abs err {err:.2e} (scale {float(want[key].abs().max()):.2f})")
    assert err < ATOL, (variant, key, err)


def test_first_conv_sum_is_the_gray_image_in_every_channel():
  torch.manual_seed(0)
  rgb = torch.nn.Conv2d(3, 8, 7, 2, 3, bias=False)
  gray = torch.nn.Conv2d(1, 8, 7, 2, 3, bias=False)
  with torch.no_grad():
    gray.weight.copy_(torch.from_numpy(imagenet_weights.one_channel(rgb.weight.numpy())))
    x = torch.randn(2, 1, 20, 16)
    np.testing.assert_allclose(gray(x).numpy(), rgb(x.expand(-1, 3, -1, -1)).numpy(), atol=1e-5)
  with pytest.raises(imagenet_weights.CheckpointError, match="expected"):
    imagenet_weights.one_channel(np.zeros((8, 4, 3, 3), np.float32))


@pytest.mark.parametrize("variant", TRAIN_STEP_ENCODERS)
def test_jitted_train_step(variant):
  config = cnn14_config(3, 8000, 0.25, variant=variant)
  assert isinstance(config.encoder, type(encoder_config(variant)))
  model = make_model(config)
  wave = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32) * 0.1)
  labels = jnp.array([0, 2])
  variables = model.init(jax.random.key(0), wave)
  tx = optax.sgd(1e-2)

  @jax.jit
  def step(params, stats, opt_state, key):
    def loss_fn(p):
      (logits, out), upd = model.apply(
        {"params": p, "batch_stats": stats}, wave, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (upd, out)

    (loss, (upd, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), upd["batch_stats"], opt_state, loss, out

  params, stats, _, loss, out = step(variables["params"], variables["batch_stats"], tx.init(variables["params"]),
                                     jax.random.key(1))  # fmt: skip
  assert np.isfinite(float(loss))
  assert out["embedding"].shape == (2, config.encoder.embed_dim)
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), params, variables["params"])
  assert max(jax.tree.leaves(moved)) > 0


def test_safetensors_round_trip_and_cli(tmp_path):
  from safetensors.numpy import save_file

  ref = _reference("resnet18", 0.25)
  state = {k: np.ascontiguousarray(v.numpy()) for k, v in ref.backbone.state_dict().items()}
  st, pth = tmp_path / "r18.safetensors", tmp_path / "r18.pth"
  save_file(state, str(st))
  torch.save(ref.backbone.state_dict(), pth)
  _, want, _ = imagenet_weights.imagenet_to_flax(state)
  for src in (st, pth):
    out = tmp_path / f"out-{src.suffix[1:]}"
    root, detected = imagenet_weights.convert_imagenet(src, out, encoder="resnet18", sample_rate=16000)
    assert detected["variant"] == "resnet18"
    config, variables = pretrained.load_converted(root, keep_head=False)
    assert serialize.config_to_dict(config)["encoder"]["kind"] == "imagenet_resnet"
    assert config.frontend.sample_rate == 16000 and "head" not in variables["params"]
    jax.tree.map(np.testing.assert_array_equal, variables, want)
  # what `model.init_from` does with it: a model of the user's classes takes every encoder leaf, keeps its head
  user = make_model(cnn14_config(5, 16000, 0.25, variant="resnet18"))
  init = user.init(jax.random.key(0), jnp.zeros((1, 16000)))
  merged = merge_pretrained(init["params"], variables["params"], str(root))
  jax.tree.map(np.testing.assert_array_equal, merged["head"], init["params"]["head"])
  np.testing.assert_array_equal(
    merged["encoder"]["conv1"]["kernel"], want["params"]["encoder"]["conv1"]["kernel"]
  )
  # the command, as a user runs it
  cli_out = tmp_path / "cli"
  run = subprocess.run(
    [sys.executable, "-m", "animaljax.convert", "imagenet", "--checkpoint", str(st), "--encoder", "resnet18",
     "--out", str(cli_out)],
    cwd=REPO, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert run.returncode == 0, run.stderr
  assert pretrained.is_converted_dir(cli_out)
  wrong = subprocess.run(
    [sys.executable, "-m", "animaljax.convert", "imagenet", "--checkpoint", str(st), "--encoder", "resnest50",
     "--out", str(tmp_path / "wrong")],
    cwd=REPO, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert wrong.returncode == 2 and "resnet18" in wrong.stderr


def test_unsupported_checkpoints_are_named():
  with pytest.raises(imagenet_weights.CheckpointError, match="bottleneck"):
    imagenet_weights.detect_variant({"conv1.weight": 0, "layer1.0.conv3.weight": 0})
  state = {k: v.numpy() for k, v in resnet_timm_torch.VARIANTS["resnet18"](width=0.25).state_dict().items()}
  del state["layer2.0.downsample.1.running_var"]
  state["extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(
    imagenet_weights.CheckpointError, match=r"missing key .*\n.*unexpected key 'extra.weight'"
  ):
    imagenet_weights.imagenet_to_flax(state)
