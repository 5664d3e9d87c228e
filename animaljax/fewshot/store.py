"""The species store: enrolled species kept beside a model, saved atomically, safe under concurrent writers.

Layout of `<model dir>/species/`:
  species.json           {"format", "embed_dim", "fingerprint", "embeddings": <npz file name>, "species": [
                           {"name", "key", "created", "updated", "threshold", "threshold_source", ["margin"],
                            "clips": [{"file", "added"}, ...]}, ...],
                          ["background": {"updated", "clips": [{"file", "added", "windows"}, ...]}]}
  embeddings-<gen>.npz   per species `<key>/embeddings` (K, D) float32, the raw embeddings of its clips (the
                         prototype derives from them: `fewshot.prototypes`; stores written before also hold an
                         unread `<key>/prototype`), and `background/embeddings` (N, D) float32: one row per
                         window of every background clip, in clip order
  .lock                  the `fcntl.flock` lock file (shared for reads, exclusive for read-modify-write)

Atomicity: a save writes a *new* npz under a fresh generation name, then replaces `species.json` (the single
commit point, written to a temporary file and `os.replace`d), then deletes the old npz. A crash at any point
leaves either the old json pointing at the old npz or the new json pointing at the new one, never a mix; the
leftovers (temporary files, an unreferenced npz) are swept by the next save. Arrays are read with
`np.load(allow_pickle=False)`: the store never unpickles anything.

Background clips (`Background`: wind, rain, the site's hum: what no species is) are optional: a store
without them has no "background" entry and reads, ranks and saves exactly as before, and the format number is
unchanged (readers that predate them ignore the entry). Reads attach the background's embeddings to every species
(`Species.background`), so `fewshot.enrol.rank` and `detect` apply the background rule with the species alone.

numpy only (no jax): the store is cheap to import, and other processes (a demo, a CLI) can read it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import pathlib
import uuid
import warnings
from collections.abc import Iterator

import numpy as np

from animaljax.data import atomic
from animaljax.fewshot.species import (  # noqa: F401 - the store's values, re-exported where they were
  THRESHOLD_SOURCES,
  Background,
  Contents,
  Species,
  StoreError,
  check_meta,
  now,
  same_name,
  validate_name,
)

FORMAT = 1
STORE_DIR = "species"
_JSON = "species.json"
_LOCK = ".lock"
BACKGROUND_KEY = "background/embeddings"  # species keys are hex ids: no species can take this npz entry


# Files
# ----------------------------------------------------------------------------------------------------------------
def _write_atomic(path: pathlib.Path, write) -> None:
  """Calls `write(file)` on a temporary file beside `path`, then replaces `path` with it, fsynced
  (`data.atomic.replaced_on_success`): a crash leaves the old file or the new one, never a mix."""
  with atomic.replaced_on_success(path, fsync=True) as tmp, open(tmp, "wb") as f:
    write(f)


class SpeciesStore:
  """The species enrolled for one model, in `<model dir>/species/`.

  Args:
    model_dir: the model folder (converted/exported model dir or training workdir).
    embed_dim: the model's embedding size D; a store written for another D raises StoreError on read.
    fingerprint: an id of the model's weights; a mismatch (the model changed since enrolment) is reported
      by `stale` rather than refused, since the same architecture may have been retrained on purpose.
  """

  def __init__(self, model_dir: str | os.PathLike, *, embed_dim: int, fingerprint: str = ""):
    self.directory = pathlib.Path(model_dir).absolute() / STORE_DIR
    self.embed_dim = int(embed_dim)
    self.fingerprint = fingerprint
    self.stale = False  # set by reads: the store was written by a model with another fingerprint

  # ------------------------------------------------------------------------------------------------ locking
  @contextlib.contextmanager
  def _locked(self, exclusive: bool) -> Iterator[None]:
    """flock on `.lock`: shared for reads, exclusive for read-modify-write (held across processes)."""
    if exclusive:
      self.directory.mkdir(parents=True, exist_ok=True)
    elif not self.directory.is_dir():
      yield
      return
    try:
      fd = os.open(self.directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
      if exclusive:
        raise
      yield  # a read-only model folder: nobody can be writing it either
      return
    try:
      fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
      yield
    finally:
      os.close(fd)  # closing releases the lock

  # ------------------------------------------------------------------------------------------------ reading
  def _meta(self) -> dict | None:
    """species.json, checked field by field (`check_meta`); None when nothing was ever enrolled."""
    path = self.directory / _JSON
    if not path.is_file():
      return None
    try:
      meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
      raise StoreError(f"{path} is damaged ({err}); restore it from a backup or remove the folder") from err
    except OSError as err:
      raise StoreError(f"{path} cannot be read ({err.strerror or err})") from err
    if isinstance(meta, dict) and "format" in meta and meta["format"] != FORMAT:
      raise StoreError(f"{path} has format {meta.get('format')!r}; this version reads format {FORMAT}")
    try:
      check_meta(meta)
    except ValueError as err:
      raise StoreError(f"{path} is damaged ({err}); restore it from a backup or remove the folder") from err
    return meta

  def recorded(self) -> tuple[int, str] | None:
    """`(embed_dim, fingerprint)` of the model the store was written for (None: no store yet).

    Lets a caller read a store written for another model (`SpeciesStore(dir, embed_dim=recorded[0], ...)`),
    e.g. to carry its species over to a new model. StoreError if species.json is damaged.
    """
    with self._locked(exclusive=False):
      meta = self._meta()
    return None if meta is None else (int(meta["embed_dim"]), str(meta.get("fingerprint") or ""))

  def _read(self) -> Contents:
    meta = self._meta()
    if meta is None:
      return Contents({})
    if int(meta["embed_dim"]) != self.embed_dim:
      raise StoreError(
        f"the species store {self.directory} holds {meta['embed_dim']}-dim embeddings but this model gives "
        f"{self.embed_dim}-dim ones: it was enrolled with another model; re-enrol the species for this model "
        f"or move {self.directory} away"
      )
    self.stale = bool(
      self.fingerprint and meta.get("fingerprint") and meta["fingerprint"] != self.fingerprint
    )
    if self.stale:
      warnings.warn(
        f"the species in {self.directory} were enrolled with other model weights (fingerprint "
        f"{meta['fingerprint']}, this model {self.fingerprint}): re-enrol them if the model was retrained",
        stacklevel=3,
      )
    bg_meta = meta.get("background")
    if not meta["species"] and bg_meta is None:
      return Contents({})
    npz = self.directory / meta["embeddings"]
    try:
      with np.load(npz, allow_pickle=False) as arrays:
        background = None
        if bg_meta is not None:
          clips = bg_meta["clips"]
          background = Background(
            embeddings=arrays[BACKGROUND_KEY], files=[c["file"] for c in clips],
            added=[c["added"] for c in clips], windows=[c["windows"] for c in clips],
            updated=str(bg_meta.get("updated") or ""),
          )  # fmt: skip
        out = {}
        for s in meta["species"]:
          emb = arrays[f"{s['key']}/embeddings"]
          clips = s["clips"]
          out[s["name"]] = Species(
            name=s["name"], embeddings=emb, files=[c["file"] for c in clips], added=[c["added"] for c in clips],
            threshold=float(s["threshold"]), threshold_source=s["threshold_source"], created=s["created"],
            updated=s["updated"], key=s["key"], margin=s.get("margin"),
            background=None if background is None else background.embeddings,
          )  # fmt: skip
    except (OSError, KeyError, ValueError) as err:
      raise StoreError(
        f"{npz} is missing or damaged ({err}); the store {self.directory} cannot be read"
      ) from err
    if background is not None and background.embeddings.shape[1] != self.embed_dim:
      raise StoreError(f"{npz} holds background embeddings of another size than {self.embed_dim}")
    return Contents(out, background)

  def load(self) -> dict[str, Species]:
    """All species, by name, in enrolment order (empty when nothing was enrolled), each with the store's
    background embeddings attached (`Species.background`)."""
    with self._locked(exclusive=False):
      return self._read().species

  def load_background(self) -> Background | None:
    """The background clips (None when none were added)."""
    with self._locked(exclusive=False):
      return self._read().background

  # ------------------------------------------------------------------------------------------------ writing
  def _write(self, contents: Contents) -> None:
    """Writes a new npz generation, commits it by replacing species.json, then sweeps older files."""
    species, background = contents.species, contents.background
    for s in species.values():
      if s.embeddings.shape[1] != self.embed_dim:
        raise StoreError(
          f"{s.name!r} has {s.embeddings.shape[1]}-dim embeddings; the model gives {self.embed_dim}"
        )
    if background is not None and background.embeddings.shape[1] != self.embed_dim:
      dim = background.embeddings.shape[1]
      raise StoreError(f"the background has {dim}-dim embeddings; the model gives {self.embed_dim}")
    npz_name = f"embeddings-{uuid.uuid4().hex[:12]}.npz"
    arrays = {f"{s.key}/embeddings": s.embeddings for s in species.values()}
    if background is not None:
      arrays[BACKGROUND_KEY] = background.embeddings
    _write_atomic(self.directory / npz_name, lambda f: np.savez(f, **arrays))
    meta = {
      "format": FORMAT,
      "embed_dim": self.embed_dim,
      "fingerprint": self.fingerprint,
      "embeddings": npz_name,
      "saved": now(),
      "species": [
        {
          "name": s.name, "key": s.key, "created": s.created, "updated": s.updated, "threshold": s.threshold,
          "threshold_source": s.threshold_source, **({} if s.margin is None else {"margin": s.margin}),
          "clips": [{"file": f, "added": a} for f, a in zip(s.files, s.added, strict=True)],
        }
        for s in species.values()
      ],
    }  # fmt: skip
    if background is not None:  # absent, not empty, without background: such a store is as it always was
      meta["background"] = {"updated": background.updated, "clips": background.summary()}
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    _write_atomic(self.directory / _JSON, lambda f: f.write(text.encode("utf-8")))
    self.stale = False
    # Only now is the new generation live: everything else (old npz, temporaries of crashed saves) is garbage.
    for p in self.directory.iterdir():
      if (p.name.startswith("embeddings-") and p.name != npz_name) or (
        p.name.startswith(".") and p.name.endswith(".tmp")
      ):
        with contextlib.suppress(OSError):
          p.unlink()

  @contextlib.contextmanager
  def edit_contents(self) -> Iterator[Contents]:
    """Read-modify-write of species and background together under the exclusive lock:
    `with store.edit_contents() as c: c.background = ...`. Saved (atomically) when the block exits normally,
    discarded if it raises."""
    with self._locked(exclusive=True):
      contents = self._read()
      yield contents
      self._write(contents)

  @contextlib.contextmanager
  def edit(self) -> Iterator[dict[str, Species]]:
    """Read-modify-write under the exclusive lock: `with store.edit() as species: species[name] = ...`.

    The dict is saved (atomically), with the background as it was, when the block exits normally and discarded
    if it raises.
    """
    with self.edit_contents() as contents:
      yield contents.species

  # ------------------------------------------------------------------------------------------------ helpers
  def add(self, species: Species, *, merge: bool = False, recalibrate=None) -> Species:
    """Adds `species`; a species of the same name (case-insensitive) raises StoreError unless `merge`.

    With `merge`, the new clips are appended to the existing species (keeping its name, key and creation
    time). `recalibrate(species) -> (threshold, source)` (if given) sets the threshold of the stored species
    afresh (the merged one, or a new one without a user threshold), called under the lock with the store's
    background attached (`Species.background`), so a calibration against it sees the current one.
    Returns the stored species.
    """
    with self.edit_contents() as contents:
      current = contents.species
      background = None if contents.background is None else contents.background.embeddings
      existing = next((n for n in current if same_name(n, species.name)), None)
      if existing is None:
        species = dataclasses.replace(species, background=background)
        if recalibrate is not None and species.threshold_source != "user":
          species.threshold, species.threshold_source = recalibrate(species)
        current[species.name] = species
        return species
      if not merge:
        raise StoreError(
          f"a species named {existing!r} is already enrolled; pass merge=True (CLI: --merge) to add these clips "
          "to it, or remove it first"
        )
      old = current[existing]
      merged = dataclasses.replace(
        old,
        embeddings=np.concatenate([old.embeddings, species.embeddings]),
        files=old.files + species.files,
        added=old.added + species.added,
        updated=now(),
      )
      if species.threshold_source == "user":
        merged.threshold, merged.threshold_source = species.threshold, "user"
      elif recalibrate is not None and old.threshold_source != "user":
        merged.margin = species.margin if species.margin is not None else old.margin
        merged.threshold, merged.threshold_source = recalibrate(merged)
      current[existing] = merged
      return merged

  def remove(self, name: str) -> Species:
    """Removes the species called `name` (case-insensitive); StoreError listing the enrolled names if absent."""
    with self.edit() as current:
      found = next((n for n in current if same_name(n, name)), None)
      if found is None:
        raise StoreError(f"no species named {name!r} is enrolled; enrolled: {sorted(current) or 'none'}")
      return current.pop(found)
