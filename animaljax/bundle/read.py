"""Reading a bundle back: its manifest (every listed file checked), its saved-model record and weights.

`read_bundle(directory)` gives a `Bundle` (config, variables, labels, window, and the deserialised forward when
one can run here); `inference.load` turns it into a Predictor. Needs no training code, dataset or network.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import warnings

import jax

from animaljax.audio.io import PathError
from animaljax.bundle.exported import ExportedForward, deserialize_forward
from animaljax.bundle.format import (
  FORMAT,
  FORMAT_VERSION,
  MANIFEST,
  MODEL_JSON,
  PARAMS,
  BundleError,
  animaljax_version,
  sha256,
  unflatten,
)
from animaljax.models.classifier import ClassifierConfig
from animaljax.models.serialize import read_model_record


@dataclasses.dataclass
class Bundle:
  """What a bundle holds for inference.

  Attributes:
    path: the bundle folder (absolute); manifest: its checked manifest.
    config: the model; variables: `{"params": ..., "batch_stats": ...}` numpy leaves; labels: class names.
    clip_seconds: the window the model was exported with (None in a model.json without it).
    exported: the deserialised `infer.jax_exported`, or None (not stored, not wanted, or lowered for other
      platforms than this one).
    short_clips: how the model makes a clip shorter than its window into one ("pad" for bundles written before
      the rule was recorded: their models were all trained on zero-padded rows).
    multi_label, thresholds: a multi-label model and its per-class thresholds (False/None before them).
  """

  path: pathlib.Path
  manifest: dict
  config: ClassifierConfig
  variables: dict
  labels: list[str]
  clip_seconds: float | None
  exported: ExportedForward | None
  short_clips: str = "pad"
  multi_label: bool = False
  thresholds: list[float | None] | None = None


def read_manifest(directory: str | os.PathLike, *, verify: bool = True) -> dict:
  """The bundle's manifest, after checking its format version and every listed file (size, and sha256 when
  `verify`). BundleError naming the file and the reason otherwise."""
  root = pathlib.Path(directory).absolute()
  path = root / MANIFEST
  if not root.is_dir():
    raise BundleError(root, "no such bundle directory")
  if not path.is_file():
    raise BundleError(path, "missing: not an animaljax bundle (export one with python -m animaljax.export)")
  try:
    manifest = json.loads(path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as err:
    raise BundleError(path, f"damaged manifest ({err})") from err
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    raise BundleError(path, f"not an animaljax bundle manifest (format {found!r})")
  version = manifest.get("format_version")
  if not isinstance(version, int) or version < 1:
    raise BundleError(path, f"invalid format_version {version!r}")
  if version > FORMAT_VERSION:
    raise BundleError(
      path,
      f"format_version {version} was written by a newer animaljax ({manifest.get('animaljax_version')}); "
      f"this version ({animaljax_version()}) reads format_version <= {FORMAT_VERSION}: upgrade animaljax",
    )
  if not isinstance(manifest.get("files"), dict):
    raise BundleError(path, "lists no files")
  for rel, info in manifest["files"].items():
    f = root / rel
    if not f.is_file():
      raise BundleError(f, "missing from the bundle (listed in manifest.json)")
    size = f.stat().st_size
    if size != info["size"]:
      raise BundleError(f, f"truncated or modified: {size} bytes, manifest.json says {info['size']}")
    if verify and sha256(f) != info["sha256"]:
      raise BundleError(f, "corrupted: sha256 differs from manifest.json")
  for required in (MODEL_JSON, PARAMS):
    if required not in manifest.get("files", {}):
      raise BundleError(path, f"lists no {required}")
  return manifest


def read_bundle(directory: str | os.PathLike, *, use_exported: bool = True, verify: bool = True) -> Bundle:
  """The model of a bundle.

  Args:
    use_exported: deserialise `infer.jax_exported` when present and lowered for this platform (a warning
      says when it is not, and `exported` is None).
    verify: check every file's sha256 (sizes are always checked).
  Raises:
    BundleError: not a bundle, a missing/truncated/corrupted file, a newer format_version, an invalid
      model.json or parameters, a serialised forward this jax cannot read.
  """
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  root = pathlib.Path(directory).absolute()
  manifest = read_manifest(root, verify=verify)
  try:
    config, meta = read_model_record(root)
  except PathError as err:
    raise BundleError(err.path, err.reason) from err
  try:
    variables = unflatten(load_file(str(root / PARAMS)))
  except (SafetensorError, OSError, ValueError) as err:
    raise BundleError(root / PARAMS, f"unreadable parameters ({err})") from err
  if "params" not in variables:
    raise BundleError(root / PARAMS, "holds no 'params/...' tensors")

  exported = None
  entry = manifest.get("inference")
  if use_exported and entry:
    if entry.get("file") not in manifest["files"]:  # only checksummed files are ever read
      raise BundleError(
        root / MANIFEST, f"inference file {entry.get('file')!r} is not among its checked files"
      )
    blob = (root / entry["file"]).read_bytes()
    if jax.default_backend() not in entry.get("platforms", ()):
      warnings.warn(
        f"{root / entry['file']} was lowered for {entry.get('platforms')}, not {jax.default_backend()}: "
        "using the Flax model",
        stacklevel=2,
      )
    else:
      try:
        exported = deserialize_forward(blob, entry)
      except Exception as err:  # e.g. a serialisation version this jax cannot read
        raise BundleError(root / entry["file"], f"cannot deserialise ({type(err).__name__}: {err})") from err
  return Bundle(
    root, manifest, config, variables, meta["labels"], meta.get("clip_seconds"), exported,
    meta.get("short_clips", "pad"), bool(meta.get("multi_label", False)), meta.get("thresholds"),
  )  # fmt: skip
