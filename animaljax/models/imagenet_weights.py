"""ImageNet ResNet18/34 and ResNeSt-50d weights (timm / torchvision files) -> an `ImageNetResNet` encoder.

`imagenet_to_flax(state)` maps a state dict with timm's key names (`conv1.weight`, `bn1.*`, `layer1.0.conv1.weight`,
..., ResNeSt's `conv1.{0,1,3,4,6}.*`, `layer1.0.conv2.{conv,bn0,fc1,bn1,fc2}.*`, `layer1.0.downsample.{1,2}.*`)
onto the encoder's parameter tree by name, strictly: every missing, unexpected or misshapen key is an error.
The first convolution is adapted to the one-channel log-mel image by summing its kernel over the RGB input
channels (the same output as feeding the gray image to all three channels, as the ESC-50 and BirdCLEF recipes
do); `fc` is dropped (the user's classes get a new head); `bn0`, which ImageNet models lack, starts as the
identity (scale 1, bias 0, mean 0, variance 1) and learns its statistics in fine-tuning.

Files: `.safetensors` (read with the `safetensors` package into numpy; no torch needed) or `.pth`/`.pt`/`.bin`
(`torch.load(weights_only=True)` through `torch_weights.load_state_dict`). `convert_imagenet` writes a converted
model dir (`pretrained.save_converted`) that `model.init_from` accepts (`python -m animaljax.convert imagenet`).
"""

from __future__ import annotations

import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio import frontend
from animaljax.models.classifier import ClassifierConfig, make_model
from animaljax.models.imagenet_resnet import ImageNetResNetConfig
from animaljax.models.torch_weights import CheckpointError, load_state_dict

_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_FIRST_CONV = {"resnet18": "conv1.weight", "resnet34": "conv1.weight", "resnest50": "conv1.0.weight"}
_BLOCKS = {(2, 2, 2, 2): "resnet18", (3, 4, 6, 3): "resnet34"}
_SAMPLE_RATES = {
  32000: frontend.LogMelConfig.panns_32k, 16000: frontend.LogMelConfig.panns_16k,
  8000: frontend.LogMelConfig.panns_8k,
}  # fmt: skip


