"""Writing a bundle: `export_bundle(model, out)` builds it in a hidden sibling folder and renames it into place.

The enrolled species of the model's folder, and of the bundle being replaced, are carried over
(`carried_species`; re-embedded from their clips where the new embedding differs), never dropped silently; so
are their background clips (`carried_background`: a bundle ships its default background set), against which
the species are then recalibrated. Attached linear heads (`fewshot.heads`) are carried over as they are when
trained on this very model's embeddings (`carried_heads`); a head cannot be re-embedded, so any other is refused
unless dropped.
Nothing of the user's is replaced: `out` may be a new or empty folder, or (with `overwrite`) a bundle holding
only what an export and the species store wrote (`check_out`).
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import shutil
import uuid
from collections.abc import Sequence
from typing import Protocol

import jax
import numpy as np

from animaljax.bundle.exported import serialize_forward
from animaljax.bundle.format import (
  EDITABLE,
  FORMAT,
  FORMAT_VERSION,
  HEADS,
  INFER,
  MANIFEST,
  METRIC_KEYS,
  PARAMS,
  REPORT_FILES,
  SPECIES,
  BundleError,
  Model,
  animaljax_version,
  bundle_manifest,
  flatten,
  foreign_entries,
  sha256,
)
from animaljax.bundle.tflite import write_tflite
from animaljax.fewshot import heads as fewshot_heads
from animaljax.fewshot import linear_head
from animaljax.fewshot.background import reembed_background, set_background
from animaljax.fewshot.enrol import EmbeddingModel, reembed
from animaljax.fewshot.store import Background, SpeciesStore, StoreError, same_name
from animaljax.models.serialize import model_record, write_model_record


class ExportModel(Model, EmbeddingModel, Protocol):
  """A model a bundle can be written from: its weights (`bundle.format.Model`) and, to re-embed enrolled
  species for it, clip reading and embedding (`fewshot.enrol.EmbeddingModel`). `inference.Predictor` is one."""


def check_out(out: str | os.PathLike, *, overwrite: bool) -> dict | None:
  """Refuses an `--out` that `export_bundle` may not write, before any work.

  Allowed: a path that does not exist, an empty folder, and (with `overwrite`) a bundle folder that holds
  nothing but what an export and its species store wrote. Anything else (a file, a folder of the user's) is
  refused, named, and without suggesting --overwrite: replacing it would destroy data export did not create.
  Returns:
    The manifest of the bundle being replaced, else None.
  Raises:
    BundleError: `out` may not be written.
  """
  out = pathlib.Path(out).absolute()
  if not out.exists() and not out.is_symlink():
    return None
  if not out.is_dir():
    raise BundleError(out, "exists and is not a folder; export writes a bundle folder: choose another --out")
  manifest = bundle_manifest(out)
  if manifest is None:
    if not any(out.iterdir()):
      return None  # an empty folder: nothing to lose
    raise BundleError(
      out,
      "exists and is not an animaljax bundle (no bundle manifest.json): export never replaces other folders; "
      "choose a new or empty folder for --out",
    )
  if not overwrite:
    raise BundleError(out, "already exists: it holds a bundle (pass --overwrite to replace it)")
  foreign = foreign_entries(out, manifest)
  if foreign:
    shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
    raise BundleError(
      out,
      f"holds {len(foreign)} file(s) no export wrote ({shown}): move them out of the bundle folder, or choose "
      "another --out",
    )
  return manifest


def carried_species(
  model: ExportModel, folders: Sequence[pathlib.Path], *, drop_species: bool = False
) -> tuple[dict, dict]:
  """The enrolled species a new bundle of `model` starts with: those of the species stores in `folders`
  (the source model's, then the bundle being replaced), never dropped silently.

  A store written for this very embedding (same embed_dim and fingerprint) is copied as is; any other one is
  re-embedded from its stored source clips by `model` (`fewshot.enrol.reembed`: names and user thresholds
  kept, leave-one-out ones recalibrated). A species enrolled in two of the folders with the same clips is
  kept once (the first folder's).
  Args:
    drop_species: leave out the species that cannot be carried (clips missing or unreadable, a damaged
      store, a name now among the model's classes, one name with other clips in two folders) instead of
      refusing.
  Returns:
    (species by name, manifest entry `{"reembedded": [names], "dropped": [{"name", "store", "reason"}]}`).
  Raises:
    BundleError naming every species that cannot be carried and what is wrong, unless `drop_species`.
  """
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
    same = dim == model.embed_dim and bool(fingerprint) and fingerprint == model.fingerprint
    for name, s in found.items():
      known = next((n for n in species if same_name(n, name)), None)
      if known is not None:
        if species[known].files != s.files:
          drop(name, store, f"also enrolled as {known!r} with other clips in {folders[0]}")
        continue
      if any(same_name(name, label) for label in model.labels):
        drop(name, store, "is now one of the model's own classes")
        continue
      if not same:
        try:
          s = reembed(model, s)
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
    raise BundleError(
      dropped[0]["store"],
      f"cannot carry {len(dropped)} enrolled species over to the new bundle: {what}. Restore what is missing "
      "and export again, or pass --drop-species to export without them (re-enrol them afterwards with "
      "python -m animaljax.enroll add)",
    )
  return species, {"reembedded": reembedded, "dropped": dropped}


def carried_background(
  model: ExportModel, folders: Sequence[pathlib.Path], *, drop_species: bool = False
) -> tuple[Background | None, dict]:
  """The background clips a new bundle of `model` starts with: those of the stores in `folders` (as
  `carried_species`), a clip (same file) kept once, the first folder's first. A store written for this very
  embedding is copied as is; any other one is re-embedded from its clips
  (`fewshot.background.reembed_background`).

  Args:
    drop_species: leave out the background clips that cannot be carried (a store's whole background when one
      of its clips is missing or unreadable, or the store is damaged) instead of refusing.
  Returns:
    (the background, None if none; the manifest entry
    `{"clips", "reembedded", "dropped": [{"store", "reason"}]}`).
  Raises:
    BundleError naming what cannot be carried, unless `drop_species`.
  """
  parts: list[Background] = []
  reembedded, dropped = False, []
  for folder in folders:
    store = SpeciesStore(folder, embed_dim=1)  # the real size is what the store records
    try:
      recorded = store.recorded()
      if recorded is None:
        continue
      dim, fingerprint = recorded
      found = SpeciesStore(folder, embed_dim=dim, fingerprint=fingerprint).load_background()
      if found is None:
        continue
      if not (dim == model.embed_dim and bool(fingerprint) and fingerprint == model.fingerprint):
        found, reembedded = reembed_background(model, found), True
    except StoreError as err:
      dropped.append({"store": str(store.directory), "reason": str(err)})
      continue
    parts.append(found)
  if dropped and not drop_species:
    what = "; ".join(f"{d['store']}: {d['reason']}" for d in dropped)
    raise BundleError(
      dropped[0]["store"],
      f"cannot carry the background clips over to the new bundle: {what}. Restore what is missing and export "
      "again, or pass --drop-species to export without them (add them again afterwards with "
      "python -m animaljax.enroll background add)",
    )
  clips = {}  # file -> (added, rows): the first store's copy of a clip held by several
  for part in parts:
    for f, a, r in zip(part.files, part.added, part.rows(), strict=True):
      clips.setdefault(f, (a, r))
  background = None
  if clips:
    background = Background(
      embeddings=np.concatenate([r for _, r in clips.values()]), files=list(clips),
      added=[a for a, _ in clips.values()], windows=[len(r) for _, r in clips.values()],
    )  # fmt: skip
  return background, {"clips": len(clips), "reembedded": reembedded, "dropped": dropped}


def check_export(out: str | os.PathLike, source: str | os.PathLike | None, *, overwrite: bool) -> bool:
  """`check_out`, and refuses an `out` that is (or holds) the folder the model is exported from. Cheap: run it
  before loading the model. Returns whether `out` is a bundle that will be replaced. Raises BundleError."""
  out = pathlib.Path(out).absolute()
  if source is not None:
    source = pathlib.Path(source).absolute()
    if any(o == s or o in s.parents for o in (out, out.resolve()) for s in (source, source.resolve())):
      raise BundleError(out, "the bundle cannot be written over (or around) the model it is exported from")
  return check_out(out, overwrite=overwrite) is not None


def carried_heads(
  model: ExportModel, folders: Sequence[pathlib.Path], *, drop_heads: bool = False
) -> tuple[dict, list]:
  """The attached heads a new bundle of `model` starts with: those under `heads/` of `folders` (the source
  model's, then the bundle being replaced; a name in both: the first's) trained on `model`'s embeddings
  (same fingerprint). Returns (heads by name, the dropped ones `[{"name", "folder", "reason"}]`).
  Raises:
    BundleError naming every head that cannot be carried (damaged, or of other weights), unless `drop_heads`.
  """
  heads: dict = {}
  dropped = []
  for folder in folders:
    for name, path, head, why in fewshot_heads.read_folder(folder):
      if name in heads:
        continue
      if head is not None:
        try:
          fewshot_heads.check_fits(head, model, str(path))
          heads[name] = head
          continue
        except fewshot_heads.HeadError as err:
          why = str(err).removeprefix(f"{path}: ")
      dropped.append({"name": name, "folder": str(path), "reason": why})
  if dropped and not drop_heads:
    what = "; ".join(f"{d['folder']}: {d['reason']}" for d in dropped)
    raise BundleError(
      model.path or pathlib.Path("."),
      f"cannot carry {len(dropped)} attached head(s) over to the new bundle: {what}. Train them again on this "
      "model's embeddings, or pass --drop-heads to export without them",
    )
  return heads, dropped


def export_bundle(
  model: ExportModel,
  out: str | os.PathLike,
  *,
  overwrite: bool = False,
  jax_export: bool = True,
  tflite: bool = False,
  drop_species: bool = False,
  drop_heads: bool = False,
) -> pathlib.Path:
  """Writes the bundle of `model` (an `inference.Predictor`, or anything with its attributes: `ExportModel`)
  to `out`. A path is exported by `inference.load.export_model`.

  Enrolled species are carried over (`carried_species`): those of the source, and those of the bundle being
  replaced, re-embedded from their clips where the new model's embedding differs; so are background clips
  (`carried_background`), and the species are recalibrated against them.
  Args:
    overwrite: replace `out` if it is a bundle (only once the new bundle is complete; see `check_out`).
    jax_export: store `infer.jax_exported`; tflite: also store the TFLite pipelines (`bundle.tflite`).
    drop_species: leave out the enrolled species and background clips that cannot be carried over instead of
      refusing (listed in the manifest's `species.dropped` and `species.background.dropped`).
    drop_heads: leave out the attached heads that cannot be carried over (`carried_heads`) instead of refusing.
  Returns:
    The bundle's absolute path.
  Raises:
    BundleError: `out` may not be written (`check_export`), or enrolled species cannot be carried over.
  """
  out = pathlib.Path(out).absolute()
  replacing = check_export(out, model.path, overwrite=overwrite)
  folders = ([model.path] if model.path is not None else []) + ([out] if replacing else [])
  species, carried = carried_species(model, folders, drop_species=drop_species)
  background, carried_bg = carried_background(model, folders, drop_species=drop_species)
  heads, carried_h = carried_heads(model, folders, drop_heads=drop_heads)
  if background is not None or carried_bg["dropped"]:
    carried = {**carried, "background": carried_bg}
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    _write_bundle(model, tmp, species, carried, jax_export=jax_export, tflite=tflite, background=background,
                  heads=(heads, carried_h))  # fmt: skip
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


def _write_bundle(
  model: ExportModel, tmp: pathlib.Path, species: dict, carried: dict, *, jax_export: bool, tflite: bool,
  background: Background | None = None, heads: tuple[dict, list] = ({}, []),
) -> dict:  # fmt: skip
  from safetensors.numpy import save_file

  tmp.mkdir(parents=True)
  clip_seconds = model.clip_samples / model.sample_rate
  write_model_record(
    tmp,
    model_record(
      model.config,
      model.labels,
      clip_seconds=clip_seconds,
      short_clips=model.short_clips,
      multi_label=model.multi_label,
      thresholds=list(model.thresholds) if model.multi_label else None,
    ),  # fmt: skip
  )
  save_file(flatten(model.variables), str(tmp / PARAMS), metadata={"format": FORMAT})
  (tmp / PARAMS).chmod(0o644)  # safetensors writes 0600; a bundle is meant to be shared and served

  inference = None
  if jax_export:
    blob, inference = serialize_forward(model)
    (tmp / INFER).write_bytes(blob)
  tflite_entry = write_tflite(model, tmp) if tflite else None

  metrics = None
  src = model.path
  for name in REPORT_FILES if src is not None else ():
    if (src / name).is_file():
      shutil.copyfile(src / name, tmp / name)
  if (tmp / "metrics.json").is_file():
    full = json.loads((tmp / "metrics.json").read_text())
    metrics = {k: full[k] for k in METRIC_KEYS if k in full}

  # The species store: the carried species (`carried_species`) and background (`carried_background`)
  # re-written through the store's own API; with a background, every species is calibrated against it.
  store = SpeciesStore(tmp, embed_dim=model.embed_dim, fingerprint=model.fingerprint)
  with store.edit_contents() as contents:
    contents.species.update(species)
    if "background" in carried:  # a background was carried (or dropped): calibrate against what is left
      set_background(contents, background)

  for name, head in heads[0].items():  # editable like the species store: not checksummed
    linear_head.save(head, tmp / HEADS / name)

  files = {}
  for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
    rel = path.relative_to(tmp).as_posix()
    if rel.split("/")[0] not in EDITABLE:
      files[rel] = {"size": path.stat().st_size, "sha256": sha256(path)}
  manifest = {
    "format": FORMAT,
    "format_version": FORMAT_VERSION,
    "animaljax_version": animaljax_version(),
    "jax_version": jax.__version__,
    "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "source": model.source or {"kind": "memory"},
    "labels": list(model.labels),
    "sample_rate": model.sample_rate,
    "clip_samples": model.clip_samples,
    "embed_dim": model.embed_dim,
    "fingerprint": model.fingerprint,
    "metrics": metrics,
    "inference": inference,
    "tflite": tflite_entry,
    "species": {"dir": SPECIES, "enrolled": sorted(species), **carried},
    "heads": {"dir": HEADS, "attached": sorted(heads[0]), "dropped": heads[1]},
    "files": files,
  }
  (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
  return manifest
