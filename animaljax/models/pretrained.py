"""Converted PANNs/AST weights on disk, and ready-to-call pretrained taggers.

A converted directory holds `model.json` (the ClassifierConfig, label names and what the converter detected)
and `variables/`, an orbax StandardCheckpointer checkpoint of `{"params": ..., "batch_stats": ...}`
(`batch_stats` only for CNNs). `load_converted(dir)` gives `(ClassifierConfig, variables)` for `init_from`;
`load_panns(path)` / `load_ast(path)` give a jitted `wave (batch, time) -> {"probs", "logits", "embedding"}`
from either a `.pth` (converted in memory; needs torch) or a converted directory.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import uuid
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio import frontend
from animaljax.models.ast import Ast
from animaljax.models.classifier import AstHead, ClassifierConfig, inference_forward
from animaljax.models.serialize import MODEL_JSON, model_record, read_model_record, write_model_record

_VARIABLES = "variables"


# ----------------------------------------------------------------------------------------------------------------
# Converted directories
# ----------------------------------------------------------------------------------------------------------------
def is_converted_dir(directory: str | os.PathLike) -> bool:
  """Whether `directory` holds a converted model as `save_converted` writes it: a `model.json` describing a
  model and a `variables/` orbax checkpoint. A folder of the user's that happens to hold files of those
  names is not one (so `force` never replaces it)."""
  root = pathlib.Path(directory)
  variables = root / _VARIABLES
  if variables.is_symlink() or not (variables / "_CHECKPOINT_METADATA").is_file():
    return False
  try:
    read_model_record(root)
  except (OSError, ValueError):
    return False
  return True


def check_converted_out(directory: str | os.PathLike, *, force: bool = False) -> pathlib.Path:
  """Refuses a `save_converted` destination that would lose data, before any work; returns it absolute.

  Allowed: a path that does not exist, an empty folder, and (with `force`) a converted model dir, of which
  only `model.json` and `variables/` are replaced (anything beside them, e.g. enrolled species, stays).
  Refused, whatever `force` says: a file, and any other non-empty folder (a bundle, a workdir, recordings).
  Raises:
    FileExistsError naming the folder.
  """
  root = pathlib.Path(directory).absolute()
  if not root.exists() and not root.is_symlink():
    return root
  if not root.is_dir():
    raise FileExistsError(f"{root} exists and is not a folder: choose another output directory")
  if is_converted_dir(root):
    if not force:
      raise FileExistsError(
        f"{root} already holds a converted model (pass force=True, CLI --force, to replace it)"
      )
    return root
  if any(root.iterdir()):
    raise FileExistsError(
      f"{root} exists and is not a converted model dir (no {MODEL_JSON} + {_VARIABLES}/): converting never "
      "replaces other folders; choose a new or empty output directory"
    )
  return root


def save_converted(
  directory: str | os.PathLike,
  config: ClassifierConfig,
  variables: dict,
  *,
  labels: list[str] | None = None,
  detected: dict | None = None,
  force: bool = False,
) -> pathlib.Path:
  """Writes `model.json` + `variables/` (orbax) under `directory`; returns its absolute path.

  `labels` default to `class_0 ..` (AudioSet's names are not shipped); `detected` is stored as "source".
  The destination is checked by `check_converted_out` (`force` replaces a converted model dir, never another
  folder). Both are written in a hidden sibling folder first and moved into place once complete, so a failed
  or killed conversion leaves any previous model as it was.
  """
  import orbax.checkpoint as ocp

  root = check_converted_out(directory, force=force)
  labels = list(labels) if labels is not None else [f"class_{i}" for i in range(config.num_classes)]
  record = model_record(config, labels, has_head="head" in variables["params"], source=detected or {})
  root.parent.mkdir(parents=True, exist_ok=True)
  tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    tmp.mkdir()
    state = {k: v for k, v in variables.items() if v}  # orbax cannot store an empty batch_stats
    with ocp.StandardCheckpointer() as ckpt:
      ckpt.save(tmp / _VARIABLES, jax.tree.map(np.asarray, state))
    write_model_record(tmp, record)
    check_converted_out(root, force=force)  # again: the folder may have changed during the conversion
    if not root.exists():
      tmp.rename(root)
    elif not any(root.iterdir()):
      root.rmdir()
      tmp.rename(root)
    else:  # a converted model dir: swap its two entries, keep everything else in it
      old = root / f".{_VARIABLES}.old-{uuid.uuid4().hex[:8]}"
      (root / _VARIABLES).rename(old)
      (tmp / _VARIABLES).rename(root / _VARIABLES)
      os.replace(tmp / MODEL_JSON, root / MODEL_JSON)
      shutil.rmtree(old, ignore_errors=True)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
  return root


def convert(
  checkpoint: str | os.PathLike,
  kind: str,
  out: str | os.PathLike,
  *,
  keep_head: bool = True,
  sample_rate: int | None = None,
  input_frames: int | None = None,
  variant: str | None = None,
  force: bool = False,
) -> tuple[pathlib.Path, dict]:
  """A PyTorch PANNs/AST checkpoint converted and saved as a converted model dir (`python -m animaljax.convert`).

  Args:
    checkpoint: the `.pth` (read with `torch.load(weights_only=True)`); kind: "panns" or "ast".
    out: the directory (`check_converted_out` refuses it before the slow conversion; `force` replaces a
      converted model dir).
    keep_head, sample_rate, input_frames: as `torch_weights.convert_checkpoint`.
    variant: PANNs only: refuse a checkpoint of another variant ("cnn6", "cnn10", "cnn14").
  Returns:
    (the directory, what the converter detected).
  Raises:
    FileExistsError: `out` may not be written. ValueError: a variant other than `variant`. ImportError: torch is
    not installed.
  """
  from animaljax.models import torch_weights

  check_converted_out(out, force=force)
  config, variables, detected = torch_weights.convert_checkpoint(
    checkpoint, kind, keep_head=keep_head, sample_rate=sample_rate, input_frames=input_frames
  )
  if variant and detected.get("variant") != variant:
    raise ValueError(f"asked for {variant}, the checkpoint is {detected.get('variant')}")
  return save_converted(out, config, variables, detected=detected, force=force), detected


def read_metadata(directory: str | os.PathLike) -> dict:
  """The `model.json` of a converted directory (`serialize.model_record`: config, labels, has_head, source)."""
  return read_model_record(directory)[1]


def load_converted(directory: str | os.PathLike, *, keep_head: bool = True) -> tuple[ClassifierConfig, dict]:
  """A converted directory -> (ClassifierConfig, variables) with numpy leaves; `keep_head=False` drops `head`."""
  import orbax.checkpoint as ocp

  root = pathlib.Path(directory).absolute()
  config, meta = read_model_record(root)
  if keep_head and not meta.get("has_head", True):
    raise ValueError(f"{root} was converted without its head; load it with keep_head=False")
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(root / _VARIABLES)
  variables = jax.tree.map(np.asarray, dict(state))
  if not keep_head:
    variables["params"] = {k: v for k, v in variables["params"].items() if k != "head"}
  return config, variables


def load_pretrained(
  path: str | os.PathLike, *, keep_head: bool = True, input_frames: int | None = None, kind: str | None = None
) -> tuple[ClassifierConfig, dict]:
  """A `.pth` (converted in memory) or a converted directory -> (ClassifierConfig, variables).

  `input_frames` (AST only) re-lays the positional embedding for that many frames in either case.
  """
  if pathlib.Path(path).is_dir():
    config, variables = load_converted(path, keep_head=keep_head)
    if input_frames is not None:
      config, variables = _relayout_ast(config, variables, input_frames)
    return config, variables
  from animaljax.models import torch_weights

  config, variables, _ = torch_weights.convert_checkpoint(
    path, kind, keep_head=keep_head, input_frames=input_frames
  )
  return config, variables


def _relayout_ast(config: ClassifierConfig, variables: dict, frames: int) -> tuple[ClassifierConfig, dict]:
  from animaljax.models.ast import resize_pos_embed

  if not config.is_ast:
    raise ValueError("input_frames applies to AST models only")
  encoder = dataclasses.replace(config.encoder, input_frames=frames)
  enc = dict(variables["params"]["encoder"])
  enc["pos_embed"] = np.asarray(
    resize_pos_embed(jnp.asarray(enc["pos_embed"]), config.encoder.grid, encoder.grid)
  )
  params = {**variables["params"], "encoder": enc}
  return dataclasses.replace(config, encoder=encoder), {**variables, "params": params}


# ----------------------------------------------------------------------------------------------------------------
# Ready-to-call taggers
# ----------------------------------------------------------------------------------------------------------------
Tagger = Callable[[jax.Array], dict[str, jax.Array]]


def load_panns(path: str | os.PathLike) -> Tagger:
  """PANNs tagger: float waveform (batch, time) at the checkpoint's sample rate (`tagger.config.frontend`) ->
  `{"probs": sigmoid (batch, classes), "logits", "embedding" (batch, D)}`, jitted."""
  config, variables = load_pretrained(path, kind="panns")
  if config.is_ast:
    raise ValueError(f"{path} is not a PANNs model")
  forward = inference_forward(config)

  @jax.jit
  def tag(wave: jax.Array) -> dict[str, jax.Array]:
    logits, embedding = forward(variables, wave)
    return {"probs": jax.nn.sigmoid(logits), "logits": logits, "embedding": embedding}

  tag.config = config  # type: ignore[attr-defined]
  return tag


def load_ast(path: str | os.PathLike, input_frames: int = 1024) -> Tagger:
  """AST tagger with AST's own inference recipe: 16 kHz float waveform (batch, time) in [-1, 1] -> fbank
  (`FbankConfig.ast()`) zero-padded (before normalisation, as AST) or cut to `input_frames` -> encoder ->
  `mlp_head`; returns `{"probs": sigmoid (batch, classes), "logits", "embedding" (batch, D)}`, jitted."""
  config, variables = load_pretrained(path, input_frames=input_frames, kind="ast")
  if not config.is_ast:
    raise ValueError(f"{path} is not an AST model")
  fe = config.frontend
  encoder, head = Ast(config.encoder), AstHead(config.num_classes)
  enc_vars = {"params": variables["params"]["encoder"]}
  head_vars = {"params": variables["params"]["head"]}
  # AST pads the raw log fbank with zeros, then normalises: the padding value is the normalised zero.
  pad_value = (0.0 - fe.mean) / (2.0 * fe.std) if fe.normalize else 0.0

  @jax.jit
  def tag(wave: jax.Array) -> dict[str, jax.Array]:
    feats = frontend.features(wave, fe)[:, :input_frames]
    if feats.shape[1] < input_frames:
      feats = jnp.pad(feats, ((0, 0), (0, input_frames - feats.shape[1]), (0, 0)), constant_values=pad_value)
    out = encoder.apply(enc_vars, feats, train=False)
    logits = head.apply(head_vars, out["embedding"]).astype(jnp.float32)
    return {"probs": jax.nn.sigmoid(logits), "logits": logits, "embedding": out["embedding"]}

  tag.config = config  # type: ignore[attr-defined]
  return tag
