"""Export a trained or converted model as a self-contained inference bundle, and load one back.

  python -m animaljax.export --workdir runs/x --out exported/x [--overwrite [--drop-species]] [--tflite]
  python -m animaljax.export --model converted/cnn14 --out exported/cnn14

A bundle is a folder:
  manifest.json        format/format_version, animaljax and jax versions, export date, source, labels, rates,
                       the metrics summary, how `infer.jax_exported` may be called, and the size + sha256 of every
                       file below (except species/), so a missing or truncated file is caught before use
  model.json           ClassifierConfig + labels + clip_seconds (the same file a converted model dir has)
  params.safetensors   params and BatchNorm statistics, flat keys "params/encoder/conv_block1/conv1/kernel"
  infer.jax_exported   `jax.export` serialisation of `(variables, wave (batch, time) f32) -> (logits, embedding)`
                       (symbolic batch; symbolic time in multiples of the STFT hop where the model allows it)
  model.tflite, model_fp16.tflite, frontend.tflite + model_int8.tflite   optional (--tflite): float32,
                       float16-weight and int8 (float front end, then the network with dynamic-range int8
                       weights) TFLite pipelines of one window, `(1, clip_samples) -> (1, C + D)` logits then
                       embedding (see `write_tflite`)
  metrics.json, confusion_matrix.png, per_class.png, confusion_matrix.csv   copied from a training workdir
  species/             the species store: the enrolled species of the source and, when replacing a bundle, of
                       the bundle replaced (see `carried_species`); it stays editable
                       (`python -m animaljax.enroll add --model BUNDLE ...`), so it is not in the checksums

Nothing is pickled: safetensors, JSON, PNG, StableHLO bytes and the store's `allow_pickle=False` npz.
`load(DIR)` needs no training code, no dataset and no network; it calls the serialised function (no Flax
tracing: faster start-up) and falls back to the Flax model when the bundle has none, when the running platform
is not one it was lowered for, or when asked (`use_exported=False`). The bundle is built in a hidden sibling
folder and renamed into place, so a killed export leaves nothing that looks complete.

Nothing of the user's is replaced: `--out` may be a new or empty folder, or (with `--overwrite`) a bundle
holding only what an export and the species store wrote; any other folder is refused, named.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import pathlib
import shutil
import sys
import uuid
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from animaljax import cli
from animaljax.models.classifier import Classifier, make_model
from animaljax.models.pretrained import config_from_dict, config_to_dict
from animaljax.predictor import ExportedForward, Predictor

FORMAT = "animaljax-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MODEL_JSON = "model.json"
PARAMS = "params.safetensors"
INFER = "infer.jax_exported"
TFLITE = "model.tflite"
TFLITE_FP16 = "model_fp16.tflite"
TFLITE_FRONTEND = "frontend.tflite"  # the float32 front end of the int8 pipeline
TFLITE_INT8 = "model_int8.tflite"
SPECIES = "species"
# Evaluation outputs of a training workdir carried into the bundle when present.
REPORT_FILES = ("metrics.json", "confusion_matrix.png", "per_class.png", "confusion_matrix.csv")
_METRIC_KEYS = ("step", "accuracy", "macro_f1", "weighted_f1", "mAP", "loss", "num_examples")
# Lowered for all three so a bundle exported on a CPU runs on a GPU/TPU host too (checked at load time).
_PLATFORMS = ("cpu", "cuda", "tpu")


class ExportError(ValueError):
  """A bundle that cannot be written or used; `str(err)` is `"<path>: <reason>"`.

  A ValueError so that the commands' one user-error mapping (`animaljax.cli.run`) answers it in one line.
  """

  def __init__(self, path: str | os.PathLike, reason: str):
    self.path = os.fspath(path)
    self.reason = reason
    super().__init__(f"{self.path}: {reason}")


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


def _sha256(path: pathlib.Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      h.update(block)
  return h.hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# The serialised forward
# ----------------------------------------------------------------------------------------------------------------
def _time_multiple(predictor: Predictor) -> tuple[int, int] | None:
  """(hop, minimum multiple) for a symbolic time axis, or None where the model's time axis is fixed (AST)."""
  fe, enc = predictor.config.frontend, predictor.config.encoder
  hop = getattr(fe, "hop_length", None)
  if hop is None or not getattr(fe, "center", False) or not hasattr(enc, "variant"):
    return None
  from animaljax.predictor import _cnn_min_frames

  # The CNN checks `min(frames, mels) >= prod(pools)` in Python: with frames = 1 + k, `min` compares k + 1 with
  # the mel count, which is decidable only once k's lower bound puts frames strictly above it (k >= n_mels).
  return hop, max(_cnn_min_frames(enc) - 1, fe.n_mels, math.ceil(predictor.min_samples / hop))


