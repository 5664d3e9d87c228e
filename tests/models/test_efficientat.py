"""EfficientAT mn*/dymn*: front end and converted models match a PyTorch reference; one jitted train step each.

The reference (`tests/reference/efficientat_torch.py`, written from the architecture description) carries the
published checkpoints' state-dict names, so the converter runs on the real key layout. Random weights, BatchNorm
statistics from real-looking input then perturbed, `classifier.5` scaled so logits are O(1); the whole pipeline
from the raw waveform (the reference computes its own mel front end with torch.stft) within 1e-4 in float32.
The smallest published widths (mn04, dymn04) and 0.5 s clips keep it fast; torch runs on one thread (its
tiny ops spend seconds in OpenMP spin-waits on a loaded 2-core machine otherwise: 5 s per dymn04 forward).
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
import efficientat_torch  # noqa: E402

from animaljax.audio import frontend  # noqa: E402
from animaljax.models import efficientat_weights, pretrained, serialize  # noqa: E402
from animaljax.models.classifier import ENCODERS, cnn14_config, make_model  # noqa: E402
from animaljax.models.efficientat import DYNAMIC_WIDTHS, WIDTHS, EfficientAtConfig  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 32000
ATOL = 1e-4
# The encoders `test_jitted_train_step` takes through a jitted train step (`tests/models/test_encoder_coverage`;
# the other widths have the same layer list with other channel counts, which that guard checks).
TRAIN_STEP_ENCODERS = ("mn04", "dymn04")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
  """Tiny torch ops on a shared 2-core machine spend seconds spinning in OpenMP; one thread does them at once."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _waves(batch: int, num_samples: int, seed: int = 0) -> np.ndarray:
  """Noise plus a tone per clip, float32 in [-1, 1]."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / SR
  tone = np.sin(2 * np.pi * rng.uniform(200, SR / 5, (batch, 1)) * t)
  return (0.1 * rng.standard_normal((batch, num_samples)) + 0.3 * tone).astype(np.float32)


def _reference(arch: str, seed: int = 0) -> torch.nn.Module:
  torch.manual_seed(seed)
  dynamic = arch in DYNAMIC_WIDTHS
  model = efficientat_torch.DyMN(DYNAMIC_WIDTHS[arch]) if dynamic else efficientat_torch.MN(WIDTHS[arch])
  mel = efficientat_torch.MelFrontEnd()
  with torch.no_grad():  # EfficientAT's N(0, 0.01) Linears would leave every gate and attention uniform
    for name, p in model.named_parameters():
      if p.ndim == 2 and not name.startswith("classifier"):
        p.normal_(0.0, 0.5 / p.shape[1] ** 0.5)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  blocks = [
    m for m in model.modules() if isinstance(m, (efficientat_torch.IR, efficientat_torch.DyBlock)) and m.res
  ]
  for bn in bns:  # running statistics of real-looking input keep activations in range ...
    bn.momentum = None
    bn.reset_running_stats()
  model.train()
  with torch.no_grad():
    model(mel(torch.from_numpy(_waves(2, SR // 2, seed=seed + 1)))[:, None])
  model.eval()
  with torch.no_grad():
    for bn in bns:  # ... then every statistic and affine parameter is perturbed.
      c = bn.num_features
      bn.running_mean.add_(0.1 * bn.running_var.sqrt() * torch.randn(c))  # relative: some inputs are tiny
      bn.running_var.mul_(torch.exp(0.2 * torch.randn(c)))
      bn.weight.copy_(1 + 0.2 * torch.randn(c))
      bn.bias.copy_(0.1 * torch.randn(c))
    for block in blocks:  # small residual branches keep the residual stream O(1) over 15 blocks (cf. timm's
      last = block.proj_norm if dynamic else block.block[-1][1]  # zero_init_last)
      last.weight.mul_(0.3)
      last.bias.mul_(0.3)
    x = mel(torch.from_numpy(_waves(2, SR // 2, seed=seed + 2)))[:, None]
    model.classifier[5].weight.div_(model(x)["logits"].std())
    model.classifier[5].bias.copy_(0.1 * torch.randn_like(model.classifier[5].bias))
  return model


def _random_variables(model, wave: jax.Array, seed: int = 0) -> dict:
  """Variables of `model` for `wave` without running its initialisers: shapes from `eval_shape`, kernels
  N(0, 1 / fan_in), BatchNorm and biases at their initial values. `jax.jit(model.init)` would compile every
  random initialiser of a 15-block network, 8-15 s on 2 cores for mn04, more than the train step."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    if name in ("bias", "mean"):
      return jnp.zeros(leaf.shape, leaf.dtype)
    fan_in = max(1, int(np.prod(leaf.shape[:-1])))  # a dynamic conv's kernel bank: the K kernels
    return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(fan_in), leaf.dtype)

  abstract = jax.eval_shape(model.init, jax.random.key(0), wave)
  return jax.tree_util.tree_map_with_path(fill, abstract)


