"""Published PANNs (CNN6/10/14) and AST PyTorch checkpoints -> this package's Flax variables.

`convert_checkpoint(path) -> (ClassifierConfig, variables, detected)` reads a `.pth` with
`torch.load(weights_only=True)` (torch is an optional extra, imported lazily), infers the model from the state
dict, checks every key and shape against the Flax param tree of the inferred config, and returns
`{"params": {"encoder", "head"}, "batch_stats": {"encoder"}}` (no batch_stats for AST).

What is inferred, and how:
  PANNs: variant from the blocks present (conv_block6 -> cnn14; conv_block1.conv2 -> cnn10; else cnn6), width
    from conv_block1's channels, classes from `fc_audioset`, n_fft from the STFT kernels, n_mels from `melW`;
    the sample rate/fmin/fmax by comparing `melW` with librosa's matrix for each PANNs front end of that n_fft,
    and the STFT kernels with a periodic-Hann DFT. The hop cannot be read from a checkpoint: PANNs always uses
    10 ms (sample_rate // 100), as our presets do.
  AST: embed dim from `cls_token` (192/384/768 -> tiny/small/base), depth from the blocks, patch size from the
    patch conv, classes from `mlp_head.1`; the grid from `pos_embed` with AST's 128 bins and (10, 10) strides
    (not stored in the file; every public AST checkpoint uses them).

Layout changes: conv OIHW -> HWIO (PANNs: H = time, W = mel; AST: H = freq, W = time, both as the torch input
is laid out), Linear (out, in) -> Dense (in, out), BatchNorm weight/bias/running_mean/running_var ->
scale/bias (params) and mean/var (batch_stats), LayerNorm weight -> scale.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio import frontend
from animaljax.models import panns_layout
from animaljax.models.ast import SIZES, AstConfig, patch_grid, resize_pos_embed
from animaljax.models.classifier import ClassifierConfig, make_model
from animaljax.models.panns_family import ARCHITECTURES, encoder_from_state, is_panns_family

_MAX_LISTED = 20  # problems listed in one error message


class CheckpointError(ValueError):
  """The file is not a PANNs/AST checkpoint this converter understands; the message lists every problem."""


def _fail(what: str, problems: list[str]) -> CheckpointError:
  shown = "\n  ".join(problems[:_MAX_LISTED])
  more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
  return CheckpointError(f"{what}: {len(problems)} problem(s):\n  {shown}{more}")


# ----------------------------------------------------------------------------------------------------------------
# Reading the file
# ----------------------------------------------------------------------------------------------------------------
def _numpy_global(name: str) -> Any | None:
  """numpy's array/scalar/dtype reconstructors, which PANNs' checkpoints hold in their sampler state."""
  core = np._core.multiarray  # where numpy 2 keeps the pickled reconstructors
  table = {
    "numpy.core.multiarray._reconstruct": core._reconstruct,
    "numpy._core.multiarray._reconstruct": core._reconstruct,
    "numpy.core.multiarray.scalar": core.scalar,
    "numpy._core.multiarray.scalar": core.scalar,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
  }
  if name in table:
    return table[name]
  if name.startswith("numpy.dtypes."):
    return getattr(np.dtypes, name.rsplit(".", 1)[1], None)
  return None


def _torch_load(path: str):
  try:
    import torch
  except ImportError as e:  # torch is the optional "torch" extra
    raise ImportError("reading PyTorch checkpoints needs torch: pip install 'animaljax[torch]'") from e
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as first:  # any failure to parse is a bad checkpoint, reported below
    # PANNs files also pickle the sampler state (numpy arrays), which the weights-only unpickler refuses.
    # Allow numpy's array reconstructors by name, and nothing else; still weights_only=True.
    try:
      unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a torch zip file at all
      unsafe = None
    allowed = {name: _numpy_global(name) for name in unsafe or ()}
    if unsafe and all(obj is not None for obj in allowed.values()):
      # numpy 2 rebuilds dtypes through their classes (numpy.dtypes.Int64DType, ...), which the scan above
      # does not list: allow those plain dtype classes too.
      dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
      with torch.serialization.safe_globals([(obj, name) for name, obj in allowed.items()] + dtypes):
        try:
          return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
          raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    extra = f"; it needs globals {unsafe} that a weights-only load refuses" if unsafe else ""
    raise CheckpointError(
      f"{path}: not a readable PyTorch checkpoint ({type(first).__name__}: {first}){extra}"
    ) from first


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A `.pth` file -> flat `{key: float32 numpy array}`.

  Accepts `{"model": state_dict, ...}` (PANNs), `{"state_dict": ...}`, or a bare state dict; drops a leading
  `module.` (DataParallel, as AST's file) and non-tensor entries (e.g. `num_batches_tracked` stays, it is a
  tensor; iteration counters and sampler state do not). Raises CheckpointError for anything else.
  """
  import torch

  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such checkpoint file")
  obj = _torch_load(path)
  if isinstance(obj, dict):
    for key in ("model", "state_dict"):
      if isinstance(obj.get(key), dict):
        obj = obj[key]
        break
  if not isinstance(obj, dict):
    raise CheckpointError(
      f"{path}: expected a state dict or {{'model': state_dict}}, got {type(obj).__name__}"
    )
  tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
  if not tensors:
    raise CheckpointError(f"{path}: the file holds no tensors (keys: {list(obj)[:10]})")
  if all(k.startswith("module.") for k in tensors):
    tensors = {k[len("module.") :]: v for k, v in tensors.items()}
  return {
    k: v.detach().cpu().float().numpy() if v.is_floating_point() else v.cpu().numpy()
    for k, v in tensors.items()
  }


