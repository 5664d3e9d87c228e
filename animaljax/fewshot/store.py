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
import datetime
import fcntl
import json
import os
import pathlib
import unicodedata
import uuid
import warnings
from collections.abc import Iterator

import numpy as np

from animaljax.data import atomic

FORMAT = 1
STORE_DIR = "species"
_JSON = "species.json"
_LOCK = ".lock"
_MAX_NAME = 200
THRESHOLD_SOURCES = ("loo", "default", "user")
BACKGROUND_KEY = "background/embeddings"  # species keys are hex ids: no species can take this npz entry


class StoreError(ValueError):
  """A store that cannot be used as asked: unknown or duplicate name, wrong embedding size, damaged files.

  A ValueError so that the commands' one user-error mapping (`animaljax.cli.run`) answers it in one line.
  """


# ----------------------------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------------------------
def validate_name(name: str) -> str:
  """The species name as stored: NFC-normalised, surrounding whitespace stripped.

  Any Unicode letters, digits, punctuation, symbols and emoji are allowed ("Renard roux 🦊", "Лиса"). Refused:
  empty or whitespace-only names, path separators (`/`, `\\`), control or line-separator characters, "." and
  "..", and names over 200 characters. Raises ValueError saying which rule failed.
  """
  if not isinstance(name, str):
    raise ValueError(f"species name must be a string, got {type(name).__name__}")
  clean = unicodedata.normalize("NFC", name)
  bad = [c for c in clean if unicodedata.category(c) in ("Cc", "Zl", "Zp") and c != "\t"]
  if bad:  # checked before stripping: a name with a newline is refused, not silently repaired
    raise ValueError(f"species name {name!r} contains control characters {bad!r}")
  clean = clean.strip()
  if not clean:
    raise ValueError(f"species name {name!r} is empty or only whitespace")
  if "\t" in clean:
    raise ValueError(f"species name {name!r} contains control characters ['\\t']")
  if any(sep in clean for sep in ("/", "\\", os.sep, os.altsep or "/")):
    raise ValueError(f"species name {name!r} contains a path separator ('/' or '\\')")
  if clean in (".", ".."):
    raise ValueError(f"species name {name!r} is not allowed")
  if len(clean) > _MAX_NAME:
    raise ValueError(f"species name is {len(clean)} characters long; the limit is {_MAX_NAME}")
  return clean


def same_name(a: str, b: str) -> bool:
  """Names that differ only in case (or Unicode normal form) denote the same species."""
  return unicodedata.normalize("NFC", a).casefold() == unicodedata.normalize("NFC", b).casefold()


def now() -> str:
  """UTC timestamp, ISO 8601 with seconds."""
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------------------------------
# One species
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Species:
  """One enrolled species.

  Attributes:
    name: validated display name.
    embeddings: (K, D) float32, one row per support clip (raw model embeddings).
    files: K source paths (as given at enrolment), aligned with `embeddings`.
    added: K UTC timestamps, when each clip was enrolled.
    threshold: distance (`fewshot.prototypes.distance`) beyond which a clip is not this species (see
      `fewshot.enrol` for how it is set).
    threshold_source: "loo" (calibrated by leave-one-out), "default" (one clip: no LOO possible) or "user".
    created, updated: UTC timestamps.
    key: stable id used for the npz entries (names are free Unicode, npz keys are file names).
    margin: the leave-one-out multiplier the threshold was calibrated with (kept so that a recalibration, e.g.
      when background clips change, uses it again); None in stores written before it was recorded.
    background: (N, D) raw embeddings of the store's background windows, attached by the store's reads (not
      saved with the species; None: no background); `fewshot.enrol.rank` refuses this species a clip nearer
      to one of them than to its prototype.
  """

  name: str
  embeddings: np.ndarray
  files: list[str]
  added: list[str]
  threshold: float
  threshold_source: str = "loo"
  created: str = ""
  updated: str = ""
  key: str = ""
  margin: float | None = None
  background: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

  def __post_init__(self):
    self.embeddings = np.asarray(self.embeddings, np.float32)
    if self.embeddings.ndim != 2 or self.embeddings.shape[0] < 1:
      raise ValueError(f"embeddings must be (clips >= 1, dim), got {self.embeddings.shape}")
    if not (len(self.files) == len(self.added) == self.embeddings.shape[0]):
      raise ValueError(
        f"{len(self.files)} files and {len(self.added)} timestamps for {self.embeddings.shape[0]} embeddings"
      )
    if self.threshold_source not in THRESHOLD_SOURCES:
      raise ValueError(f"threshold_source must be one of {THRESHOLD_SOURCES}, got {self.threshold_source!r}")
    self.key = self.key or uuid.uuid4().hex[:16]
    self.created = self.created or now()
    self.updated = self.updated or self.created

  @property
  def num_clips(self) -> int:
    return int(self.embeddings.shape[0])

  def summary(self) -> dict:
    """JSON-able description (no arrays): name, clips, threshold, timestamps, files."""
    return {
      "name": self.name,
      "clips": self.num_clips,
      "threshold": self.threshold,
      "threshold_source": self.threshold_source,
      "created": self.created,
      "updated": self.updated,
      "files": list(self.files),
    }