def _max_err(ours, theirs) -> float:
  ours, theirs = np.asarray(ours), np.asarray(theirs.numpy() if hasattr(theirs, "numpy") else theirs)
  assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
  return float(np.abs(ours - theirs).max())


# ----------------------------------------------------------------------------------------------------------------
# Front end
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_samples", [SR // 2, 1000, 12345])
def test_frontend_matches_reference(num_samples):
  wave = _waves(2, num_samples, seed=3)
  with torch.no_grad():
    want = efficientat_torch.MelFrontEnd()(torch.from_numpy(wave)).numpy().transpose(0, 2, 1)
  cfg = frontend.EfficientAtMelConfig()
  got = jax.jit(lambda w: frontend.features(w, cfg))(wave)
  assert got.shape == (2, frontend.num_frames(num_samples, cfg), 128) == want.shape
  err = _max_err(got, want)
  print(f"front end {num_samples} samples: max abs err {err:.2e} (range {want.min():.2f}..{want.max():.2f})")
  assert err < ATOL
  ints = (wave * 32767).astype(np.int16)  # int16 input is scaled by 1/32768, as every front end
  np.testing.assert_allclose(frontend.features(ints, cfg), frontend.features(ints / 32768.0, cfg), atol=1e-5)


def test_frontend_mel_banks_and_short_clips():
  banks = efficientat_torch.kaldi_banks(128, 1024, SR, 0.0, 15000.0).numpy().T
  from animaljax.audio.efficientat_frontend import mel_banks

  # torchaudio (and the reference) build the triangles in float32, ours in float64: ~2e-5 apart at most.
  np.testing.assert_allclose(mel_banks(128, 1024, SR, 0.0, 15000.0), banks, atol=5e-5)
  assert (banks > 0).sum(axis=0).min() >= 1  # no empty mel bin at 128 bins over 0-15 kHz
  cfg = frontend.EfficientAtMelConfig()
  assert frontend.num_frames(cfg.min_samples - 1, cfg) == 0 and frontend.num_frames(cfg.min_samples, cfg) == 2
  with pytest.raises(ValueError, match="too short"):
    frontend.features(np.zeros((1, 300), np.float32), cfg)