def detect_kind(state: dict[str, np.ndarray]) -> str:
  """ "panns" or "ast" from the key layout."""
  if "conv_block1.conv1.weight" in state or is_panns_family(state):
    return "panns"
  if "v.patch_embed.proj.weight" in state:
    return "ast"
  raise CheckpointError(
    f"neither a PANNs (conv_block1.conv1.weight) nor an AST (v.patch_embed.proj.weight) state dict; known PANNs "
    f"architectures (marking key): {ARCHITECTURES}; first keys: {sorted(state)[:10]}"
  )


# ----------------------------------------------------------------------------------------------------------------
# Key mapping (flax path -> torch key) and the strict copy
# ----------------------------------------------------------------------------------------------------------------
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


_AST_HEAD = {"norm": 0, "dense": 1}  # AST's mlp_head = Sequential(LayerNorm, Linear)


def _panns_key(path: tuple[str, ...]) -> str:
  if att := panns_layout.flax_key(path):  # Cnn14_DecisionLevelAtt's att_block
    return att
  if path[0] == "head":
    return f"fc_audioset.{_LEAF[path[-1]]}"
  return ".".join(path[1:-1] + (_LEAF[path[-1]],))  # drop "encoder"


def _ast_key(path: tuple[str, ...]) -> str:
  leaf = path[-1]
  if path[0] == "head":
    return f"mlp_head.{_AST_HEAD[path[1]]}.{_LEAF[leaf]}"
  inner = path[1:]
  if len(inner) == 1:  # cls_token, dist_token, pos_embed
    return f"v.{inner[0]}"
  if inner[0] == "patch_embed":
    return f"v.patch_embed.proj.{_LEAF[leaf]}"
  parts = [re.sub(r"^block(\d+)$", r"blocks.\1", p) for p in inner[:-1]]
  return "v." + ".".join(parts + [_LEAF[leaf]])