# ----------------------------------------------------------------------------------------------------------------
# Background clips
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Background:
  """The store's background clips: recordings of what no species is, one embedding per window.

  Attributes:
    embeddings: (N, D) float32, the raw embeddings of every clip's windows, clip after clip.
    files: one absolute source path per clip; added: one UTC timestamp per clip; windows: rows per clip
      (>= 1 each, summing to N).
    updated: UTC timestamp of the last change.
  """

  embeddings: np.ndarray
  files: list[str]
  added: list[str]
  windows: list[int]
  updated: str = ""

  def __post_init__(self):
    self.embeddings = np.asarray(self.embeddings, np.float32)
    if self.embeddings.ndim != 2:
      raise ValueError(f"background embeddings must be (windows, dim), got {self.embeddings.shape}")
    if not (len(self.files) == len(self.added) == len(self.windows)) or not self.files:
      raise ValueError(
        f"{len(self.files)} files, {len(self.added)} timestamps, {len(self.windows)} window counts"
      )
    if min(self.windows) < 1 or sum(self.windows) != self.embeddings.shape[0]:
      raise ValueError(f"window counts {self.windows} do not add up to {self.embeddings.shape[0]} embeddings")
    self.updated = self.updated or now()

  @property
  def num_clips(self) -> int:
    return len(self.files)

  def rows(self) -> list[np.ndarray]:
    """Each clip's (windows, D) embeddings, in clip order."""
    return np.split(self.embeddings, np.cumsum(self.windows)[:-1])

  def summary(self) -> list[dict]:
    """JSON-able description of each clip: file, windows, added."""
    return [
      {"file": f, "windows": w, "added": a}
      for f, w, a in zip(self.files, self.windows, self.added, strict=True)
    ]


@dataclasses.dataclass
class Contents:
  """Everything a store holds: the species by name (enrolment order) and the background (None: none)."""

  species: dict[str, Species]
  background: Background | None = None


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------
def _write_atomic(path: pathlib.Path, write) -> None:
  """Calls `write(file)` on a temporary file beside `path`, then replaces `path` with it, fsynced
  (`data.atomic.replaced_on_success`): a crash leaves the old file or the new one, never a mix."""
  with atomic.replaced_on_success(path, fsync=True) as tmp, open(tmp, "wb") as f:
    write(f)


_SPECIES_FIELDS = {
  "name": str, "key": str, "created": str, "updated": str, "threshold": (int, float), "threshold_source": str,
  "clips": list,
}  # fmt: skip


def check_meta(meta) -> None:
  """Raises ValueError saying what is wrong when `meta` (a parsed species.json) lacks a field or has one of
  the wrong type: valid JSON with the wrong fields is as damaged as unparseable JSON, and must say so rather
  than end in a KeyError deep in a read."""
  if not isinstance(meta, dict):
    raise ValueError(f"expected a JSON object, found {type(meta).__name__}")
  for field, kind in (("format", int), ("embed_dim", int), ("species", list)):
    if field not in meta:
      raise ValueError(f"no {field!r} field")
    if not isinstance(meta[field], kind) or isinstance(meta[field], bool):
      raise ValueError(f"{field!r} is {meta[field]!r}, not a {kind.__name__}")
  if meta["embed_dim"] < 1:
    raise ValueError(f"'embed_dim' is {meta['embed_dim']}")
  if not isinstance(meta.get("fingerprint", ""), str):
    raise ValueError(f"'fingerprint' is {meta['fingerprint']!r}, not a string")
  if meta["species"] and not isinstance(meta.get("embeddings"), str):
    raise ValueError(f"'embeddings' (the npz file name) is {meta.get('embeddings')!r}")
  for i, s in enumerate(meta["species"]):
    if not isinstance(s, dict):
      raise ValueError(f"species entry {i} is {type(s).__name__}, not an object")
    for field, kind in _SPECIES_FIELDS.items():
      if field not in s:
        raise ValueError(f"species entry {i} ({s.get('name', '?')!r}) has no {field!r} field")
      if not isinstance(s[field], kind) or isinstance(s[field], bool):
        raise ValueError(f"species entry {i} ({s.get('name', '?')!r}) has {field!r} = {s[field]!r}")
    if not 0 < s["threshold"] < float("inf"):  # `rank` divides by it
      raise ValueError(f"species entry {i} ({s['name']!r}) has threshold {s['threshold']!r}")
    if s["threshold_source"] not in THRESHOLD_SOURCES:
      raise ValueError(f"species entry {i} ({s['name']!r}) has threshold_source {s['threshold_source']!r}")
    if not s["clips"] or not all(
      isinstance(c, dict) and isinstance(c.get("file"), str) and isinstance(c.get("added"), str)
      for c in s["clips"]
    ):
      raise ValueError(f"species entry {i} ({s['name']!r}) has clips without 'file' and 'added' strings")
    margin = s.get("margin")
    if margin is not None and (
      not isinstance(margin, int | float) or isinstance(margin, bool) or not margin > 0
    ):
      raise ValueError(f"species entry {i} ({s['name']!r}) has margin {margin!r}")
  background = meta.get("background")
  if background is not None:
    if (
      not isinstance(background, dict)
      or not isinstance(background.get("clips"), list)
      or not background["clips"]
    ):
      raise ValueError(f"'background' is {background!r}, not an object with a non-empty 'clips' list")
    if not isinstance(meta.get("embeddings"), str):
      raise ValueError(f"'embeddings' (the npz file name) is {meta.get('embeddings')!r}")
    for c in background["clips"]:
      if not (
        isinstance(c, dict) and isinstance(c.get("file"), str) and isinstance(c.get("added"), str)
        and isinstance(c.get("windows"), int) and not isinstance(c["windows"], bool) and c["windows"] >= 1
      ):  # fmt: skip
        raise ValueError(f"background clip {c!r} lacks 'file' and 'added' strings and a 'windows' count >= 1")


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
