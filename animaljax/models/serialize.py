"""The saved-model record: a `ClassifierConfig` as JSON, the `model.json` beside a model's weights, its id.

A converted model dir (`models.pretrained.save_converted`) and an exported bundle (`animaljax.bundle`) both hold
a `model.json`: the config (`config_to_dict`), `has_head`, the class `labels`, and optionally `clip_seconds`
(the window the model was trained on) and `source` (what the converter detected). This module is the one place
that reads and writes it; `fingerprint` is the short id of a model's weights a species store records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib

import jax
import numpy as np

from animaljax.audio import frontend
from animaljax.audio.io import PathError
from animaljax.models.ast import AstConfig
from animaljax.models.classifier import ClassifierConfig
from animaljax.models.cnn14 import CnnConfig
from animaljax.models.efficientat import EfficientAtConfig
from animaljax.models.imagenet_resnet import ImageNetResNetConfig
from animaljax.models.panns_mobilenet import MobileNetConfig
from animaljax.models.panns_resnet import ResNetConfig
from animaljax.models.wavegram import WavegramConfig

MODEL_JSON = "model.json"
_FRONTENDS = {"logmel": frontend.LogMelConfig, "fbank": frontend.FbankConfig}
_FRONTENDS["efficientat_mel"] = frontend.EfficientAtMelConfig
_ENCODERS = {
  "cnn": CnnConfig,
  "ast": AstConfig,
  "panns_resnet": ResNetConfig,
  "panns_mobilenet": MobileNetConfig,
}
_ENCODERS["wavegram"] = WavegramConfig
_ENCODERS["imagenet_resnet"] = ImageNetResNetConfig
_ENCODERS["efficientat"] = EfficientAtConfig


# ----------------------------------------------------------------------------------------------------------------
# ClassifierConfig <-> JSON
# ----------------------------------------------------------------------------------------------------------------
# Fields added to a config after models were saved, with the value every older model had: left out of the dict
# at that value, so an older model's model.json and `fingerprint` (which enrolled species record) stay the same.
_ADDED_FIELDS = {"encoder": {"clip_norm": False, "head": "clip", "pool_mask": False}}


def config_to_dict(config: ClassifierConfig) -> dict:
  """A JSON-able dict: `{"frontend": {"kind", ...fields}, "encoder": {"kind", ...}, "num_classes", "dtype"}`
  (and `"members"` for an ensemble)."""
  fe_kind = {v: k for k, v in _FRONTENDS.items()}[type(config.frontend)]
  enc_kind = {v: k for k, v in _ENCODERS.items()}[type(config.encoder)]
  encoder = {"kind": enc_kind, **dataclasses.asdict(config.encoder)}
  for key, old in _ADDED_FIELDS["encoder"].items():
    if key in encoder and encoder[key] == old:
      del encoder[key]
  record = {
    "frontend": {"kind": fe_kind, **dataclasses.asdict(config.frontend)},
    "encoder": encoder,
    "num_classes": config.num_classes,
    "dtype": config.dtype,
  }
  if config.members > 1:  # added later: a single model's record (and fingerprint) stays as it was
    record["members"] = config.members
  return record


def config_from_dict(d: dict) -> ClassifierConfig:
  """Inverse of `config_to_dict` (other keys of `d` are ignored); unknown kinds or fields raise
  ValueError/TypeError."""
  fe, enc = dict(d["frontend"]), dict(d["encoder"])
  fe_cls, enc_cls = _FRONTENDS.get(fe.pop("kind")), _ENCODERS.get(enc.pop("kind"))
  if fe_cls is None or enc_cls is None:
    raise ValueError(f"unknown front end or encoder kind in {d}")
  return ClassifierConfig(
    fe_cls(**fe), enc_cls(**enc), int(d["num_classes"]), d.get("dtype", "float32"), int(d.get("members", 1))
  )


# ----------------------------------------------------------------------------------------------------------------
# model.json
# ----------------------------------------------------------------------------------------------------------------
def model_record(
  config: ClassifierConfig,
  labels: list[str] | tuple[str, ...],
  *,
  has_head: bool = True,
  clip_seconds: float | None = None,
  short_clips: str | None = None,
  source: dict | None = None,
  multi_label: bool = False,
  thresholds: list[float | None] | None = None,
) -> dict:
  """The `model.json` of a model: its config, `has_head`, `labels` and, when given, `clip_seconds`,
  `short_clips` (the rule that made clips shorter than the window into one: `audio.windows.fit_short`; a
  record without it was saved by a version that always zero-padded) and `source`; for a multi-label model
  `multi_label: true` and its per-class `thresholds` (None = never fires).

  Raises:
    ValueError: `labels` do not match `config.num_classes`.
  """
  if len(labels) != config.num_classes:
    raise ValueError(f"{len(labels)} labels for {config.num_classes} classes")
  record = {**config_to_dict(config), "has_head": has_head, "labels": list(labels)}
  if clip_seconds is not None:
    record["clip_seconds"] = clip_seconds
  if short_clips is not None:
    record["short_clips"] = short_clips
  if source is not None:
    record["source"] = source
  if multi_label:
    record["multi_label"] = True
    if thresholds is not None:
      if len(thresholds) != config.num_classes:
        raise ValueError(f"{len(thresholds)} thresholds for {config.num_classes} classes")
      record["thresholds"] = [None if t is None or t == float("inf") else float(t) for t in thresholds]
  return record


def write_model_record(directory: str | os.PathLike, record: dict) -> pathlib.Path:
  """Writes `record` (`model_record`) as `<directory>/model.json` (UTF-8: labels may be any Unicode)."""
  path = pathlib.Path(directory) / MODEL_JSON
  path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
  return path


def read_model_record(directory: str | os.PathLike) -> tuple[ClassifierConfig, dict]:
  """`(config, record)` of `<directory>/model.json`.

  Raises:
    FileNotFoundError: no model.json. PathError (a ValueError; `path` and `reason`): it is not JSON, does not
    describe a model or has no labels.
  """
  path = pathlib.Path(directory) / MODEL_JSON
  if not path.is_file():
    raise FileNotFoundError(f"{directory} holds no saved model (no {MODEL_JSON})")
  try:
    record = json.loads(path.read_text(encoding="utf-8"))
    config = config_from_dict(record)
    if not isinstance(record.get("labels"), list):
      raise ValueError("no 'labels' list")
  except (UnicodeDecodeError, KeyError, TypeError, AttributeError, ValueError) as err:
    raise PathError(path, f"invalid model description ({err})") from err
  return config, record


# ----------------------------------------------------------------------------------------------------------------
# Identity
# ----------------------------------------------------------------------------------------------------------------
def fingerprint(config: ClassifierConfig, variables: dict) -> str:
  """A short id of a model's weights: its config plus every leaf's path, shape and a strided sample.

  Cheap (no full hash of 300 MB of CNN14) yet different for any retrained or re-initialised model. Species
  stores record it, so the recipe must not change (a changed id marks every enrolled species stale).
  """
  h = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode())
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    arr = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}{arr.shape}{arr.dtype}".encode())
    flat = arr.reshape(-1)
    h.update(np.ascontiguousarray(flat[:: max(1, flat.size // 256)], np.float32).tobytes())
  return h.hexdigest()[:16]
