"""The one place that knows where a model can come from: a bundle, a converted model dir or a training workdir.

`load_predictor(path)` gives a `Predictor` of any of the three:
  * an exported bundle (`manifest.json`; `bundle.read`): its serialised `jax.export` forward runs instead of
    tracing the Flax model;
  * a converted model dir (`python -m animaljax.convert` / `models.pretrained.save_converted`): `model.json`
    (config + labels) + orbax `variables/`;
  * a training workdir (`training.workdir`): `config.json` + the best checkpoint, else the newest periodic one;
    only params and BatchNorm statistics are restored (not the optimizer).
`export_model(path or Predictor, out)` writes the bundle of any of them (`bundle.write.export_bundle`).
"""

from __future__ import annotations

import os
import pathlib

import animaljax.training.workdir as run_folder
from animaljax.bundle.format import MANIFEST
from animaljax.bundle.read import read_bundle
from animaljax.bundle.write import check_export, export_bundle
from animaljax.inference.predictor import NATIVE, Predictor
from animaljax.models.serialize import MODEL_JSON


def load_predictor(path: str | os.PathLike, *, use_exported: bool = True, verify: bool = True) -> Predictor:
  """The Predictor of a bundle (`manifest.json`), a converted model dir (`model.json` + `variables/`) or a
  training workdir (`config.json` + checkpoints).

  Args:
    use_exported, verify: for a bundle, as `load_bundle`.
  Raises:
    FileNotFoundError: none of the three, or a workdir without a finished checkpoint.
    BundleError: a damaged bundle (see `bundle.read.read_bundle`).
  """
  root = pathlib.Path(path).absolute()
  if (root / MANIFEST).is_file():
    return load_bundle(root, use_exported=use_exported, verify=verify)
  if (root / MODEL_JSON).is_file():
    return _load_converted(root)
  if (root / run_folder.CONFIG_JSON).is_file():
    return _load_workdir(root)
  raise FileNotFoundError(
    f"{root} is neither a model dir (no model.json) nor a training workdir (no config.json)"
  )


def load_bundle(path: str | os.PathLike, *, use_exported: bool = True, verify: bool = True) -> Predictor:
  """The Predictor of an exported bundle (what the demo serves).

  Args:
    use_exported: run `infer.jax_exported` when present and lowered for this platform (else the Flax model).
    verify: check every file's sha256 (sizes are always checked).
  Raises:
    BundleError: not a bundle, a missing/truncated/corrupted file, a newer format_version, a model.json whose
      labels do not fit the model.
  """
  from animaljax.bundle.format import BundleError

  b = read_bundle(path, use_exported=use_exported, verify=verify)
  try:
    return Predictor(
      b.config, b.variables, b.labels, clip_seconds=b.clip_seconds, path=b.path, exported=b.exported,
      short_clips=b.short_clips, multi_label=b.multi_label, thresholds=b.thresholds,
      source={"kind": "bundle", "path": str(b.path)},
    )  # fmt: skip
  except ValueError as err:
    raise BundleError(b.path, str(err)) from err


def _load_converted(root: pathlib.Path) -> Predictor:
  from animaljax.models.pretrained import load_converted, read_metadata

  meta = read_metadata(root)
  config, variables = load_converted(root)
  return Predictor(
    config, variables, meta["labels"], clip_seconds=meta.get("clip_seconds"), path=root,
    short_clips=meta.get("short_clips", NATIVE),  # a converted model's training input rule is not ours
    multi_label=bool(meta.get("multi_label", False)), thresholds=meta.get("thresholds"),
    source={"kind": "model_dir", "path": str(root)},
  )  # fmt: skip


def _load_workdir(root: pathlib.Path) -> Predictor:
  c = run_folder.read_config(root)
  variables, state_dir = run_folder.read_variables(root)
  num_classes = _head_size(variables["params"])
  source = {"kind": "workdir", "path": str(root), "checkpoint": str(state_dir.parent.relative_to(root))}
  multi_label, thresholds = run_folder.read_outputs(root, state_dir)
  return Predictor(
    run_folder.model_config(root, num_classes), variables, run_folder.read_labels(root, num_classes),
    clip_seconds=float(c.data.clip_seconds), path=root, source=source, short_clips=c.data.short_clips,
    multi_label=multi_label, thresholds=thresholds,
  )  # fmt: skip


def _head_size(params: dict) -> int:
  """The number of classes: the output width of the head's kernel, for every head (`head/kernel`: clip and
  decision_max; `head/dense/kernel`: AST; `head/cla/kernel` and `head/att/kernel`: decision_att)."""
  head = params["head"]
  for path in (("kernel",), ("dense", "kernel"), ("cla", "kernel")):
    node = head
    for key in path:
      node = node.get(key) if hasattr(node, "get") else None
      if node is None:
        break
    if node is not None:
      return int(node.shape[-1])
  raise ValueError(f"cannot tell the number of classes from the head's parameters {sorted(head)}")


def export_model(
  model: str | os.PathLike | Predictor,
  out: str | os.PathLike,
  *,
  overwrite: bool = False,
  jax_export: bool = True,
  tflite: bool = False,
  drop_species: bool = False,
  drop_heads: bool = False,
) -> pathlib.Path:
  """Writes the bundle of `model` (a training workdir, converted model dir, bundle or Predictor) to `out`.

  `out` is checked (`bundle.write.check_export`) before the model is loaded; the rest, enrolled species
  carried over included (and attached heads: `bundle.write.carried_heads`), is `bundle.write.export_bundle`
  (same arguments).
  Returns:
    The bundle's absolute path.
  Raises:
    BundleError: `out` may not be written, or enrolled species cannot be carried over. FileNotFoundError: no
    model at the path.
  """
  if not isinstance(model, Predictor):
    check_export(out, model, overwrite=overwrite)
    model = load_predictor(model)
  return export_bundle(
    model, out, overwrite=overwrite, jax_export=jax_export, tflite=tflite, drop_species=drop_species,
    drop_heads=drop_heads,
  )  # fmt: skip