def read_state(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """A `.safetensors` (numpy, no torch) or a torch file (`weights_only=True`) -> flat `{key: array}`."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path}: no such checkpoint file")
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file

    try:
      state = load_file(path)
    except Exception as err:  # a truncated or foreign file: report it as a bad checkpoint
      raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in state.items()}
  return load_state_dict(path)


def detect_variant(state: dict[str, np.ndarray]) -> str:
  """ "resnet18", "resnet34" or "resnest50" from the key layout; CheckpointError for any other model."""
  blocks = tuple(
    len({m.group(1) for k in state if (m := re.match(rf"layer{i}\.(\d+)\.", k))}) for i in range(1, 5)
  )
  if "layer1.0.conv2.fc1.weight" in state:  # ResNeSt's split attention
    if blocks == (3, 4, 6, 3) and "conv1.6.weight" in state and "layer1.0.downsample.1.weight" in state:
      return "resnest50"
    raise CheckpointError(
      f"a ResNeSt with blocks {blocks}; only resnest50d (3, 4, 6, 3, deep stem) is supported"
    )
  if "layer1.0.conv3.weight" in state:
    raise CheckpointError("a bottleneck ResNet (resnet50 and up); supported: resnet18, resnet34, resnest50d")
  if "conv1.weight" in state and blocks in _BLOCKS:
    return _BLOCKS[blocks]
  raise CheckpointError(
    f"not a timm/torchvision resnet18/34 or resnest50d state dict (blocks per stage {blocks}); first keys: "
    f"{sorted(state)[:8]}"
  )


def one_channel(kernel: np.ndarray) -> np.ndarray:
  """A first conv kernel `(out, 3, kh, kw)` summed over its RGB inputs -> `(out, 1, kh, kw)`; one channel as is."""
  if kernel.ndim != 4 or kernel.shape[1] not in (1, 3):
    raise CheckpointError(f"first conv kernel {kernel.shape}: expected (out, 3 or 1, kh, kw)")
  return kernel.sum(axis=1, keepdims=True)


def _key(names: tuple[str, ...]) -> str:
  return ".".join(names[1:-1] + (_LEAF[names[-1]],))  # drop "encoder"


def _to_flax(value: np.ndarray) -> np.ndarray:
  return value.transpose(2, 3, 1, 0) if value.ndim == 4 else value  # OIHW -> HWIO


def imagenet_to_flax(
  state: dict[str, np.ndarray], *, encoder: str | None = None, sample_rate: int = 32000
) -> tuple[ClassifierConfig, dict, dict]:
  """An ImageNet state dict -> (ClassifierConfig without head, variables, detected settings).

  Args:
    state: timm/torchvision key names (`read_state`); `fc.*` and `num_batches_tracked` are ignored.
    encoder: refuse a file of another variant ("resnet18", "resnet34", "resnest50"); None = as detected.
    sample_rate: the PANNs log-mel front end the model will see (32000, 16000 or 8000 Hz).
  Returns:
    (config with `num_classes=1` and no head, `{"params": {"encoder"}, "batch_stats": {"encoder"}}`,
    `{"kind": "imagenet", "variant", "width", "input_channels"}`).
  """
  if sample_rate not in _SAMPLE_RATES:
    raise ValueError(f"log-mel front ends exist for sample rates {sorted(_SAMPLE_RATES)}, got {sample_rate}")
  variant = detect_variant(state)
  if encoder is not None and encoder != variant:
    raise CheckpointError(f"asked for {encoder}, the checkpoint is {variant}")
  first = _FIRST_CONV[variant]
  channels = state[first].shape[1]
  state = {**state, first: one_channel(state[first])}
  width = state["bn1.weight"].shape[0] / 64
  config = ClassifierConfig(
    _SAMPLE_RATES[sample_rate](), ImageNetResNetConfig(variant, width=width), num_classes=1
  )
  wave = jax.ShapeDtypeStruct((1, sample_rate), jnp.float32)  # 1 s: 100 frames, enough for every stage
  abstract = jax.eval_shape(lambda w: make_model(config).init(jax.random.key(0), w), wave)
  problems, used, out = [], set(), {}
  for collection, tree in abstract.items():
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree["encoder"])[0]:
      names = ("encoder",) + tuple(p.key for p in path)
      if names[1] == "bn0":  # ours, not ImageNet's: the identity
        value = np.ones(leaf.shape) if names[-1] in ("scale", "var") else np.zeros(leaf.shape)
      elif (key := _key(names)) not in state:
        problems.append(f"missing key {key!r} (for {'/'.join(names)} {tuple(leaf.shape)})")
        continue
      else:
        used.add(key)
        value = _to_flax(state[key])
        if value.shape != tuple(leaf.shape):
          problems.append(f"wrong shape for {key!r}: {state[key].shape}, expected {tuple(leaf.shape)} (HWIO)")
          continue
      node = out.setdefault(collection, {})
      for n in names[:-1]:
        node = node.setdefault(n, {})
      node[names[-1]] = np.asarray(value, np.float32)
  extra = [k for k in sorted(state) if k not in used and not k.startswith("fc.")]
  problems += [
    f"unexpected key {k!r} {state[k].shape}" for k in extra if not k.endswith("num_batches_tracked")
  ]
  if problems:
    shown = "\n  ".join(problems[:20])
    raise CheckpointError(f"ImageNet {variant}: {len(problems)} problem(s):\n  {shown}")
  detected = {"kind": "imagenet", "variant": variant, "width": width, "input_channels": int(channels)}
  return config, out, detected


def convert_imagenet(
  checkpoint: str | os.PathLike,
  out: str | os.PathLike,
  *,
  encoder: str | None = None,
  sample_rate: int = 32000,
  force: bool = False,
) -> tuple[pathlib.Path, dict]:
  """An ImageNet `.safetensors`/`.pth` saved as a converted model dir without head (`model.init_from`).

  Raises:
    FileExistsError: `out` may not be written (`pretrained.check_converted_out`). CheckpointError: the file is
    not a supported model, or not `encoder`. ImportError: a torch file without torch installed.
  """
  from animaljax.models import pretrained

  pretrained.check_converted_out(out, force=force)
  config, variables, detected = imagenet_to_flax(
    read_state(checkpoint), encoder=encoder, sample_rate=sample_rate
  )
  return pretrained.save_converted(out, config, variables, detected=detected, force=force), detected
