"""EfficientAT checkpoints (`mn*_as.pt`, `dymn*_as.pt`, ImageNet `*_im.pt`) -> this package's Flax variables.

`efficientat_to_flax(state)` recognises the family from the keys (`features.*` = mn, `in_c.*` / `layers.*` =
dymn) and the width from the last block's channels (`features.16.0.weight` / `out_c.0.weight` input channels,
`make_divisible(160 * width_mult, 8)`, distinct for every published width), then copies every tensor onto the
Flax tree by name, strictly: a missing, unexpected or misshapen key is an error listing them all. Conv kernels
OIHW -> HWIO, Linear (out, in) -> Dense (in, out), BatchNorm -> scale/bias + mean/var, a dynamic conv's kernel
bank as is. `classifier.5` is the classifier's `head`. Constants EfficientAT stores as buffers (the dynamic ReLU's
`lambdas` and `init_v`) are checked against the values the model computes with.

Not converted (refused with a message naming them): the fully convolutional head (`mn10_as_fc*`), squeeze-
excitation over frequency/time (`se_dims` other than "c"), the `*_replace_se` dynamic models. Variants trained
with another hop or mel count (`mn10_as_hop_*`, `mn10_as_mels_*`) hold the same keys: convert them with the
front end they were trained with (`frontend=`; the default is the published 10 ms, 128 bins).
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio.efficientat_frontend import EfficientAtMelConfig
from animaljax.models.classifier import ClassifierConfig, make_model
from animaljax.models.efficientat import DYNAMIC_WIDTHS, WIDTHS, EfficientAtConfig
from animaljax.models.imagenet_weights import read_state
from animaljax.models.torch_weights import CheckpointError

ARCHITECTURES = tuple(WIDTHS) + tuple(DYNAMIC_WIDTHS)
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_LEAF["weight"] = "weight"  # a dynamic conv's kernel bank
_DYRELU_BUFFERS = {"lambdas": np.array([1.0, 1.0, 0.5, 0.5]), "init_v": np.array([1.0, 0.0, 0.0, 0.0])}


def _last_channels(arch: str) -> int:
  return EfficientAtConfig(arch).blocks[-1][3]


def detect_arch(state: dict[str, np.ndarray]) -> str:
  """ "mn04" .. "mn40" or "dymn04" .. "dymn20"; CheckpointError naming the architectures otherwise."""
  known = f"known architectures: {', '.join(ARCHITECTURES)}"
  if "classifier.0.weight" in state and "classifier.1.running_mean" in state:
    raise CheckpointError(
      f"an EfficientAT fully convolutional head (mn*_as_fc) is not supported (mlp head only); {known}"
    )
  if "features.16.0.weight" in state:
    family, last = WIDTHS, state["features.16.0.weight"].shape[1]
  elif "out_c.0.weight" in state and "in_c.0.weight" in state:
    family, last = DYNAMIC_WIDTHS, state["out_c.0.weight"].shape[1]
  else:
    raise CheckpointError(
      f"not an EfficientAT mn/dymn state dict (no features.16.0.weight or in_c/out_c); {known}; first keys: "
      f"{sorted(state)[:8]}"
    )
  for arch in family:
    if _last_channels(arch) == last:
      return arch
  raise CheckpointError(f"EfficientAT model with {last} channels in its last block matches no width; {known}")


def _torch_key(names: tuple[str, ...]) -> str:
  if names[0] == "head":
    return f"classifier.5.{_LEAF[names[-1]]}"
  return ".".join(names[1:-1] + (_LEAF[names[-1]],))  # drop "encoder"


def _to_flax(value: np.ndarray, leaf: str) -> np.ndarray:
  if leaf == "kernel" and value.ndim == 4:
    return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if leaf == "kernel" and value.ndim == 2:
    return value.T  # Linear (out, in) -> Dense (in, out)
  return value


def efficientat_to_flax(
  state: dict[str, np.ndarray],
  *,
  arch: str | None = None,
  keep_head: bool = True,
  frontend: EfficientAtMelConfig | None = None,
) -> tuple[ClassifierConfig, dict, dict]:
  """An EfficientAT state dict -> (ClassifierConfig, variables, detected settings).

  Args:
    state: flat `{key: array}` (`imagenet_weights.read_state`: `.pt`/`.pth` or `.safetensors`).
    arch: refuse a checkpoint of another architecture (one of `ARCHITECTURES`); None = as detected.
    keep_head: keep `classifier.5` as the head (False: config with one class and no head).
    frontend: the front end the model was trained with (default: EfficientAT's 32 kHz, 10 ms, 128 bins).
  Returns:
    (config, `{"params": {"encoder"[, "head"]}, "batch_stats": {"encoder"}}`, `{"kind": "efficientat", "variant",
    "width_mult", "num_classes"}`).
  """
  if arch is not None and arch not in ARCHITECTURES:
    raise CheckpointError(
      f"unknown EfficientAT architecture {arch!r}; known architectures: {', '.join(ARCHITECTURES)}"
    )
  found = detect_arch(state)
  if arch is not None and arch != found:
    raise CheckpointError(f"asked for {arch}, the checkpoint is {found}")
  if "classifier.5.weight" not in state and keep_head:
    raise CheckpointError("EfficientAT checkpoint has no classifier.5.weight; convert with keep_head=False")
  num_classes = int(state["classifier.5.weight"].shape[0]) if keep_head else 1
  fe = frontend or EfficientAtMelConfig()
  config = ClassifierConfig(fe, EfficientAtConfig(found), num_classes)
  wave = jax.ShapeDtypeStruct((1, fe.sample_rate), jnp.float32)
  abstract = jax.eval_shape(lambda w: make_model(config).init(jax.random.key(0), w), wave)
  problems, used, out = [], set(), {}
  for collection, tree in abstract.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
      names = tuple(p.key for p in path)
      key = _torch_key(names)
      used.add(key)
      if names[0] == "head" and not keep_head:
        continue
      if key not in state:
        problems.append(f"missing key {key!r} (for {collection}/{'/'.join(names)} {tuple(leaf.shape)})")
        continue
      value = _to_flax(state[key], names[-1])
      if value.shape != tuple(leaf.shape):
        problems.append(
          f"wrong shape for {key!r}: {state[key].shape}, expected {tuple(leaf.shape)} (flax layout)"
        )
        continue
      node = out.setdefault(collection, {})
      for n in names[:-1]:
        node = node.setdefault(n, {})
      node[names[-1]] = np.asarray(value, np.float32)
  used |= {"classifier.5.weight", "classifier.5.bias"}  # dropped with keep_head=False
  for key in sorted(set(state) - used):
    buffer = key.rsplit(".", 1)[-1]
    if key.endswith("num_batches_tracked"):
      continue
    if buffer in _DYRELU_BUFFERS and key.endswith(f"depth_act.{buffer}"):
      if not np.allclose(state[key], _DYRELU_BUFFERS[buffer]):
        problems.append(f"{key} = {state[key].tolist()}, expected {_DYRELU_BUFFERS[buffer].tolist()}")
      continue
    problems.append(f"unexpected key {key!r} {tuple(state[key].shape)}")
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise CheckpointError(f"EfficientAT {found}: {len(problems)} problem(s):\n  {shown}{more}")
  width = EfficientAtConfig(found).width_mult
  detected = {"kind": "efficientat", "variant": found, "width_mult": width, "num_classes": num_classes}
  return config, out, detected


def convert_efficientat(
  checkpoint: str | os.PathLike,
  out: str | os.PathLike,
  *,
  arch: str | None = None,
  keep_head: bool = True,
  force: bool = False,
) -> tuple[pathlib.Path, dict]:
  """An EfficientAT `.pt`/`.safetensors` saved as a converted model dir (`model.init_from`,
  `python -m animaljax.convert efficientat`).

  Raises:
    FileExistsError: `out` may not be written (`pretrained.check_converted_out`). CheckpointError: the file is
    not a supported EfficientAT model, or not `arch`. ImportError: a torch file without torch installed.
  """
  from animaljax.models import pretrained

  pretrained.check_converted_out(out, force=force)
  config, variables, detected = efficientat_to_flax(read_state(checkpoint), arch=arch, keep_head=keep_head)
  return pretrained.save_converted(out, config, variables, detected=detected, force=force), detected