def serialize_forward(predictor: Predictor) -> tuple[bytes, dict]:
  """`jax.export` of the predictor's Flax forward; returns (bytes, manifest entry).

  Batch is symbolic. Time is symbolic as `hop * k` (k >= a minimum) for CNNs on a centred log-mel, so windows
  of any multiple of the STFT hop run through it; otherwise (AST's fixed patch grid) it is fixed at
  `clip_samples`. The function is lowered for CPU, CUDA and TPU when possible, else for this backend only.
  """
  from jax import export as jax_export

  model = make_model(predictor.config)

  def forward(variables, wave):
    logits, out = model.apply(variables, wave, train=False)
    return logits, out["embedding"].astype(jnp.float32)

  spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), predictor.variables)
  attempts = []
  poly = _time_multiple(predictor)
  if poly is not None:
    hop, kmin = poly
    attempts.append(
      (f"b, {hop}*k", (f"k >= {kmin}",), {"time": "symbolic", "multiple_of": hop, "min_samples": hop * kmin})
    )
  n = predictor.clip_samples
  attempts.append((f"b, {n}", (), {"time": "fixed", "fixed_samples": n}))
  errors = []
  for dims, constraints, entry in attempts:
    for platforms in (_PLATFORMS, (jax.default_backend(),)):
      try:
        shape = jax_export.symbolic_shape(dims, constraints=constraints)
        exp = jax_export.export(jax.jit(forward), platforms=platforms)(
          spec, jax.ShapeDtypeStruct(shape, jnp.float32)
        )
        blob = bytes(exp.serialize())
      except Exception as err:  # any lowering failure: try the next, more constrained form
        errors.append(f"{dims} on {platforms}: {type(err).__name__}: {str(err).splitlines()[0]}")
        continue
      return blob, {"file": INFER, "batch": "symbolic", "platforms": list(exp.platforms), **entry}
  raise ExportError(
    INFER,
    "jax.export failed for every form tried (" + "; ".join(errors) + "): pass --no-jax-export to export the "
    "bundle without it (the Flax model then runs instead)",
  )


def exported_forward(blob: bytes, entry: dict) -> ExportedForward:
  """Deserialises `infer.jax_exported` into the callable the Predictor uses."""
  from jax import export as jax_export

  exp = jax_export.deserialize(bytearray(blob))
  if entry.get("time") == "symbolic":
    return ExportedForward(exp, min_samples=entry["min_samples"], multiple_of=entry["multiple_of"])
  return ExportedForward(exp, fixed_samples=int(entry["fixed_samples"]))


# ----------------------------------------------------------------------------------------------------------------
# TFLite (optional; needs TensorFlow)
# ----------------------------------------------------------------------------------------------------------------
def _split_forward(predictor: Predictor):
  """The predictor's Flax forward as (front end `wave -> features`, network `features -> concat(logits,
  embedding)`, whole `wave -> concat`), all with the parameters baked in and one model: the network is the
  whole forward with the classifier's front-end step (`Classifier._features`) intercepted to return the given
  features, so no part of the model is written twice."""
  import flax.linen as nn

  model = make_model(predictor.config)
  variables = predictor.variables
  n = predictor.clip_samples

  def whole(wave):
    logits, out = model.apply(variables, wave, train=False)
    return jnp.concatenate([logits, out["embedding"].astype(jnp.float32)], axis=-1)

  def front(wave):  # the classifier's own evaluation front end (dither off)
    return model.apply(variables, wave, False, method="_features")

  def network(features):
    hits = []

    def swap(next_fun, args, kwargs, context):
      if isinstance(context.module, Classifier) and context.method_name == "_features":
        hits.append(context.method_name)
        return features
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(swap):
      y = whole(jnp.zeros((1, n), jnp.float32))  # the wave never reaches a computation: it is swapped out
    if not hits:  # a renamed front-end step would otherwise silently give a network of a silent wave
      raise RuntimeError("Classifier._features was not called; cannot split the front end from the network")
    return y

  return front, network, whole


