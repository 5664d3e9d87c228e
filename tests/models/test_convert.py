"""Parity of converted PANNs/AST weights with PyTorch references written from the papers.

Each reference gets random weights and non-trivial BatchNorm statistics, is saved as the published files are
(`{"model": state_dict}` for PANNs, a `module.`-prefixed DataParallel dict for AST), converted, and run on the
same waveforms: the reference computes its own features (conv STFT + librosa melW; kaldi_native_fbank framing),
our model its front end, so the whole pipeline is compared. Heads are scaled so logits are O(1) and the
sigmoid is not saturated, and fc1 so embeddings are O(1): a tolerance of 1e-4 is then meaningful.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from snapshots import snapshot

torch = pytest.importorskip("torch")
pytest.importorskip("kaldi_native_fbank")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
import ast_torch  # noqa: E402
import panns_torch  # noqa: E402

from animaljax.models import pretrained, torch_weights  # noqa: E402
from animaljax.models.classifier import make_model  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
ATOL = 1e-4
PANNS_16K = dict(sample_rate=16000, window_size=512, hop_size=160, fmin=50.0, fmax=8000.0)


def _waves(batch: int, num_samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
  """Noise plus a tone per clip, float32 in [-1, 1]: energy in every frequency bin (no log floor)."""
  rng = np.random.default_rng(seed)
  t = np.arange(num_samples) / sample_rate
  tone = np.sin(2 * np.pi * rng.uniform(200, sample_rate / 5, (batch, 1)) * t)
  return (0.1 * rng.standard_normal((batch, num_samples)) + 0.3 * tone).astype(np.float32)


def _panns_reference(variant: str, seed: int = 0, **kw) -> torch.nn.Module:
  """A PANNs reference with random weights, realistic-then-perturbed BN statistics, and O(1) outputs."""
  torch.manual_seed(seed)
  model = panns_torch.VARIANTS[variant](**kw)
  sr = kw.get("sample_rate", 32000)
  bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  # Running statistics from a cumulative average over real-looking input keep activations in range ...
  for bn in bns:
    bn.momentum = None
    bn.reset_running_stats()
  model.train()
  with torch.no_grad():
    model(torch.from_numpy(_waves(4, sr, sr, seed=seed + 1)))
  model.eval()
  with torch.no_grad():
    for bn in bns:  # ... then every statistic and affine parameter is perturbed so none is trivial.
      c = bn.num_features
      bn.running_mean.add_(0.1 * torch.randn(c))
      bn.running_var.mul_(torch.exp(0.2 * torch.randn(c)))
      bn.weight.copy_(1 + 0.2 * torch.randn(c))
      bn.bias.copy_(0.1 * torch.randn(c))
    x = torch.from_numpy(_waves(2, sr, sr, seed=seed + 2))
    emb = model(x)["embedding"]
    model.fc1.weight.div_(emb.std())
    model.fc1.bias.div_(emb.std())
    logits = model(x)["logits"]
    model.fc_audioset.weight.div_(logits.std())
    model.fc_audioset.bias.copy_(0.1 * torch.randn_like(model.fc_audioset.bias))
  return model


def _assert_close(name: str, ours, theirs, atol: float = ATOL) -> None:
  ours, theirs = np.asarray(ours), np.asarray(theirs)
  assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
  err = float(np.abs(ours - theirs).max())
  assert err < atol, f"{name}: max abs error {err:.3g} >= {atol} (scale {np.abs(theirs).max():.3g})"


def _check_panns(ref: torch.nn.Module, config, variables, wave: np.ndarray) -> None:
  with torch.no_grad():
    want = ref(torch.from_numpy(wave))
  logits, out = jax.jit(make_model(config).apply)(variables, wave)
  # O(1) logits away from saturation, else probs would match trivially.
  assert 0.2 < float(want["logits"].std()) < 5.0 and float(want["clipwise_output"].max()) < 0.999
  _assert_close("logits", logits, want["logits"])
  _assert_close("probs", jax.nn.sigmoid(logits), want["clipwise_output"])
  _assert_close("embedding", out["embedding"], want["embedding"])


def _save_panns(ref, path: pathlib.Path, **extra) -> pathlib.Path:
  torch.save({"model": ref.state_dict(), "iteration": 1000, **extra}, path)
  return path


@pytest.fixture(scope="module")
def cnn6_checkpoint(tmp_path_factory) -> tuple[torch.nn.Module, pathlib.Path]:
  ref = _panns_reference("cnn6")
  return ref, _save_panns(ref, tmp_path_factory.mktemp("cnn6") / "Cnn6.pth")


# ----------------------------------------------------------------------------------------------------------------
# PANNs parity
# ----------------------------------------------------------------------------------------------------------------
def _panns_parity(tmp_path, variant, kw, seconds):
  ref = _panns_reference(variant, **kw)
  # PANNs' published files also pickle the sampler's numpy state; the weights-only load must still work.
  path = _save_panns(ref, tmp_path / "ckpt.pth", sampler={"queue": np.arange(5), "pointer": np.int64(3)})
  config, variables, detected = torch_weights.convert_checkpoint(path)
  sr = kw.get("sample_rate", 32000)
  assert detected["variant"] == variant and detected["sample_rate"] == sr and detected["num_classes"] == 527
  assert detected["width"] == kw.get("width", 1.0) and config.encoder.channels[0] == round(
    64 * detected["width"]
  )
  assert config.frontend.hop_length == sr // 100 and config.encoder.variant == variant
  assert set(variables) == {"params", "batch_stats"} and set(variables["params"]) == {"encoder", "head"}
  _check_panns(ref, config, variables, _waves(2, int(seconds * sr) + 123, sr, seed=7))


@pytest.mark.parametrize(
  "variant, kw",
  [("cnn6", {}), ("cnn6", PANNS_16K), ("cnn10", {}), ("cnn14", {"width": 0.25})],
  ids=["cnn6-32k", "cnn6-16k", "cnn10-32k", "cnn14-32k-quarter-width"],
)
def test_panns_parity(tmp_path, variant, kw):
  """Published topologies at full width (CNN14 at 1/4 width: same keys and code path, 16x fewer FLOPs)."""
  _panns_parity(tmp_path, variant, kw, seconds=1.0)


@pytest.mark.slow
def test_panns_parity_full_cnn14(tmp_path):
  """The published CNN14 (80 M params, 330 MB checkpoint) on 2 s clips: ~40 s here on a loaded 2-core CPU."""
  _panns_parity(tmp_path, "cnn14", {}, seconds=2.0)


def test_load_panns_tagger_from_pth_and_directory(cnn6_checkpoint, tmp_path):
  ref, path = cnn6_checkpoint
  wave = _waves(3, 40000, 32000, seed=3)
  with torch.no_grad():
    want = ref(torch.from_numpy(wave))
  config, variables, detected = torch_weights.convert_checkpoint(path)
  out_dir = pretrained.save_converted(tmp_path / "conv", config, variables, detected=detected)
  for source in (path, out_dir):
    got = pretrained.load_panns(source)(wave)
    assert set(got) == {"probs", "logits", "embedding"}
    _assert_close("probs", got["probs"], want["clipwise_output"])
    _assert_close("logits", got["logits"], want["logits"])
    _assert_close("embedding", got["embedding"], want["embedding"])


# ----------------------------------------------------------------------------------------------------------------
# AST parity (tiny dims, 2 blocks, short input; the patching and key layout are the published ones)
# ----------------------------------------------------------------------------------------------------------------
AST_FRAMES = 200
AST_DIMS = dict(embed_dim=192, heads=3, depth=2)  # DeiT-tiny width, 2 blocks


def _ast_reference(frames: int = AST_FRAMES, seed: int = 0, dims: dict = AST_DIMS) -> ast_torch.ASTModel:
  torch.manual_seed(seed)
  model = ast_torch.ASTModel(input_tdim=frames, **dims).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.ndim == 1 and ("norm" in name or "mlp_head.0" in name):  # LayerNorms: around (1, 0), not exactly
        p.copy_(float(name.endswith("weight")) + 0.1 * torch.randn_like(p))
      else:
        p.copy_(0.02 * torch.randn_like(p))
    fbank = torch.from_numpy(_ast_fbanks(_waves(2, _ast_samples(frames), 16000, seed=seed + 1), frames))
    model.mlp_head[1].weight.div_(model(fbank).std())
  return model


def _ast_samples(frames: int) -> int:
  return 400 + (frames - 1) * 160  # Kaldi snip_edges framing at 16 kHz


def _ast_fbanks(wave: np.ndarray, frames: int | None) -> np.ndarray:
  return np.stack([ast_torch.ast_fbank(w, frames) for w in wave])


def _check_ast(ref, logits, out, fbank: np.ndarray) -> None:
  with torch.no_grad():
    want_logits = ref(torch.from_numpy(fbank))
    want_emb = ref.embed(torch.from_numpy(fbank))
  assert 0.3 < float(want_logits.std()) < 3.0
  _assert_close("logits", logits, want_logits)
  _assert_close("probs", jax.nn.sigmoid(logits), torch.sigmoid(want_logits))
  _assert_close("embedding", out["embedding"], want_emb)


@pytest.fixture(scope="module")
def ast_checkpoint(tmp_path_factory) -> tuple[ast_torch.ASTModel, pathlib.Path]:
  ref = _ast_reference()
  state = ref.state_dict_with_prefix()
  # The public file also carries DeiT's unused heads: accepted and ignored.
  state["module.v.head.weight"] = torch.zeros(1000, 192)
  state["module.v.head_dist.bias"] = torch.zeros(1000)
  path = tmp_path_factory.mktemp("ast") / "ast.pth"
  torch.save(state, path)
  return ref, path


def test_ast_parity(ast_checkpoint):
  ref, path = ast_checkpoint
  config, variables, detected = torch_weights.convert_checkpoint(path)
  assert detected["size"] == "tiny" and detected["depth"] == 2 and detected["checkpoint_grid"] == [12, 19]
  assert config.encoder.num_layers == 2 and config.encoder.grid == (12, 19) and "batch_stats" not in variables
  wave = _waves(2, _ast_samples(AST_FRAMES), 16000, seed=5)
  logits, out = jax.jit(make_model(config).apply)(variables, wave)
  fbank = _ast_fbanks(wave, AST_FRAMES)
  # Features: kaldi_native_fbank (float32 C++) vs our jnp front end, in normalised units.
  _assert_close("features", out["features"], fbank, atol=2e-4)
  _check_ast(ref, logits, out, fbank)


@pytest.mark.slow
def test_ast_parity_audioset_topology(tmp_path):
  """AST-base as released (12 blocks, 768 dims, 1024 frames = 12 x 101 patches) through `load_ast`."""
  ref = _ast_reference(frames=1024, dims=dict(embed_dim=768, heads=12, depth=12))
  torch.save(ref.state_dict_with_prefix(), tmp_path / "ast_base.pth")
  wave = _waves(1, 16000 * 10, 16000, seed=13)  # 10 s = 998 frames, padded to 1024 as AST does
  got = pretrained.load_ast(tmp_path / "ast_base.pth", input_frames=1024)(wave)
  assert got["embedding"].shape == (1, 768)
  _check_ast(ref, got["logits"], got, _ast_fbanks(wave, 1024))


@pytest.mark.parametrize("frames", [100, 300], ids=["cut-centre", "bilinear-grow"])
def test_ast_pos_embed_resize(ast_checkpoint, frames, tmp_path):
  """Converting for another input length equals AST's own pos_embed adaptation (written here in torch)."""
  ref, path = ast_checkpoint
  config, variables, detected = torch_weights.convert_checkpoint(path, input_frames=frames)
  t_dim = (frames - 16) // 10 + 1
  assert detected["grid"] == [12, t_dim] and variables["params"]["encoder"]["pos_embed"].shape == (
    1,
    2 + 12 * t_dim,
    192,
  )
  resized = ast_torch.ASTModel(input_tdim=frames, **AST_DIMS).eval()
  state = ref.state_dict()
  state["v.pos_embed"] = ast_torch.resize_pos_embed_torch(state["v.pos_embed"], (12, 19), (12, t_dim))
  resized.load_state_dict(state)
  wave = _waves(2, _ast_samples(frames), 16000, seed=9)
  logits, out = jax.jit(make_model(config).apply)(variables, wave)
  _check_ast(resized, logits, out, _ast_fbanks(wave, frames))

  # A directory converted at the checkpoint's grid, re-laid out at load time, gives the same embedding.
  plain, plain_vars, _ = torch_weights.convert_checkpoint(path)
  out_dir = pretrained.save_converted(tmp_path / "conv", plain, plain_vars)
  config2, variables2 = pretrained.load_pretrained(out_dir, input_frames=frames)
  assert config2 == config
  np.testing.assert_array_equal(
    variables2["params"]["encoder"]["pos_embed"], variables["params"]["encoder"]["pos_embed"]
  )


