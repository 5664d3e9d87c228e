"""Shape, mode and precision contracts of the classifiers (tiny variants), plus full-size size/FLOP checks."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from animaljax.audio import frontend
from animaljax.models import (
  Ast,
  AstConfig,
  Classifier,
  ClassifierConfig,
  CnnConfig,
  ast_config,
  cnn14_config,
  encoder_config,
  make_model,
  patch_grid,
  resize_pos_embed,
)

SR = 16000
NUM_CLASSES = 5


def _tiny_ast() -> ClassifierConfig:
  cfg = ast_config(NUM_CLASSES, size="tiny", clip_seconds=1.0, depth=2)
  # Non-zero dropout and drop path so the train-mode checks exercise the AST's rng paths too.
  return dataclasses.replace(cfg, encoder=dataclasses.replace(cfg.encoder, dropout=0.1, drop_path=0.1))


VARIANTS = {
  "cnn6": lambda: cnn14_config(NUM_CLASSES, sample_rate=SR, width=1 / 8, variant="cnn6"),
  "cnn10": lambda: cnn14_config(NUM_CLASSES, sample_rate=SR, width=1 / 16, variant="cnn10"),
  "cnn14": lambda: cnn14_config(NUM_CLASSES, sample_rate=SR, width=1 / 16),
  "ast": _tiny_ast,
}
# Front-end/dtype plumbing is shared by the three CNNs: its checks run on ast and the cheapest CNN to compile
# (compiles are the cost of this file).
PLUMBING = ["ast", "cnn6"]
# The encoders `Built.train_fn` takes through a jitted train step (`tests/models/test_encoder_coverage`).
TRAIN_STEP_ENCODERS = tuple(sorted(VARIANTS))
LABELS = np.array([0, 3])


def _key(seed: int) -> jax.Array:
  # XLA's RngBitGenerator: on CPU the default threefry makes every jitted init/train step compile 3-5x slower.
  return jax.random.key(seed, impl="rbg")


def _noise(features: jax.Array, rng: jax.Array) -> jax.Array:
  """A feature_fn whose effect is recognisable: unit Gaussian noise."""
  return features + jax.random.normal(rng, features.shape)


@pytest.fixture(scope="module")
def wave_int16() -> np.ndarray:
  rng = np.random.default_rng(0)
  return (rng.standard_normal((2, SR)) * 3000).clip(-32768, 32767).astype(np.int16)


@dataclasses.dataclass
class Built:
  cfg: ClassifierConfig
  model: Classifier
  variables: dict
  init_fn: object  # jitted key -> ((logits, out), variables): eval-mode forward, passing feature_fn (ignored)
  train_fn: object  # jitted (variables, wave, key) -> ((logits, out), updates, grads, params): one SGD step


def _build(name: str, wave: np.ndarray) -> Built:
  cfg = VARIANTS[name]()
  model = make_model(cfg)
  # One compile gives the parameters and an eval forward (init runs the module in eval mode, with no
  # "dropout" or "augment" rng: it would fail if eval used either).
  init_fn = jax.jit(lambda k: model.init_with_output(k, jnp.asarray(wave), feature_fn=_noise))
  _, variables = init_fn(_key(0))
  train_fn = jax.jit(lambda v, w, k: _train_step(model, v, w, k, feature_fn=_noise))
  return Built(cfg, model, variables, init_fn, train_fn)


def _train_step(model, variables, wave, key, **kw):
  """One SGD step on a cross-entropy loss: ((logits, out), updates, grads, new params) of the train forward."""

  def loss_fn(params):
    (logits, out), upd = _train(model, {**variables, "params": params}, wave, key, **kw)
    return optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean(), ((logits, out), upd)

  (_, (result, upd)), grads = jax.value_and_grad(loss_fn, has_aux=True)(variables["params"])
  return result, upd, grads, jax.tree.map(lambda p, g: p - 0.1 * g, variables["params"], grads)


def _train(model, variables, wave, key, **kw):
  rngs = {"dropout": key, "augment": jax.random.fold_in(key, 1)}
  return model.apply(variables, wave, train=True, rngs=rngs, mutable=["batch_stats"], **kw)


_BUILT: dict[str, Built] = {}


def _get(name: str, wave: np.ndarray) -> Built:
  """Variants are built (compiled) once per session and shared by the tests below."""
  if name not in _BUILT:
    _BUILT[name] = _build(name, wave)
  return _BUILT[name]


@pytest.fixture(params=sorted(VARIANTS))
def built(request, wave_int16) -> Built:
  return _get(request.param, wave_int16)


def test_output_shapes_and_eval_determinism(built, wave_int16):
  cfg, variables = built.cfg, built.variables
  (logits, out), again_vars = built.init_fn(_key(0))
  assert logits.shape == (2, NUM_CLASSES) and logits.dtype == jnp.float32
  assert out["embedding"].shape == (2, cfg.encoder.embed_dim)
  frames = frontend.num_frames(SR, cfg.frontend)
  assert out["features"].shape == (2, frames, frontend.num_bins(cfg.frontend))
  assert out["features"].dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  assert set(variables["params"]) == {"encoder", "head"}
  if isinstance(cfg.encoder, CnnConfig):
    assert set(variables["batch_stats"]) == {"encoder"}
  else:
    assert "batch_stats" not in variables
  (again, _), _ = built.init_fn(_key(0))
  np.testing.assert_array_equal(np.asarray(logits), np.asarray(again))


def test_train_mode_dropout_rng_batch_stats_and_feature_fn(built, wave_int16):
  cfg, variables = built.cfg, built.variables
  (l1, o1), upd1, grads, params = built.train_fn(variables, wave_int16, _key(1))
  (l1b, _), *_ = built.train_fn(variables, wave_int16, _key(1))
  (l2, o2), *_ = built.train_fn(variables, wave_int16, _key(2))
  # A real train step: finite gradients reaching the first layers and the head, parameters moved.
  assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
  for part in ("encoder", "head"):
    assert max(float(np.abs(np.asarray(g)).max()) for g in jax.tree.leaves(grads[part])) > 0, part
  assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))
  (le, oe), _ = built.init_fn(_key(0))
  np.testing.assert_array_equal(np.asarray(l1), np.asarray(l1b))  # same rngs, same result
  assert not np.allclose(np.asarray(l1), np.asarray(l2))  # dropout and augmentation follow the rngs
  assert not np.allclose(np.asarray(l1), np.asarray(le))
  # feature_fn: applied once in train mode (unit noise after the front end), never in eval.
  d1 = np.asarray(o1["features"] - oe["features"])
  d2 = np.asarray(o2["features"] - oe["features"])
  assert 0.9 < d1.std() < 1.1 and abs(d1.mean()) < 0.05
  assert not np.allclose(d1, d2)
  if isinstance(cfg.encoder, CnnConfig):
    old, new = variables["batch_stats"]["encoder"], upd1["batch_stats"]["encoder"]
    assert jax.tree.structure(old) == jax.tree.structure(new)
    for key in ("bn0", "conv_block1", f"conv_block{len(cfg.encoder.channels)}"):
      changed = jax.tree.map(lambda a, b: not np.allclose(a, b), old[key], new[key])
      assert all(jax.tree.leaves(changed)), key
  else:
    assert not upd1.get("batch_stats")


@pytest.mark.parametrize("name", PLUMBING)
def test_int16_equals_scaled_float(name, wave_int16):
  b = _get(name, wave_int16)
  both = jax.jit(lambda v, wi, wf: (b.model.apply(v, wi)[0], b.model.apply(v, wf)[0]))
  li, lf = both(b.variables, wave_int16, wave_int16.astype(np.float32) / 32768.0)
  np.testing.assert_allclose(np.asarray(li), np.asarray(lf), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", PLUMBING)
def test_bf16_compute_keeps_fp32_params_and_logits(name, wave_int16):
  b = _get(name, wave_int16)
  bf_model = make_model(dataclasses.replace(b.cfg, dtype="bfloat16"))
  bf_vars = jax.eval_shape(bf_model.init, _key(0), jnp.asarray(wave_int16))
  assert {x.dtype for x in jax.tree.leaves(bf_vars)} == {jnp.dtype(jnp.float32)}

  # The same fp32 parameters computed in bf16 (eval); CNNs also train one step (BN statistics stay fp32).
  cnn = isinstance(b.cfg.encoder, CnnConfig)

  def run(v, w):
    return bf_model.apply(v, w), (_train(bf_model, v, w, _key(3))[1] if cnn else {})

  (lb, out), upd = jax.jit(run)(b.variables, wave_int16)
  (lf, _), _ = b.init_fn(_key(0))
  assert lb.dtype == jnp.float32 and out["features"].dtype == jnp.float32
  assert out["embedding"].dtype == jnp.bfloat16
  err = np.linalg.norm(np.asarray(lb) - np.asarray(lf)) / np.linalg.norm(np.asarray(lf))
  assert err < 0.05, err
  if cnn:
    stats = jax.tree.leaves(upd["batch_stats"])
    assert len(stats) == len(jax.tree.leaves(b.variables["batch_stats"]))
    assert all(x.dtype == jnp.float32 for x in stats)


# ----------------------------------------------------------------------------------------------------------------
# CNN specifics
# ----------------------------------------------------------------------------------------------------------------
def test_cnn_pooling_floors_odd_sizes():
  cfg = cnn14_config(NUM_CLASSES, sample_rate=SR, width=1 / 16)
  model = make_model(cfg)
  wave = jnp.zeros((1, SR))  # 101 frames x 64 mels
  (_, out), _ = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), wave))
  t = 101
  for _ in range(5):  # floor(t / 2) after blocks 1-5, none after block 6
    t //= 2
  assert out["frame_embeddings"].shape == (1, t, cfg.encoder.embed_dim) == (1, 3, 128)


def test_cnn_rejects_clips_too_short_for_its_pooling():
  model = make_model(cnn14_config(NUM_CLASSES, sample_rate=SR, width=1 / 16))
  with pytest.raises(ValueError, match="at least 32 frames"):
    jax.eval_shape(model.init, _key(0), jnp.zeros((1, 160 * 20)))  # 21 frames, pooled 5 times


def test_unknown_names_and_bad_configs_raise_clear_errors():
  with pytest.raises(ValueError, match="ast, cnn10, cnn14, cnn6"):
    encoder_config("resnet")
  with pytest.raises(ValueError, match="cnn6"):
    CnnConfig(variant="cnn12")
  with pytest.raises(ValueError, match="sample rates"):
    cnn14_config(3, sample_rate=44100)
  with pytest.raises(ValueError, match="num_mel_bins"):
    ClassifierConfig(frontend.LogMelConfig(), AstConfig(size="tiny"), 3)


# ----------------------------------------------------------------------------------------------------------------
# AST positional embeddings
# ----------------------------------------------------------------------------------------------------------------
def test_resize_pos_embed_identity_shapes_and_centre_cut():
  pe = np.random.default_rng(0).standard_normal((1, 2 + 12 * 9, 8)).astype(np.float32)
  assert resize_pos_embed(pe, (12, 9), (12, 9)) is pe
  out = np.asarray(resize_pos_embed(pe, (12, 9), (10, 5)))
  assert out.shape == (1, 2 + 10 * 5, 8)
  np.testing.assert_array_equal(out[:, :2], pe[:, :2])
  grid = pe[0, 2:].reshape(12, 9, 8)
  np.testing.assert_array_equal(out[0, 2:].reshape(10, 5, 8), grid[1:11, 2:7])  # 12//2-10//2, 9//2-5//2
  assert resize_pos_embed(pe, (12, 9), (13, 20)).shape == (1, 2 + 13 * 20, 8)
  with pytest.raises(ValueError, match="grid"):
    resize_pos_embed(pe, (12, 8), (12, 9))


def _linear_half_pixel(x: np.ndarray, new: int, axis: int) -> np.ndarray:
  """torch `interpolate(mode="bilinear", align_corners=False)` along one axis, written out."""
  old = x.shape[axis]
  src = np.maximum((np.arange(new) + 0.5) * old / new - 0.5, 0.0)
  i0 = np.floor(src).astype(int)
  i1 = np.minimum(i0 + 1, old - 1)
  w = (src - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
  return np.take(x, i0, axis=axis) * (1 - w) + np.take(x, i1, axis=axis) * w


def test_resize_pos_embed_grow_is_bilinear_half_pixel():
  pe = np.random.default_rng(0).standard_normal((1, 2 + 4 * 6, 3)).astype(np.float32)
  out = np.asarray(resize_pos_embed(pe, (4, 6), (7, 11)))
  want = _linear_half_pixel(_linear_half_pixel(pe[0, 2:].reshape(4, 6, 3), 7, 0), 11, 1)
  np.testing.assert_allclose(out[0, 2:], want.reshape(77, 3), atol=1e-5)
  # Mixed: grow time, cut frequency.
  out = np.asarray(resize_pos_embed(pe, (4, 6), (2, 9)))
  want = _linear_half_pixel(pe[0, 2:].reshape(4, 6, 3)[1:3], 9, 1)
  np.testing.assert_allclose(out[0, 2:], want.reshape(18, 3), atol=1e-5)


def test_ast_resizes_pos_embed_for_other_lengths_and_pads_short_input():
  cfg = AstConfig(size="tiny", depth=1, input_frames=60, num_mel_bins=32)
  fbank = jax.random.normal(_key(0), (1, 90, 32))
  shapes = jax.eval_shape(Ast(cfg).init, _key(1), fbank[:, :60])["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(np.float32), shapes)
  for frames in (90, 9):  # a longer grid, and a clip shorter than one patch (zero-padded to 16, shorter grid)
    x = fbank[:, :frames]
    # Reference: a model laid out for this length whose stored pos_embed was resized beforehand.
    ref_cfg = dataclasses.replace(cfg, input_frames=max(frames, 16))
    assert ref_cfg.grid == patch_grid(32, frames) and ref_cfg.grid != cfg.grid
    ref_params = {**params, "pos_embed": resize_pos_embed(params["pos_embed"], cfg.grid, ref_cfg.grid)}
    x_ref = jnp.pad(x, ((0, 0), (0, max(0, 16 - frames)), (0, 0)))

    def both(p, rp, x, x_ref, ref_cfg=ref_cfg):
      return Ast(cfg).apply({"params": p}, x)["embedding"], Ast(ref_cfg).apply({"params": rp}, x_ref)[
        "embedding"
      ]

    got, want = jax.jit(both)(params, ref_params, x, x_ref)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------
# Full-size checks: parameter counts (eval_shape, no memory) and XLA FLOPs
# ----------------------------------------------------------------------------------------------------------------
def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_cnn14_parameter_count_matches_panns():
  model = make_model(cnn14_config(527))
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32000)))
  # PANNs' count (trainable parameters, as `sum(p.numel() for p in model.parameters() if p.requires_grad)`):
  # convs without bias, BN scale+shift (running mean/var are buffers, not counted), bn0, fc1, fc_audioset.
  # The frozen STFT and mel matrices are not counted; our front end has no parameters at all.
  chans = [1, 64, 128, 256, 512, 1024, 2048]
  convs = sum(9 * cin * cout + 9 * cout * cout for cin, cout in zip(chans[:-1], chans[1:], strict=True))
  bns = sum(2 * 2 * c for c in chans[1:]) + 2 * 64
  fcs = 2048 * 2048 + 2048 + 2048 * 527 + 527
  assert convs + bns + fcs == 80_753_615  # the published figure
  assert _count(variables["params"]) == 80_753_615
  assert _count(variables["batch_stats"]) == bns  # mean + var for each BN


def test_ast_base_parameter_count_matches_reference_formula():
  cfg = ClassifierConfig(frontend.FbankConfig.ast(), AstConfig(size="base", input_frames=1024), 527)
  model = make_model(cfg)
  variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 160000)))
  d, n = 768, 12 * 101  # (128-16)//10+1 = 12 freq patches, (1024-16)//10+1 = 101 time patches
  block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
  ast = (16 * 16 * d + d) + 2 * d + (n + 2) * d + 12 * block + 2 * d + (2 * d + d * 527 + 527)
  # AST's torch model also keeps timm's unused `v.head` and `v.head_dist` (768 -> 1000 each): the 88.1 M it
  # reports. They never touch the output, so they are not part of this model (or of the converted tree).
  assert ast + 2 * (d * 1000 + 1000) == 88_132_063
  assert _count(variables["params"]) == ast == 86_594_063


def test_cnn14_flops_from_xla_cost_analysis():
  model = make_model(cnn14_config(527))
  wave = jax.ShapeDtypeStruct((1, 320000), jnp.float32)  # 10 s at 32 kHz -> 1001 frames
  variables = jax.eval_shape(model.init, jax.random.key(0), wave)
  fwd = jax.jit(lambda v, w: model.apply(v, w)[0])
  flops = fwd.lower(variables, wave).compile().cost_analysis()["flops"]

  # PANNs' 42.2 G counts every conv with the full 3x3 kernel (2 FLOPs per multiply-add, zero padding
  # included) plus its STFT as a 1024-tap conv to 2 x 513 channels and the mel matmul.
  sizes, chans = (
    [(1001, 64), (500, 32), (250, 16), (125, 8), (62, 4), (31, 2)],
    [1, 64, 128, 256, 512, 1024, 2048],
  )
  pairs = [((h, w), cin, cout) for (h, w), cin, cout in zip(sizes, chans[:-1], chans[1:], strict=True)]
  full = sum(2 * h * w * 9 * (cin * cout + cout * cout) for (h, w), cin, cout in pairs)
  panns = full + 2 * 1001 * (1024 * 1026 + 513 * 64)
  assert abs(panns / 42.2e9 - 1) < 0.005

  # XLA does not count taps that fall in the zero padding: per axis n * 3 - 2 valid taps for n outputs. On
  # the small late feature maps (31 x 2) that is a large share, so XLA reports ~35.5 G, not 42.2 G.
  valid = sum(2 * (3 * h - 2) * (3 * w - 2) * (cin * cout + cout * cout) for (h, w), cin, cout in pairs)
  assert abs(flops / valid - 1) < 0.03, (flops, valid)
  assert 0.80 < flops / 42.2e9 < 0.88, flops