@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (5, 2)])
def test_dynamic_depthwise_conv_with_a_symbolic_batch(kernel, stride):
  """dymn's per-example depthwise conv: the grouped conv (static batch) and the taps sum that `jax.export` with a
  symbolic batch gets (a bundle's forward) both equal one plain depthwise conv per example."""
  from jax import export

  from animaljax.models.efficientat_dynamic import depthwise_per_example

  rng = np.random.default_rng(0)
  x = rng.standard_normal((3, 13, 9, 8)).astype(np.float32)
  w = rng.standard_normal((3, 8, kernel, kernel)).astype(np.float32)
  pad = (kernel - 1) // 2
  want = np.concatenate([
    jax.lax.conv_general_dilated(
      x[i : i + 1], w[i].transpose(1, 2, 0)[:, :, None], (stride, stride), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=8,
    ) for i in range(3)
  ])  # fmt: skip
  grouped = depthwise_per_example(jnp.asarray(x), jnp.asarray(w), stride)
  (b,) = export.symbolic_shape("b")
  exported = export.export(jax.jit(lambda x, w: depthwise_per_example(x, w, stride)))(
    jax.ShapeDtypeStruct((b, *x.shape[1:]), jnp.float32), jax.ShapeDtypeStruct((b, *w.shape[1:]), jnp.float32)
  )
  taps = exported.call(x, w)
  assert want.shape == (3, -(-13 // stride), -(-9 // stride), 8)
  np.testing.assert_allclose(np.asarray(grouped), want, atol=1e-5)
  np.testing.assert_allclose(np.asarray(taps), want, atol=1e-5)
  np.testing.assert_allclose(np.asarray(exported.call(x[:1], w[:1])), want[:1], atol=1e-5)  # any batch size


# ----------------------------------------------------------------------------------------------------------------
# Parity of converted models (the classifier's whole forward from the waveform)
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["mn04", "dymn04"])
def test_converted_model_matches_reference(tmp_path, arch):
  ref = _reference(arch)
  path = tmp_path / f"{arch}_as.pt"
  torch.save(ref.state_dict(), path)  # EfficientAT's files are bare state dicts
  config, variables, detected = efficientat_weights.efficientat_to_flax(efficientat_weights.read_state(path))
  assert detected == {"kind": "efficientat", "variant": arch, "width_mult": 0.4, "num_classes": 527}
  assert serialize.config_from_dict(serialize.config_to_dict(config)) == config  # model.json round trip

  wave = _waves(2, SR // 2 + 77, seed=7)
  with torch.no_grad():
    mel = efficientat_torch.MelFrontEnd()(torch.from_numpy(wave))
    want = ref(mel[:, None])
  assert 0.3 < float(want["logits"].std()) < 5.0 and float(want["embedding"].std()) > 0.05
  logits, out = jax.jit(make_model(config).apply)(variables, wave)
  errs = {
    k: _max_err(logits if k == "logits" else out[k], want[k]) for k in ("logits", "embedding", "pooled")
  }
  print(f"{arch}: max abs errors {errs}")
  assert all(e < ATOL for e in errs.values()), errs
  assert out["frame_embeddings"].shape == (2, 2, config.encoder.pooled_dim)  # 51 frames / 2^5, rounded up


def test_detection_errors_and_safetensors_cli(tmp_path):
  from safetensors.numpy import save_file

  torch.manual_seed(0)
  state = {k: v.numpy() for k, v in efficientat_torch.MN(WIDTHS["mn05"]).state_dict().items()}
  assert efficientat_weights.detect_arch(state) == "mn05"  # mn04 and mn05 share their first layers
  assert (
    efficientat_weights.detect_arch(
      {k: v.numpy() for k, v in efficientat_torch.DyMN(2.0).state_dict().items()}
    )
    == "dymn20"
  )
  with pytest.raises(efficientat_weights.CheckpointError, match="asked for mn10, the checkpoint is mn05"):
    efficientat_weights.efficientat_to_flax(state, arch="mn10")
  with pytest.raises(efficientat_weights.CheckpointError, match="known architectures: mn04, mn05, mn10"):
    efficientat_weights.detect_arch({"conv1.weight": np.zeros((8, 1, 3, 3))})
  broken = {**state, "features.3.block.9.weight": np.zeros(3)}
  del broken["features.4.block.2.conc_se_layers.0.fc1.weight"]
  with pytest.raises(
    efficientat_weights.CheckpointError, match="missing key.*fc1.weight.*\n.*unexpected key"
  ):
    efficientat_weights.efficientat_to_flax(broken)

  path = tmp_path / "mn05.safetensors"
  save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
  out = tmp_path / "converted"
  cmd = [
    sys.executable,
    "-m",
    "animaljax.convert",
    "efficientat",
    "--checkpoint",
    str(path),
    "--out",
    str(out),
  ]
  proc = subprocess.run(cmd + ["--arch", "mn05"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert '"variant": "mn05"' in proc.stdout
  config, variables = pretrained.load_converted(out)
  assert config.encoder == EfficientAtConfig("mn05") and config.num_classes == 527
  kernel = variables["params"]["encoder"]["features"]["0"]["0"]["kernel"]
  np.testing.assert_array_equal(kernel, state["features.0.0.weight"].transpose(2, 3, 1, 0))
  bad = subprocess.run(
    cmd[:-1] + [str(tmp_path / "x"), "--arch", "mn10"], cwd=REPO, capture_output=True, text=True
  )
  assert bad.returncode == 2 and "asked for mn10" in bad.stderr and "Traceback" not in bad.stderr


# ----------------------------------------------------------------------------------------------------------------
# Every architecture is registered; one jitted train step on the smallest of each family
# ----------------------------------------------------------------------------------------------------------------
def test_every_architecture_is_an_encoder_with_the_published_size():
  assert set(WIDTHS) | set(DYNAMIC_WIDTHS) <= set(ENCODERS)
  # EfficientAT's README: mn04 0.983 M, mn10 4.88 M, mn40 68.43 M parameters (527 classes).
  sizes = {"mn04": 0.983e6, "mn10": 4.88e6, "mn40": 68.43e6}
  for arch, want in sizes.items():
    config = cnn14_config(527, SR, variant=arch)
    abstract = jax.eval_shape(
      make_model(config).init, jax.random.key(0), jax.ShapeDtypeStruct((1, SR), jnp.float32)
    )
    n = sum(x.size for x in jax.tree.leaves(abstract["params"]))
    assert abs(n - want) < 0.006e6 * max(1, want / 1e6 / 10), (arch, n)
  with pytest.raises(ValueError, match="32 kHz"):
    cnn14_config(3, 16000, variant="mn10")


# dymn04's step compiles for 20-40 s on 2 cores: slow; its forward is covered by the parity test above.
@pytest.mark.parametrize(
  "arch", [pytest.param(a, marks=pytest.mark.slow) if a in DYNAMIC_WIDTHS else a for a in TRAIN_STEP_ENCODERS]
)
def test_jitted_train_step(arch):
  config = cnn14_config(3, SR, width=0.5, variant=arch)
  model = make_model(config)
  wave = jnp.asarray(_waves(2, SR // 10, seed=1))  # 0.1 s: 10 frames, one after the five stride-2 layers
  labels = jnp.array([0, 2])
  variables = _random_variables(model, wave)
  tx = optax.adam(1e-3)

  @jax.jit
  def step(params, stats, opt_state, key):
    def loss_fn(p):
      (logits, out), upd = model.apply(
        {"params": p, "batch_stats": stats}, wave, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
      )
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), (upd, out)

    (loss, (upd, out)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), upd["batch_stats"], opt_state, loss, out, grads

  key = jax.random.key(1, impl="rbg")
  params, stats, _, loss, out, grads = step(
    variables["params"], variables["batch_stats"], tx.init(variables["params"]), key
  )
  assert np.isfinite(float(loss))
  assert out["embedding"].shape == (2, config.encoder.embed_dim) and out["pooled"].shape == (
    2,
    config.encoder.pooled_dim,
  )
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
  # every parameter receives a gradient (a dynamic block's kernel banks, attention and context layers too)
  dead = [
    jax.tree_util.keystr(p)
    for p, g in jax.tree_util.tree_leaves_with_path(grads)
    if not np.any(np.asarray(g))
  ]
  assert not dead, dead
  moved = jax.tree.map(
    lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))), stats, variables["batch_stats"]
  )
  assert all(jax.tree.leaves(moved))  # every BatchNorm saw the batch