def write_tflite(predictor: Predictor, directory: pathlib.Path) -> dict:
  """TFLite models of one window in `directory`; returns their manifest entry.

  Three pipelines, each a list of files applied in order (`tflite_forward` chains them), all
  `wave (1, clip_samples) float32 -> (1, C + D)`: the logits and the embedding concatenated into one output so
  no output-name guessing is needed (`tflite_forward` splits them).
    float32: `model.tflite`.
    float16: `model_fp16.tflite` (float16 weights).
    int8:    `frontend.tflite` (float32, `wave -> features (1, frames, bins)`) then `model_int8.tflite`
             (`features -> (1, C + D)`, dynamic-range quantisation: int8 weights, float activations).
  The front end stays in float because dynamic-range quantisation also turns its constant DFT / mel matrices
  into int8: converted in one file, the log-mel was off by up to 79.5 dB (median 0.72 dB) and int8 kept only
  62.5% of the top-1 labels of the tests' tiny CNN6. Full-integer quantisation (int8 activations, which needs
  a representative dataset) is not offered: tried once on the tiny CNN6 calibrated on 32 synthetic training
  clips it kept 95.8% of the labels, below the 100% of dynamic range here.

  Measured against the Flax model (2026-11-22, 2-core shared CPU, TF 2.21.0, jax 0.10.2;
  `scripts/bench_tflite.py`, numbers in BENCHMARKS.md):
    tests' tiny CNN6 (1/8 width, 16 kHz, 1 s window, 24 held-out synthetic calls, max |logit| 17.2): top-1
      agreement float32 / float16 / int8 100% / 100% / 100% (one-file int8: 62.5%), logits max-abs error
      3.8e-6 / 9.1e-3 / 0.085; files 373 KB / 200 KB / 74 KB front end + 87 KB network (the float32 network
      alone, 298 KB, is 3.4x the int8 one).
    CNN14 at random weights (32 kHz, 10 s window, 527 classes, 8 synthetic calls, max |logit| 0.114): logits
      max-abs error 2.3e-7 / 7.3e-5 / 1.6e-3 (one-file int8: 0.081); files 323.1 MB / 161.6 MB / 0.14 MB front
      end + 80.9 MB network (4.0x smaller than float32); 62 ms a window in int8 vs 278 ms in float32;
      `write_tflite` takes 132 s.

  Route: `jax2tf.convert` of the Flax forward with the parameters baked in -> `tf.function` ->
  `tf.lite.TFLiteConverter`. A symbolic batch does not convert: the front end's framing lowers to a dynamic
  gather that the TFLite converter rejects ("'vhlo.dynamic_gather_v1' op is not part of the vhlo support
  yet").
  """
  import tensorflow as tf
  from jax.experimental import jax2tf

  front, network, whole = _split_forward(predictor)
  wave_shape = (1, predictor.clip_samples)
  feature_shape = tuple(jax.eval_shape(front, jax.ShapeDtypeStruct(wave_shape, jnp.float32)).shape)

  def convert(fn, shape, name: str, kind: str) -> bytes:
    spec = tf.TensorSpec(shape, tf.float32, name=name)
    tf_fn = tf.function(jax2tf.convert(fn), autograph=False, input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([tf_fn.get_concrete_function()], tf_fn)
    if kind != "float32":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: dynamic-range quantisation
    if kind == "float16":
      converter.target_spec.supported_types = [tf.float16]
    return converter.convert()

  (directory / TFLITE).write_bytes(convert(whole, wave_shape, "wave", "float32"))
  (directory / TFLITE_FP16).write_bytes(convert(whole, wave_shape, "wave", "float16"))
  (directory / TFLITE_FRONTEND).write_bytes(convert(front, wave_shape, "wave", "float32"))
  (directory / TFLITE_INT8).write_bytes(convert(network, feature_shape, "features", "int8"))
  return {
    "files": {"float32": [TFLITE], "float16": [TFLITE_FP16], "int8": [TFLITE_FRONTEND, TFLITE_INT8]},
    "input": list(wave_shape), "features": list(feature_shape), "output": "concat(logits[C], embedding[D])",
    "num_classes": predictor.config.num_classes, "embed_dim": predictor.embed_dim,
  }  # fmt: skip


def tflite_forward(path: str | os.PathLike | Sequence[str | os.PathLike], num_classes: int):
  """A TFLite pipeline of `write_tflite` as `waves (n, clip_samples) float32 -> (logits (n, C), embedding (n,
  D))`, one window per call. `path` is one file or the manifest's list of files for one kind (e.g. int8:
  `frontend.tflite`, `model_int8.tflite`), run in order, each one's output feeding the next one's input.
  Uses `ai_edge_litert` when installed, else TensorFlow's interpreter."""
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    import tensorflow as tf

    Interpreter = tf.lite.Interpreter  # noqa: N806
  paths = [path] if isinstance(path, str | os.PathLike) else list(path)
  if not paths:
    raise ValueError("tflite_forward needs at least one .tflite file")
  stages = []
  for p in paths:
    with warnings.catch_warnings():  # TensorFlow's interpreter warns it is deprecated in favour of LiteRT
      warnings.simplefilter("ignore")
      interpreter = Interpreter(model_path=os.fspath(p))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    stages.append((interpreter, inp["index"], out["index"]))

  def run(waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for w in np.asarray(waves, np.float32):
      x = w[None]
      for interpreter, inp, out in stages:
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        x = interpreter.get_tensor(out)
      rows.append(x[0])
    y = np.stack(rows)
    return y[:, :num_classes], y[:, num_classes:]

  return run


# ----------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------
def _source(path: pathlib.Path | None) -> dict:
  if path is None:
    return {"kind": "memory"}
  if (path / MANIFEST).is_file():
    return {"kind": "bundle", "path": str(path)}
  if (path / "config.json").is_file() and not (path / MODEL_JSON).is_file():
    from animaljax.predictor import _checkpoint_state_dir

    state = _checkpoint_state_dir(path)
    return {"kind": "workdir", "path": str(path), "checkpoint": str(state.parent.relative_to(path))}
  return {"kind": "model_dir", "path": str(path)}


def _write_bundle(
  predictor: Predictor, tmp: pathlib.Path, species: dict, carried: dict, *, jax_export: bool, tflite: bool
) -> dict:
  from safetensors.numpy import save_file

  from animaljax.fewshot.store import SpeciesStore

  tmp.mkdir(parents=True)
  meta = {
    **config_to_dict(predictor.config),
    "has_head": True,
    "labels": list(predictor.labels),
    "clip_seconds": predictor.clip_samples / predictor.sample_rate,
  }
  (tmp / MODEL_JSON).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
  save_file(flatten(predictor.variables), str(tmp / PARAMS), metadata={"format": FORMAT})
  (tmp / PARAMS).chmod(0o644)  # safetensors writes 0600; a bundle is meant to be shared and served

  inference = None
  if jax_export:
    blob, inference = serialize_forward(predictor)
    (tmp / INFER).write_bytes(blob)
  tflite_entry = write_tflite(predictor, tmp) if tflite else None

  metrics = None
  src = predictor.path
  for name in REPORT_FILES if src is not None else ():
    if (src / name).is_file():
      shutil.copyfile(src / name, tmp / name)
  if (tmp / "metrics.json").is_file():
    full = json.loads((tmp / "metrics.json").read_text())
    metrics = {k: full[k] for k in _METRIC_KEYS if k in full}

  # The species store: the carried species (`carried_species`) re-written through the store's own API.
  store = SpeciesStore(tmp, embed_dim=predictor.embed_dim, fingerprint=predictor.fingerprint)
  with store.edit() as current:
    current.update(species)

  files = {}
  for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
    rel = path.relative_to(tmp).as_posix()
    if rel.split("/")[0] != SPECIES:
      files[rel] = {"size": path.stat().st_size, "sha256": _sha256(path)}
  manifest = {
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "animaljax_version": animaljax_version(),
    "jax_version": jax.__version__,
    "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "source": _source(src),
    "labels": list(predictor.labels),
    "sample_rate": predictor.sample_rate,
    "clip_samples": predictor.clip_samples,
    "embed_dim": predictor.embed_dim,
    "fingerprint": predictor.fingerprint,
    "metrics": metrics,
    "inference": inference,
    "tflite": tflite_entry,
    "species": {"dir": SPECIES, "enrolled": sorted(species), **carried},
    "files": files,
  }
  (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
  return manifest


def bundle_manifest(directory: str | os.PathLike) -> dict | None:
  """The manifest of a folder holding this project's bundle (a `manifest.json` of format FORMAT, as
  `export_bundle` writes it), else None. Files are not checked: a damaged bundle is still a bundle."""
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


def _foreign_entries(root: pathlib.Path, manifest: dict) -> list[str]:
  """Paths under a bundle folder that no export wrote: neither manifest.json, a file it lists, nor part of
  the species store. Links are listed too (never followed)."""
  ours = {MANIFEST, *manifest["files"]}
  foreign = []
  for dirpath, dirnames, filenames in os.walk(root):
    base = pathlib.Path(dirpath)
    links = [d for d in dirnames if (base / d).is_symlink()]  # os.walk does not descend into them
    for name in sorted(filenames + links):
      rel = (base / name).relative_to(root).as_posix()
      if rel not in ours and rel.split("/")[0] != SPECIES:
        foreign.append(rel)
  return foreign


def check_out(out: str | os.PathLike, *, overwrite: bool) -> dict | None:
  """Refuses an `--out` that `export_bundle` may not write, before any work.

  Allowed: a path that does not exist, an empty folder, and (with `overwrite`) a bundle folder that holds
  nothing but what an export and its species store wrote. Anything else (a file, a folder of the user's) is
  refused, named, and without suggesting --overwrite: replacing it would destroy data export did not create.
  Returns:
    The manifest of the bundle being replaced, else None.
  Raises:
    ExportError: `out` may not be written.
  """
  out = pathlib.Path(out).absolute()
  if not out.exists() and not out.is_symlink():
    return None
  if not out.is_dir():
    raise ExportError(out, "exists and is not a folder; export writes a bundle folder: choose another --out")
  manifest = bundle_manifest(out)
  if manifest is None:
    if not any(out.iterdir()):
      return None  # an empty folder: nothing to lose
    raise ExportError(
      out,
      "exists and is not an animaljax bundle (no bundle manifest.json): export never replaces other folders; "
      "choose a new or empty folder for --out",
    )
  if not overwrite:
    raise ExportError(out, "already exists: it holds a bundle (pass --overwrite to replace it)")
  foreign = _foreign_entries(out, manifest)
  if foreign:
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    raise ExportError(
      out,
      f"holds {len(foreign)} file(s) no export wrote ({shown}): move them out of the bundle folder, or choose "
      "another --out",
    )
  return manifest


def carried_species(
  predictor: Predictor, folders: Sequence[pathlib.Path], *, drop_species: bool = False
) -> tuple[dict, dict]:
  """The enrolled species a new bundle of `predictor` starts with: those of the species stores in `folders`
  (the source model's, then the bundle being replaced), never dropped silently.

  A store written for this very embedding (same embed_dim and fingerprint) is copied as is; any other one is
  re-embedded from its stored source clips by `predictor` (`fewshot.enrol.reembed`: names and user thresholds
  kept, leave-one-out ones recalibrated). A species enrolled in two of the folders with the same clips is
  kept once (the first folder's).
  Args:
    drop_species: leave out the species that cannot be carried (clips missing or unreadable, a damaged
      store, a name now among the model's classes, one name with other clips in two folders) instead of
      refusing.
  Returns:
    (species by name, manifest entry `{"reembedded": [names], "dropped": [{"name", "store", "reason"}]}`).
  Raises:
    ExportError naming every species that cannot be carried and what is wrong, unless `drop_species`.
  """
  from animaljax.fewshot.enrol import reembed
  from animaljax.fewshot.store import SpeciesStore, StoreError, same_name

  species: dict = {}
  reembedded, dropped = [], []

  def drop(name: str | None, store: SpeciesStore, reason: str) -> None:
    dropped.append({"name": name, "store": str(store.directory), "reason": reason})

  for folder in folders:
    store = SpeciesStore(folder, embed_dim=1)  # the real size is what the store records
    try:
      recorded = store.recorded()
      if recorded is None:
        continue
      dim, fingerprint = recorded
      store = SpeciesStore(folder, embed_dim=dim, fingerprint=fingerprint)
      found = store.load()
    except StoreError as err:
      drop(None, store, str(err))  # a damaged store: none of its species can be read
      continue
    same = dim == predictor.embed_dim and bool(fingerprint) and fingerprint == predictor.fingerprint
    for name, s in found.items():
      known = next((n for n in species if same_name(n, name)), None)
      if known is not None:
        if species[known].files != s.files:
          drop(name, store, f"also enrolled as {known!r} with other clips in {folders[0]}")
        continue
      if any(same_name(name, label) for label in predictor.labels):
        drop(name, store, "is now one of the model's own classes")
        continue
      if not same:
        try:
          s = reembed(predictor, s)
        except StoreError as err:
          drop(name, store, str(err))
          continue
        reembedded.append(name)
      species[name] = s
  if dropped and not drop_species:
    what = "; ".join(
      f"{d['store']}: {d['reason']}" if d["name"] is None else f"{d['name']!r} ({d['store']}): {d['reason']}"
      for d in dropped
    )
    raise ExportError(
      dropped[0]["store"],
      f"cannot carry {len(dropped)} enrolled species over to the new bundle: {what}. Restore what is missing "
      "and export again, or pass --drop-species to export without them (re-enrol them afterwards with "
      "python -m animaljax.enroll add)",
    )
  return species, {"reembedded": reembedded, "dropped": dropped}


def export_bundle(
  model: str | os.PathLike | Predictor,
  out: str | os.PathLike,
  *,
  overwrite: bool = False,
  jax_export: bool = True,
  tflite: bool = False,
  drop_species: bool = False,
) -> pathlib.Path:
  """Writes the bundle of `model` (a Predictor, training workdir, model dir or bundle) to `out`.

  Enrolled species are carried over (`carried_species`): those of the source, and those of the bundle being
  replaced, re-embedded from their clips where the new model's embedding differs.
  Args:
    overwrite: replace `out` if it is a bundle (only once the new bundle is complete; see `check_out`).
    jax_export: store `infer.jax_exported`; tflite: also store `model.tflite`.
    drop_species: leave out the enrolled species that cannot be carried over instead of refusing (listed
      in the manifest's `species.dropped`).
  Returns:
    The bundle's absolute path.
  Raises:
    ExportError: `out` may not be written (`check_out`), is the source folder itself, or enrolled species
      cannot be carried over.
  """
  out = pathlib.Path(out).absolute()
  source = model.path if isinstance(model, Predictor) else pathlib.Path(model).absolute()
  if source is not None and any(
    o == s or o in s.parents for o in (out, out.resolve()) for s in (source, source.resolve())
  ):
    raise ExportError(out, "the bundle cannot be written over (or around) the model it is exported from")
  replacing = check_out(out, overwrite=overwrite) is not None
  predictor = model if isinstance(model, Predictor) else Predictor.load(model)
  folders = ([predictor.path] if predictor.path is not None else []) + ([out] if replacing else [])
  species, carried = carried_species(predictor, folders, drop_species=drop_species)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    _write_bundle(predictor, tmp, species, carried, jax_export=jax_export, tflite=tflite)
    check_out(out, overwrite=overwrite)  # again: the folder may have changed during a long export
    if out.exists():
      old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
      out.rename(old)
      tmp.rename(out)
      shutil.rmtree(old, ignore_errors=True)
    else:
      tmp.rename(out)
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
  return out


# ----------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------
def read_manifest(directory: str | os.PathLike, *, verify: bool = True) -> dict:
  """The bundle's manifest, after checking its format version and every listed file (size, and sha256 when
  `verify`). ExportError naming the file and the reason otherwise."""
  root = pathlib.Path(directory).absolute()
  path = root / MANIFEST
  if not root.is_dir():
    raise ExportError(root, "no such bundle directory")
  if not path.is_file():
    raise ExportError(path, "missing: not an animaljax bundle (export one with python -m animaljax.export)")
  try:
    manifest = json.loads(path.read_text(encoding="utf-8"))
  except (json.JSONDecodeError, UnicodeDecodeError) as err:
    raise ExportError(path, f"damaged manifest ({err})") from err
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
    raise ExportError(path, f"not an animaljax bundle manifest (format {found!r})")
  version = manifest.get("format_version")
  if not isinstance(version, int) or version < 1:
    raise ExportError(path, f"invalid format_version {version!r}")
  if version > FORMAT_VERSION:
    raise ExportError(
      path,
      f"format_version {version} was written by a newer animaljax ({manifest.get('animaljax_version')}); "
      f"this version ({animaljax_version()}) reads format_version <= {FORMAT_VERSION}: upgrade animaljax",
    )
  if not isinstance(manifest.get("files"), dict):
    raise ExportError(path, "lists no files")
  for rel, info in manifest["files"].items():
    f = root / rel
    if not f.is_file():
      raise ExportError(f, "missing from the bundle (listed in manifest.json)")
    size = f.stat().st_size
    if size != info["size"]:
      raise ExportError(f, f"truncated or modified: {size} bytes, manifest.json says {info['size']}")
    if verify and _sha256(f) != info["sha256"]:
      raise ExportError(f, "corrupted: sha256 differs from manifest.json")
  for required in (MODEL_JSON, PARAMS):
    if required not in manifest.get("files", {}):
      raise ExportError(path, f"lists no {required}")
  return manifest


def load(directory: str | os.PathLike, *, use_exported: bool = True, verify: bool = True) -> Predictor:
  """The Predictor of a bundle (what the predict/embed CLIs, the demo and Python users call).

  Args:
    use_exported: run `infer.jax_exported` when present and lowered for this platform (else the Flax model).
    verify: check every file's sha256 (sizes are always checked).
  Raises:
    ExportError: not a bundle, a missing/truncated/corrupted file, a newer format_version.
  """
  from safetensors import SafetensorError
  from safetensors.numpy import load_file

  root = pathlib.Path(directory).absolute()
  manifest = read_manifest(root, verify=verify)
  try:
    meta = json.loads((root / MODEL_JSON).read_text(encoding="utf-8"))
    config = config_from_dict(meta)
  except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
    raise ExportError(root / MODEL_JSON, f"invalid model description ({err})") from err
  try:
    variables = unflatten(load_file(str(root / PARAMS)))
  except (SafetensorError, OSError, ValueError) as err:
    raise ExportError(root / PARAMS, f"unreadable parameters ({err})") from err
  if "params" not in variables:
    raise ExportError(root / PARAMS, "holds no 'params/...' tensors")

  exported = None
  entry = manifest.get("inference")
  if use_exported and entry:
    if entry.get("file") not in manifest["files"]:  # only checksummed files are ever read
      raise ExportError(
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
        exported = exported_forward(blob, entry)
      except Exception as err:  # e.g. a serialisation version this jax cannot read
        raise ExportError(root / entry["file"], f"cannot deserialise ({type(err).__name__}: {err})") from err
  try:
    return Predictor(
      config, variables, meta["labels"], clip_seconds=meta.get("clip_seconds"), path=root, exported=exported
    )
  except ValueError as err:
    raise ExportError(root, str(err)) from err


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.export", description=__doc__.split("\n")[0])
  src = parser.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="training workdir (config.json + checkpoints; the best one is exported)")
  src.add_argument("--model", help="converted model dir (model.json + variables/) or another bundle")
  parser.add_argument("--out", required=True, help="bundle directory to create (a new or empty folder)")
  parser.add_argument(
    "--overwrite", action="store_true", help="replace --out if it is a bundle (never any other folder)"
  )
  parser.add_argument(
    "--drop-species",
    action="store_true",
    help="export without the enrolled species that cannot be carried over (their clips are missing)",
  )
  parser.add_argument("--no-jax-export", action="store_true", help="skip infer.jax_exported")
  parser.add_argument(
    "--tflite", action="store_true", help="also write TFLite models (float32, float16, int8)"
  )
  return parser


def run(args: argparse.Namespace) -> int:
  """Exports as the parsed arguments say and prints what was written; returns the exit status."""
  source = args.workdir or args.model
  if args.workdir and not (pathlib.Path(args.workdir) / "config.json").is_file():
    raise ExportError(args.workdir, "not a training workdir (no config.json)")
  out = export_bundle(
    source, args.out, overwrite=args.overwrite, jax_export=not args.no_jax_export, tflite=args.tflite,
    drop_species=args.drop_species,
  )  # fmt: skip
  manifest = read_manifest(out, verify=False)
  total = sum(f["size"] for f in manifest["files"].values())
  inference = manifest["inference"]
  how = "none" if inference is None else f"{inference['time']} time, {'/'.join(inference['platforms'])}"
  print(
    f"exported {source} -> {out} ({len(manifest['files'])} files, {total / 1e6:.1f} MB; jax.export: {how})"
  )
  species = manifest["species"]
  if species["enrolled"]:
    reembedded = species.get("reembedded", [])
    again = f", {len(reembedded)} re-embedded from their clips" if reembedded else ""
    print(f"carried {len(species['enrolled'])} enrolled species{again}: {', '.join(species['enrolled'])}")
  for d in species.get("dropped", []):
    what = "every species of the store" if d["name"] is None else f"enrolled species {d['name']!r}"
    print(f"dropped {what} ({d['store']}): {d['reason']}")
  return 0


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  return cli.run(lambda: run(args), argv)


if __name__ == "__main__":
  sys.exit(main())