def test_load_ast_pads_like_ast(ast_checkpoint):
  """`load_ast` pads a short clip's raw fbank with zeros before normalising, as AST's data loader."""
  ref, path = ast_checkpoint
  wave = _waves(2, _ast_samples(150), 16000, seed=11)
  got = pretrained.load_ast(path, input_frames=AST_FRAMES)(wave)
  fbank = _ast_fbanks(wave, AST_FRAMES)
  assert np.allclose(fbank[:, 150:], (0 - ast_torch.AST_MEAN) / (2 * ast_torch.AST_STD))
  _check_ast(ref, got["logits"], got, fbank)
  _assert_close("probs", got["probs"], jax.nn.sigmoid(got["logits"]), atol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Directory round trip, head handling and the CLI
# ----------------------------------------------------------------------------------------------------------------
def test_cli_end_to_end_and_load_converted(cnn6_checkpoint, tmp_path):
  ref, path = cnn6_checkpoint
  out = tmp_path / "converted"
  cmd = [sys.executable, "-m", "animaljax.convert", "panns", "--checkpoint", str(path), "--out", str(out)]
  proc = subprocess.run(cmd + ["--variant", "cnn6"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert '"variant": "cnn6"' in proc.stdout and '"sample_rate": 32000' in proc.stdout
  meta = pretrained.read_metadata(out)
  assert meta["labels"][:2] == ["class_0", "class_1"] and len(meta["labels"]) == 527 and meta["has_head"]
  config, variables = pretrained.load_converted(out)
  assert config.encoder.variant == "cnn6" and config.num_classes == 527
  _check_panns(ref, config, variables, _waves(2, 32000, 32000, seed=4))

  _, headless = pretrained.load_converted(out, keep_head=False)
  assert set(headless["params"]) == {"encoder"} and "encoder" in headless["batch_stats"]
  np.testing.assert_array_equal(
    headless["params"]["encoder"]["fc1"]["kernel"], ref.fc1.weight.detach().numpy().T
  )


def test_cli_drop_head_and_errors(cnn6_checkpoint, tmp_path, capsys):
  from animaljax import convert

  _, path = cnn6_checkpoint
  out = tmp_path / "headless"
  assert convert.main(["panns", "--checkpoint", str(path), "--out", str(out), "--no-keep-head"]) == 0
  assert not pretrained.read_metadata(out)["has_head"]
  with pytest.raises(ValueError, match="without its head"):
    pretrained.load_converted(out)
  config, variables = pretrained.load_converted(out, keep_head=False)
  assert set(variables["params"]) == {"encoder"}
  # Wrong family / variant / sample rate are errors (exit code 2, a message on stderr).
  capsys.readouterr()
  assert convert.main(["ast", "--checkpoint", str(path), "--out", str(tmp_path / "x")]) == 2
  assert "the file is panns" in capsys.readouterr().err
  assert (
    convert.main(["panns", "--checkpoint", str(path), "--out", str(tmp_path / "y"), "--variant", "cnn14"])
    == 2
  )
  assert (
    convert.main(["panns", "--checkpoint", str(path), "--out", str(tmp_path / "z"), "--sample-rate", "16000"])
    == 2
  )
  assert "matches no PANNs front end" in capsys.readouterr().err
  with pytest.raises(FileExistsError):
    pretrained.save_converted(out, config, variables)


# ----------------------------------------------------------------------------------------------------------------
# Bad checkpoints: one exception type, every problem listed
# ----------------------------------------------------------------------------------------------------------------
def test_mismatched_state_dict_lists_every_problem(cnn6_checkpoint, tmp_path):
  ref, _ = cnn6_checkpoint
  state = dict(ref.state_dict())
  del state["conv_block2.bn1.running_var"]
  del state["fc1.bias"]
  state["conv_block9.conv1.weight"] = torch.zeros(3, 3)
  state["conv_block3.conv1.weight"] = torch.zeros(256, 128, 3, 3)  # CNN6 blocks are 5x5
  path = _save_panns(ref, tmp_path / "bad.pth")
  torch.save({"model": state}, path)
  with pytest.raises(torch_weights.CheckpointError) as err:
    torch_weights.convert_checkpoint(path)
  msg = str(err.value)
  assert "4 problem(s)" in msg
  for needle in (
    "missing key 'conv_block2.bn1.running_var'",
    "missing key 'fc1.bias'",
    "unexpected key 'conv_block9.conv1.weight'",
    "wrong shape for 'conv_block3.conv1.weight'",
  ):
    assert needle in msg


def test_mismatched_ast_and_wrong_front_end(ast_checkpoint, cnn6_checkpoint, tmp_path):
  ref, _ = ast_checkpoint
  state = ref.state_dict_with_prefix()
  del state["module.v.blocks.1.mlp.fc2.weight"]
  state["module.v.blocks.0.attn.qkv.bias"] = torch.zeros(5)
  torch.save(state, tmp_path / "ast_bad.pth")
  with pytest.raises(torch_weights.CheckpointError, match=r"2 problem") as err:
    torch_weights.convert_checkpoint(tmp_path / "ast_bad.pth")
  assert "missing key 'v.blocks.1.mlp.fc2.weight'" in str(err.value)
  assert "wrong shape for 'v.blocks.0.attn.qkv.bias': (5,)" in str(err.value)

  panns, _ = cnn6_checkpoint
  state = dict(panns.state_dict())
  state["logmel_extractor.melW"] = state["logmel_extractor.melW"] * 1.1  # not librosa's 50-14000 Hz matrix
  torch.save({"model": state}, tmp_path / "melw.pth")
  with pytest.raises(torch_weights.CheckpointError, match="melW .* matches no PANNs front end"):
    torch_weights.convert_checkpoint(tmp_path / "melw.pth")


@pytest.mark.parametrize("content", ["text", "tensor", "empty_dict", "missing"])
def test_not_a_checkpoint(tmp_path, content):
  path = tmp_path / "file.pth"
  if content == "text":
    path.write_text("this is not a checkpoint\n")
  elif content == "tensor":
    torch.save(torch.zeros(3), path)
  elif content == "empty_dict":
    torch.save({"model": {}, "iteration": 3}, path)
  with pytest.raises(torch_weights.CheckpointError, match=str(path).replace(".", r"\.")):
    torch_weights.convert_checkpoint(path)


def test_unknown_layout_is_rejected(tmp_path):
  torch.save({"encoder.layer.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
  with pytest.raises(torch_weights.CheckpointError, match="neither a PANNs"):
    torch_weights.convert_checkpoint(tmp_path / "other.pth")


# ----------------------------------------------------------------------------------------------------------------
# Nothing lost (issue 13): --force replaces a converted model dir, never another folder
# ----------------------------------------------------------------------------------------------------------------
def test_force_replaces_only_a_converted_model_dir(cnn6_checkpoint, esc50_root, tmp_path, capsys):
  import shutil

  from animaljax import convert

  _, path = cnn6_checkpoint
  clips = sorted((esc50_root / "audio").glob("*.flac"))[:3]
  # A folder of the user's that holds a model.json and a variables/ folder of its own, and one like a bundle.
  mine = tmp_path / "mine"
  (mine / "variables").mkdir(parents=True)
  shutil.copy(clips[0], mine / "variables")
  shutil.copy(clips[1], mine)
  (mine / "model.json").write_text('{"name": "my notes"}\n')
  bundle_like = tmp_path / "bundle"
  bundle_like.mkdir()
  (bundle_like / "manifest.json").write_text('{"format": "animaljax-bundle"}\n')
  (bundle_like / "model.json").write_text('{"frontend": {}}\n')
  (bundle_like / "params.safetensors").write_bytes(b"\0" * 64)
  (tmp_path / "a_file").write_bytes(clips[2].read_bytes())
  before = snapshot(tmp_path)
  for out in (mine, bundle_like, tmp_path / "a_file"):
    for force in ([], ["--force"]):
      assert convert.main(["panns", "--checkpoint", str(path), "--out", str(out), *force]) == 2
      err = capsys.readouterr().err.strip()
      assert err.startswith("error:") and "\n" not in err and str(out) in err, err
  assert snapshot(tmp_path) == before  # every byte of every file, nothing added

  # A converted model dir: --force replaces model.json and variables/, and keeps what is beside them.
  out = tmp_path / "converted"
  assert convert.main(["panns", "--checkpoint", str(path), "--out", str(out)]) == 0
  (out / "species").mkdir()
  (out / "species" / "species.json").write_text('{"format": 1}\n')
  kept = snapshot(out / "species")
  assert convert.main(["panns", "--checkpoint", str(path), "--out", str(out)]) == 2
  assert "--force" in capsys.readouterr().err
  assert (
    convert.main(["panns", "--checkpoint", str(path), "--out", str(out), "--force", "--no-keep-head"]) == 0
  )
  assert not pretrained.read_metadata(out)["has_head"]
  assert set(pretrained.load_converted(out, keep_head=False)[1]["params"]) == {"encoder"}
  assert snapshot(out / "species") == kept and sorted(p.name for p in out.iterdir()) == [
    "model.json", "species", "variables"
  ]  # fmt: skip
  assert snapshot(tmp_path / "mine") == {k[5:]: v for k, v in before.items() if k.startswith("mine/")}
  assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