def _to_flax(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel" and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if leaf == "kernel" and value.ndim == 3:
    return value.transpose(2, 1, 0)  # Conv1d (out, in, k) -> (k, in, out): the wavegram's
  if leaf == "kernel" and value.ndim == 2:
    return value.T  # Linear (out, in) -> Dense (in, out)
  return value


def _abstract_variables(config: ClassifierConfig, num_samples: int) -> dict:
  model = make_model(config)
  wave = jax.ShapeDtypeStruct((1, num_samples), jnp.float32)
  return jax.eval_shape(lambda w: model.init(jax.random.key(0), w), wave)


def _copy(
  state: dict[str, np.ndarray],
  abstract: dict,
  key_fn,
  *,
  keep_head: bool,
  ignored: set[str],
  overrides: dict[str, np.ndarray] | None = None,
  what: str,
) -> dict:
  """Fill the abstract variable tree from `state`; every missing/unused key and wrong shape is an error."""
  overrides = overrides or {}
  problems, used, out = [], set(), {}
  for collection, tree in abstract.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      names = tuple(p.key for p in path)
      key = key_fn(names)
      if names[0] == "head" and not keep_head:
        used.add(key)
        continue
      if key not in state:
        problems.append(f"missing key {key!r} (for {collection}/{'/'.join(names)} {tuple(leaf.shape)})")
        continue
      used.add(key)
      value = overrides.get(key, _to_flax(state[key], names[-1]))
      if tuple(value.shape) != tuple(leaf.shape):
        problems.append(
          f"wrong shape for {key!r}: {tuple(state[key].shape)} -> {tuple(value.shape)}, expected {tuple(leaf.shape)}"
        )
        continue
      node = out.setdefault(collection, {})
      for n in names[:-1]:
        node = node.setdefault(n, {})
      node[names[-1]] = np.asarray(value, np.float32)
  extra = sorted(
    k for k in state if k not in used and k not in ignored and not k.endswith("num_batches_tracked")
  )
  problems += [f"unexpected key {k!r} {tuple(state[k].shape)}" for k in extra]
  if problems:
    raise _fail(what, problems)
  return out


# ----------------------------------------------------------------------------------------------------------------
# PANNs
# ----------------------------------------------------------------------------------------------------------------
# The PANNs front ends per STFT size (the published 32 kHz, 16 kHz and 8 kHz CNN14s).
_PANNS_FRONTENDS = {
  1024: frontend.LogMelConfig.panns_32k(),
  512: frontend.LogMelConfig.panns_16k(),
  256: frontend.LogMelConfig(sample_rate=8000, n_fft=256, hop_length=80, fmin=50.0, fmax=4000.0),
}


def _hann_dft(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
  n, k = np.arange(n_fft), np.arange(n_fft // 2 + 1)
  window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
  phase = 2 * np.pi * ((np.outer(k, n)) % n_fft) / n_fft
  return np.cos(phase) * window, -np.sin(phase) * window


def _panns_frontend(
  state: dict[str, np.ndarray], sample_rate: int | None
) -> tuple[frontend.LogMelConfig, dict]:
  import librosa

  problems = []
  real = state.get("spectrogram_extractor.stft.conv_real.weight")
  imag = state.get("spectrogram_extractor.stft.conv_imag.weight")
  mel_w = state.get("logmel_extractor.melW")
  if real is None or imag is None or mel_w is None:
    raise CheckpointError("PANNs checkpoint lacks the STFT kernels or logmel_extractor.melW")
  n_fft = real.shape[-1]
  if real.shape != (n_fft // 2 + 1, 1, n_fft) or imag.shape != real.shape:
    problems.append(f"STFT kernels have shape {real.shape}/{imag.shape}, expected (n_fft//2+1, 1, n_fft)")
  else:
    cos, sin = _hann_dft(n_fft)
    if not (
      np.allclose(real[:, 0], cos, atol=1e-4) and np.allclose(np.abs(imag[:, 0]), np.abs(sin), atol=1e-4)
    ):
      problems.append(f"STFT kernels are not a periodic-Hann DFT of size {n_fft}")
  candidates = [c for c in _PANNS_FRONTENDS.values() if c.n_fft == n_fft]
  if sample_rate is not None:
    candidates = [c for c in candidates if c.sample_rate == sample_rate]
  found = None
  for cand in candidates:
    cand = dataclasses.replace(cand, n_mels=mel_w.shape[1])
    ref = librosa.filters.mel(
      sr=cand.sample_rate, n_fft=n_fft, n_mels=cand.n_mels, fmin=cand.fmin, fmax=cand.fmax
    ).T
    if ref.shape == mel_w.shape and np.allclose(ref, mel_w, atol=1e-5, rtol=1e-4):
      found = cand
      break
  if found is None:
    tried = [f"{c.sample_rate} Hz n_fft {c.n_fft} {c.fmin:g}-{c.fmax:g} Hz" for c in candidates] or ["none"]
    problems.append(f"melW {mel_w.shape} matches no PANNs front end; tried: {', '.join(tried)}")
  if problems:
    raise _fail("PANNs front end", problems)
  detected = dict(
    sample_rate=found.sample_rate, n_fft=n_fft, hop_length=found.hop_length, n_mels=found.n_mels
  )
  return found, {**detected, "fmin": found.fmin, "fmax": found.fmax}


def panns_to_flax(
  state: dict[str, np.ndarray],
  *,
  keep_head: bool = True,
  sample_rate: int | None = None,
  head: str | None = None,
) -> tuple[ClassifierConfig, dict, dict]:
  """PANNs state dict -> (ClassifierConfig, variables, detected settings); `head`: the decision-level head
  when known from elsewhere (Cnn14_DecisionLevelMax has Cnn14's keys; `panns_layout`)."""
  encoder = encoder_from_state(state)  # PANNs ResNet22/38/54 and MobileNetV1/V2; None for the CNNs
  if encoder is not None:
    variant = encoder.variant
  elif "conv_block6.conv1.weight" in state:
    variant = "cnn14"
  elif "conv_block1.conv2.weight" in state:
    variant = "cnn10"
  else:
    variant = "cnn6"
  if encoder is None and "conv_block1.conv1.weight" not in state:
    raise CheckpointError("not a PANNs state dict: conv_block1.conv1.weight is missing")
  width = encoder.width if encoder is not None else state["conv_block1.conv1.weight"].shape[0] / 64
  layout = panns_layout.detect(state, head) if encoder is None else {"encoder": "cnn", "head": "clip"}
  if "pre_conv0.weight" in state:
    width = state["pre_block4.conv1.weight"].shape[0] / 64
  num_classes = panns_layout.num_classes(state)
  if num_classes is None and keep_head:
    raise CheckpointError("PANNs checkpoint has no fc_audioset.weight; convert with keep_head=False")
  num_classes = num_classes or 1
  if layout["encoder"] == "wavegram" and "logmel_extractor.melW" not in state:  # Wavegram-CNN14: no STFT
    if sample_rate not in (None, 32000):
      raise CheckpointError("Wavegram-CNN14 checkpoints hold no front end; the published one is 32 kHz")
    fe = frontend.LogMelConfig.panns_32k()
    detected = {"sample_rate": fe.sample_rate, "n_fft": fe.n_fft, "hop_length": fe.hop_length, "n_mels": 64}
  else:
    fe, detected = _panns_frontend(state, sample_rate)
  detected |= layout if encoder is None else {}
  config = ClassifierConfig(fe, encoder or panns_layout.encoder_config(layout, variant, width), num_classes)
  abstract = _abstract_variables(config, fe.sample_rate)  # 1 s: enough frames for every pooling stage
  ignored = {"spectrogram_extractor.stft.conv_real.weight", "spectrogram_extractor.stft.conv_imag.weight"}
  ignored.add("logmel_extractor.melW")
  ignored |= panns_layout.ignored_keys(state, layout)
  variables = _copy(
    state, abstract, _panns_key, keep_head=keep_head, ignored=ignored, what=f"PANNs {variant}",
    overrides=panns_layout.overrides(state),
  )  # fmt: skip
  detected = {"kind": "panns", "variant": variant, "width": width, "num_classes": num_classes, **detected}
  return config, variables, detected


# ----------------------------------------------------------------------------------------------------------------
# AST
# ----------------------------------------------------------------------------------------------------------------
def ast_to_flax(
  state: dict[str, np.ndarray], *, keep_head: bool = True, input_frames: int | None = None
) -> tuple[ClassifierConfig, dict, dict]:
  """AST state dict -> (ClassifierConfig, variables, detected settings).

  `input_frames` lays the positional embedding out for that many fbank frames (AST's rule: centre cut when
  shrinking, bilinear when growing); None keeps the checkpoint's grid (1024 frames for the AudioSet model).
  """
  fe = frontend.FbankConfig.ast()
  problems = [
    f"missing key {k!r}"
    for k in ("v.cls_token", "v.pos_embed", "v.patch_embed.proj.weight")
    if k not in state
  ]
  if problems:
    raise _fail("AST", problems)
  dim = state["v.cls_token"].shape[-1]
  sizes = {d: name for name, (d, _, _) in SIZES.items()}
  if dim not in sizes:
    raise CheckpointError(f"AST embed dim {dim} is none of {sorted(sizes)} (tiny/small/base)")
  depth = len({m.group(1) for k in state if (m := re.match(r"v\.blocks\.(\d+)\.", k))})
  patch = state["v.patch_embed.proj.weight"].shape[-1]
  base = AstConfig(size=sizes[dim], patch=patch, num_mel_bins=fe.num_mel_bins)
  f_dim = patch_grid(fe.num_mel_bins, patch, patch, base.fstride, base.tstride)[0]
  n_patches = state["v.pos_embed"].shape[1] - 2
  if n_patches <= 0 or n_patches % f_dim:
    raise CheckpointError(
      f"AST pos_embed has {n_patches} patch rows, not a multiple of {f_dim} frequency patches"
    )
  t_dim = n_patches // f_dim
  ckpt_frames = (t_dim - 1) * base.tstride + patch
  head = state.get("mlp_head.1.weight")
  if head is None and keep_head:
    raise CheckpointError("AST checkpoint has no mlp_head.1.weight; convert with keep_head=False")
  num_classes = head.shape[0] if head is not None else 1
  frames = input_frames or ckpt_frames
  encoder = dataclasses.replace(
    base, input_frames=frames, depth=None if depth == SIZES[sizes[dim]][1] else depth
  )
  config = ClassifierConfig(fe, encoder, num_classes)
  overrides = {}
  if encoder.grid != (f_dim, t_dim):
    pos = np.asarray(resize_pos_embed(jnp.asarray(state["v.pos_embed"]), (f_dim, t_dim), encoder.grid))
    overrides["v.pos_embed"] = pos
  samples = (max(frames, patch) - 1) * fe.frame_shift + fe.frame_length
  abstract = _abstract_variables(config, samples)
  ignored = {
    k for k in state if k.startswith(("v.head.", "v.head_dist."))
  }  # DeiT's own heads; AST ignores them
  variables = _copy(
    state, abstract, _ast_key, keep_head=keep_head, ignored=ignored, overrides=overrides, what="AST"
  )
  detected = {
    "kind": "ast",
    "size": sizes[dim],
    "depth": depth,
    "num_classes": num_classes,
    "checkpoint_grid": [f_dim, t_dim],
    "checkpoint_frames": ckpt_frames,
    "input_frames": frames,
    "grid": list(encoder.grid),
  }
  return config, variables, detected


def convert_checkpoint(
  path: str | os.PathLike,
  kind: str | None = None,
  *,
  keep_head: bool = True,
  sample_rate: int | None = None,
  input_frames: int | None = None,
) -> tuple[ClassifierConfig, dict, dict]:
  """A PANNs or AST `.pth` -> (ClassifierConfig, variables, detected settings); `kind` None = detect."""
  state = load_state_dict(path)
  found = detect_kind(state)
  if kind is not None and kind != found:
    raise CheckpointError(f"{path}: asked for a {kind} checkpoint, the file is {found}")
  if found == "panns":
    if input_frames is not None:
      raise ValueError("input_frames applies to AST checkpoints only")
    head = panns_layout.head_from_name(path) if "att_block.att.weight" not in state else None
    return panns_to_flax(state, keep_head=keep_head, sample_rate=sample_rate, head=head)
  if sample_rate not in (None, 16000):
    raise ValueError("AST checkpoints are 16 kHz")
  return ast_to_flax(state, keep_head=keep_head, input_frames=input_frames)
