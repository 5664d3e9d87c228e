"""What the species store holds, as values: `Species`, `Background`, `Contents`, name rules, and `check_meta`,
the schema check of a parsed species.json (`fewshot.store` reads and writes them; this module touches no file).

numpy only (no jax).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import unicodedata
import uuid

import numpy as np

_MAX_NAME = 200
THRESHOLD_SOURCES = ("loo", "default", "user")


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
