"""The bundle's on-disk format: file names, the manifest, checksums, flat parameter names and its error class.

A bundle is a folder of files listed, with size and sha256, in `manifest.json` (see `animaljax.bundle`).
Writing is `bundle.write`, reading `bundle.read`; both use the names and helpers here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib
from typing import Protocol

import jax
import numpy as np

from animaljax.audio.io import PathError
from animaljax.fewshot.heads import HEADS_DIR
from animaljax.fewshot.store import STORE_DIR
from animaljax.models.classifier import ClassifierConfig
from animaljax.models.serialize import MODEL_JSON

FORMAT = "animaljax-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARAMS = "params.safetensors"
INFER = "infer.jax_exported"
TFLITE = "model.tflite"
TFLITE_FP16 = "model_fp16.tflite"
TFLITE_FRONTEND = "frontend.tflite"  # the float32 front end of the int8 pipeline
TFLITE_INT8 = "model_int8.tflite"
SPECIES = STORE_DIR  # the species store: editable (`python -m animaljax.enroll`), so not checksummed
HEADS = HEADS_DIR  # attached linear heads: editable (`python -m animaljax.search attach`), so not checksummed
EDITABLE = (SPECIES, HEADS)
# Evaluation outputs of a training workdir carried into the bundle when present.
REPORT_FILES = ("metrics.json", "confusion_matrix.png", "per_class.png", "confusion_matrix.csv")
METRIC_KEYS = ("step", "accuracy", "macro_f1", "weighted_f1", "mAP", "loss", "num_examples")

__all__ = [
  "EDITABLE", "FORMAT", "FORMAT_VERSION", "HEADS", "INFER", "MANIFEST", "METRIC_KEYS", "MODEL_JSON", "PARAMS",
  "REPORT_FILES", "SPECIES", "TFLITE", "TFLITE_FP16", "TFLITE_FRONTEND", "TFLITE_INT8", "BundleError", "Model",
  "animaljax_version", "bundle_manifest", "flatten", "foreign_entries", "sha256", "unflatten",
]  # fmt: skip


class BundleError(PathError):
  """A bundle that cannot be written or used; `str(err)` is `"<path>: <reason>"`."""


class Model(Protocol):
  """What a bundle is written from: a classifier and its weights, as `inference.Predictor` holds them.

  Attributes:
    config: the model; variables: `{"params": ..., "batch_stats": ...}`; labels: its `config.num_classes`
    class names; sample_rate; clip_samples: the window (samples) it was trained on; min_samples: the shortest
    input it takes; embed_dim: D; fingerprint: `models.serialize.fingerprint`; path: the folder it was read
    from (its species store and training report are carried over), None for an in-memory model; source:
    the manifest's description of where it came from (`{"kind": "workdir" | "model_dir" | "bundle", "path",
    ...}`), None for an in-memory model.
  """

  config: ClassifierConfig
  variables: dict
  labels: tuple[str, ...]
  sample_rate: int
  clip_samples: int
  min_samples: int
  embed_dim: int
  fingerprint: str
  path: pathlib.Path | None
  source: dict | None


def animaljax_version() -> str:
  try:
    return importlib.metadata.version("animaljax")
  except importlib.metadata.PackageNotFoundError:  # running from a source tree that was never installed
    return "unknown"


# ----------------------------------------------------------------------------------------------------------------
# Parameters: nested dict <-> flat safetensors
# ----------------------------------------------------------------------------------------------------------------
def flatten(variables: dict) -> dict[str, np.ndarray]:
  """`{"params": {"encoder": {...}}}` -> `{"params/encoder/...": array}` (contiguous numpy)."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    keys = [p.key for p in path]
    if any("/" in str(k) for k in keys):
      raise ValueError(f"parameter name with '/' cannot be stored: {keys}")
    out["/".join(map(str, keys))] = np.ascontiguousarray(np.asarray(leaf))
  return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  """Inverse of `flatten`."""
  out: dict = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return out


# ----------------------------------------------------------------------------------------------------------------
# Manifest and checksums
# ----------------------------------------------------------------------------------------------------------------
def sha256(path: pathlib.Path) -> str:
  """Hex sha256 of a file, read in 4 MiB blocks."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return h.hexdigest()


def bundle_manifest(directory: str | os.PathLike) -> dict | None:
  """The manifest of a folder holding this project's bundle (a `manifest.json` of format FORMAT, as
  `bundle.write.export_bundle` writes it), else None. Files are not checked: a damaged bundle is still a
  bundle (`bundle.read.read_manifest` checks them)."""
  path = pathlib.Path(directory) / MANIFEST
  try:
    manifest = json.loads(path.read_text(encoding="utf-8"))
  except (OSError, ValueError):
    return None
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    return None
  if not isinstance(manifest.get("files"), dict):
    return None
  return manifest


def foreign_entries(root: pathlib.Path, manifest: dict) -> list[str]:
  """Paths under a bundle folder that no export wrote: neither manifest.json, a file it lists, nor part of
  the species store or the attached heads. Links are listed too (never followed)."""
  ours = {MANIFEST, *manifest["files"]}
  foreign = []
  for dirpath, dirnames, filenames in os.walk(root):
    base = pathlib.Path(dirpath)
    links = [d for d in dirnames if (base / d).is_symlink()]  # os.walk does not descend into them
    for name in sorted(filenames + links):
      rel = (base / name).relative_to(root).as_posix()
      if rel not in ours and rel.split("/")[0] not in EDITABLE:
        foreign.append(rel)
  return foreign
