"""Which PANNs model a state dict holds, beyond CNN6/10/14: the wavegram encoders and the decision-level heads.

Read from the keys alone (`torch_weights.panns_to_flax` calls `detect`):
  `pre_conv0.weight` present        -> Wavegram-CNN14, or Wavegram-Logmel-CNN14 when it also holds the STFT /
                                       mel kernels (`logmel_extractor.melW`); the plain one has none, so its
                                       front end (used only for `out["features"]`) is PANNs' 32 kHz log-mel
  `att_block.att.weight` present    -> Cnn14_DecisionLevelAtt (head "decision_att")
  otherwise                         -> head "clip"
Cnn14_DecisionLevelMax has exactly Cnn14's keys and shapes, so no state dict can tell them apart: the
converter takes the published file's name (`Cnn14_DecisionLevelMax_mAP=0.385.pth`) or an explicit `head`.

Keys PANNs declares but never uses in a forward pass, skipped by the converter: Wavegram-CNN14's `bn0.*` and
`conv_block1.*`, and `att_block.bn_att.*`.
"""

from __future__ import annotations

import os

import numpy as np

from animaljax.models import sed
from animaljax.models.cnn14 import CnnConfig
from animaljax.models.wavegram import WavegramConfig


def head_from_name(path: str | os.PathLike) -> str | None:
  """ "decision_max" / "decision_att" when a checkpoint's file name says so (PANNs' published names), else None."""
  name = os.path.basename(os.fspath(path))
  if "DecisionLevelMax" in name:
    return "decision_max"
  if "DecisionLevelAtt" in name:
    return "decision_att"
  return None


def detect(state: dict[str, np.ndarray], head: str | None = None) -> dict:
  """`{"encoder": "cnn" | "wavegram" | "wavegram_logmel", "head": one of sed.HEADS}` of a PANNs state dict.

  Args:
    head: what the caller knows of the head (the file name): kept when the keys allow it.
  Raises:
    ValueError: `head` contradicts the keys (an attention head without `att_block`, or the reverse).
  """
  if head is not None and head not in sed.HEADS:
    raise ValueError(f"unknown head {head!r}; valid: {sed.HEADS}")
  has_att = "att_block.att.weight" in state
  if has_att and head not in (None, "decision_att"):
    raise ValueError(f"the checkpoint has an attention head (att_block), not {head!r}")
  if not has_att and head == "decision_att":
    raise ValueError("asked for a decision_att head, the checkpoint has no att_block")
  found = "decision_att" if has_att else (head or "clip")
  if "pre_conv0.weight" in state:
    encoder = "wavegram_logmel" if "logmel_extractor.melW" in state else "wavegram"
  else:
    encoder = "cnn"
  return {"encoder": encoder, "head": found}


def num_classes(state: dict[str, np.ndarray]) -> int | None:
  """Head size from `fc_audioset` or `att_block.cla`; None without a head."""
  for key in ("fc_audioset.weight", "att_block.cla.weight"):
    if key in state:
      return int(state[key].shape[0])
  return None


def encoder_config(layout: dict, variant: str, width: float):
  """The encoder config for `detect`'s layout (`variant` and `width` as read for the CNNs)."""
  if layout["encoder"] == "cnn":
    return CnnConfig(variant=variant, width=width, head=layout["head"])
  return WavegramConfig(logmel=layout["encoder"] == "wavegram_logmel", width=width, head=layout["head"])


def ignored_keys(state: dict[str, np.ndarray], layout: dict) -> set[str]:
  """Keys PANNs declares but never uses in this layout's forward pass."""
  prefixes = ["att_block.bn_att."]
  if layout["encoder"] == "wavegram":
    prefixes += ["bn0.", "conv_block1."]
  return {k for k in state if k.startswith(tuple(prefixes))}


def overrides(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The attention head's 1x1 Conv1d weights `(C, D, 1)` as Dense kernels `(D, C)`."""
  return {k: state[k][:, :, 0].T for k in ("att_block.att.weight", "att_block.cla.weight") if k in state}


def flax_key(path: tuple[str, ...]) -> str | None:
  """The torch key of an attention-head leaf (`head/att/kernel` -> `att_block.att.weight`); None otherwise."""
  if path[0] == "head" and len(path) == 3:
    return f"att_block.{path[1]}.{'weight' if path[2] == 'kernel' else path[2]}"
  return None
