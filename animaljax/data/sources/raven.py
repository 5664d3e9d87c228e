"""Recordings annotated with Raven selection tables (`--source raven --root DIR`): multi-label windows.

Layouts (recordings at any depth; split folder names as the folder source reads them, case-insensitive):

  root/rec1.wav + root/rec1.Table.1.selections.txt   a table beside its recording, named after it
                  (root/rec1.selections.txt too)     (rec1.Table.2.selections.txt ...: all merged)
  root/site3/rec2.flac + root/site3/rec2.selections.txt
  root/tables/any.txt with a `Begin File` column     tables kept apart from the audio: each row goes to the
                                                     recording under root whose file name its `Begin File`
                                                     gives (else the one recording of that name without its
                                                     extension: a table made on rec3.mp3 annotates rec3.wav)
  root/Training/..., root/Test/... [, Validation/]   fixed splits, as in the folder source; without a
                                                     validation folder validation is carved out of Training

The tables are read by `animaljax.data.sources.raven_table` (one box per Raven selection, bad rows refused by
line). Each recording is one `Example` with its boxes as `events` (in the file's time; a box past the end of
the file is kept as it is: only decoding knows the length). Pack with `clip_mode="window"` (the pack command's
default for this source): a window's classes are those whose box overlaps it by `min_overlap_seconds` (or the
whole box, or the whole window, when shorter: `base.window_labels`).

What is refused goes to `rejected` (the packer's rejected.csv): a bad row as `(table, "line N: why")`, a table
that is no table or matches no recording as `(table, why)`, and a recording without any table, or whose table
cannot be read, as `(recording, why)`. A recording without a table is not a recording without calls: it is
refused unless `unannotated="negative"` says its windows are negatives. A table with no selections is an
annotated recording without calls: every window a negative.

Classes are the labels of the kept selections (whitespace stripped), sorted; `classes` keeps only those named
(selections of others are ignored and counted in `split_settings()["ignored_selections"]`). Whole recordings
are carved into splits (so no recording has windows in two splits), grouped by `group_by` like the other
sources, and stratified by each recording's *rarest* class (fewest recordings), so that a rare species is
spread over the splits even when it always sings with a common one; recordings without calls form a stratum.
"""

from __future__ import annotations

import collections
import math
import os
import re
from collections.abc import Sequence

from animaljax.audio.io import AUDIO_EXTENSIONS
from animaljax.data.sources.base import SPLITS, UNLABELLED, Example, Source
from animaljax.data.sources.folder import SPLIT_FOLDERS
from animaljax.data.sources.raven_table import BEGIN, Box, TableError, header_of, read_table
from animaljax.data.sources.splits import (
  Carve,
  carve_examples,
  check_split_ratios,
  compile_group_by,
  group_key,
)

UNANNOTATED = ("reject", "negative")  # what a recording without any table is
# Raven boxes are drawn with loose margins (a tenth of a second or two): half a second of overlap is a
# recognisable part of a song, not the margin of the box next door; shorter calls count whole.
MIN_OVERLAP_SECONDS = 0.5
_BESIDE = re.compile(r"(?P<stem>.+?)(?:\.table\.\d+)?\.selections\.txt", re.IGNORECASE)
_NO_TABLE = (
  "no Raven selection table (none beside it as <name>.Table.1.selections.txt, and no Begin File names it): "
  "not packed, since it may hold calls; unannotated='negative' (--unannotated negative) packs it as all "
  "negatives"
)


def parse_classes(classes: str | Sequence[str] | None) -> tuple[str, ...] | None:
  """The `classes` option: None or "" (every label), comma-separated names, or a sequence of names."""
  if classes is None or classes == "":
    return None
  items = classes.split(",") if isinstance(classes, str) else list(classes)
  names = tuple(i.strip() if isinstance(i, str) else "" for i in items)
  if not all(names):
    raise ValueError(f"classes {classes!r} has an empty or invalid name; give comma-separated labels")
  return tuple(dict.fromkeys(names))


def _is_hidden(name: str) -> bool:
  return name.startswith(".")


def _has_begin_time(path: str) -> bool:
  """Whether the text file `path` starts with a Raven header (a `Begin Time (s)` column)."""
  try:
    return BEGIN in header_of(path)
  except TableError:
    return False


class _Recording:
  """What the tables say about one recording while listing."""

  def __init__(self, path: str):
    self.path = path
    self.boxes: list[Box] = []
    self.annotated = False  # some table names it (even with no selection, or only bad rows)
    self.errors: list[str] = []  # its tables that cannot be read


class RavenSource(Source):
  """Lists the recordings under `root` with their Raven selections; see the module docstring.

  Args:
    root: the corpus folder.
    label_column: the tables' label column; None: the first of Species, Annotation, Label, Class present.
    min_overlap_seconds: overlap a box needs to switch its class on in a window (default 0.5 s, see
      `MIN_OVERLAP_SECONDS`).
    classes: keep only these labels (comma-separated or a sequence); None: every label. A name no selection
      has is refused.
    unannotated: "reject" (default) refuses a recording without a table; "negative" packs its windows as
      negatives.
    split_ratios: (train, validation, test) weights of the carved split; with Training/ but no validation
      folder only the validation weight is used, as the fraction of Training carved out (must be < 1).
    seed: seed of the carved split.
    group_by: a regular expression on file names without extension; its first group (or match) names the
      session a recording belongs to, kept in one split. None: each recording on its own.
  Raises:
    ValueError: no root, no recordings, a bad option, an unknown class, nothing left to pack.
  """

  name = "raven"
  multi_label = True

  def __init__(
    self,
    root: str | os.PathLike,
    *,
    label_column: str | None = None,
    min_overlap_seconds: float = MIN_OVERLAP_SECONDS,
    classes: str | Sequence[str] | None = None,
    unannotated: str = "reject",
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_by: str | None = None,
  ):
    self.root = os.path.abspath(os.fspath(root))
    self.label_column = (label_column or "").strip() or None
    self.min_overlap_seconds = float(min_overlap_seconds)
    if not (math.isfinite(self.min_overlap_seconds) and self.min_overlap_seconds >= 0):
      raise ValueError(f"min_overlap_seconds must be a number of seconds >= 0, got {min_overlap_seconds!r}")
    if unannotated not in UNANNOTATED:
      raise ValueError(f"unannotated must be one of {', '.join(UNANNOTATED)}, got {unannotated!r}")
    self.unannotated = unannotated
    self.wanted = parse_classes(classes)
    self.split_ratios = check_split_ratios(split_ratios)
    self.seed = int(seed)
    self.group_by = compile_group_by(group_by)
    self.carves: dict[str, Carve] = {}
    if not os.path.isdir(self.root):
      raise ValueError(f"dataset folder {self.root} does not exist or is not a folder")
    self._rejected: list[tuple[str, str]] = []
    self._ignored: dict[str, int] = {}  # label -> selections left out by `classes`
    self._examples = self._list()
    self.rejected = tuple(self._rejected)

  def examples(self) -> list[Example]:
    return list(self._examples)

  def locations(self) -> tuple[str, ...]:
    return (self.root,)

  def split_settings(self) -> dict:
    return {
      "group_by": self.group_by.pattern if self.group_by else None,
      "seed": self.seed,
      "split_ratios": list(self.split_ratios),
      "stratified_by": "rarest class",
      "label_column": self.label_column,
      "min_overlap_seconds": self.min_overlap_seconds,
      "classes": list(self.wanted) if self.wanted else None,
      "ignored_selections": self._ignored,
      "unannotated": self.unannotated,
    }

  # ------------------------------------------------------------------------------------------------ listing
  def _walk(self) -> tuple[list[str], list[str]]:
    """Audio files and `.txt` files under the root (hidden ones skipped; folder links not followed)."""
    audio, texts = [], []

    def unreadable(err: OSError) -> None:
      self._rejected.append((err.filename or self.root, f"folder not readable: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(self.root, onerror=unreadable):
      links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d)) and not _is_hidden(d)]
      self._rejected.extend((os.path.join(dirpath, d), "folder link: not followed") for d in sorted(links))
      dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d) and d not in links)
      for f in sorted(filenames):
        if not _is_hidden(f):
          if f.lower().endswith(AUDIO_EXTENSIONS):
            audio.append(os.path.join(dirpath, f))
          elif f.lower().endswith(".txt"):
            texts.append(os.path.join(dirpath, f))
    return audio, texts

  def _split_of(self, paths: list[str]) -> dict[str, str]:
    """Recording -> its split folder's split ("" without the layout); recordings beside the split folders are
    rejected."""
    tops = {}
    with os.scandir(self.root) as it:
      for e in it:
        if e.is_dir() and not _is_hidden(e.name) and e.name.lower() in SPLIT_FOLDERS:
          tops[e.name] = SPLIT_FOLDERS[e.name.lower()]
    out = {}
    for p in paths:
      top = os.path.relpath(p, self.root).split(os.sep)[0]
      if not tops:
        out[p] = ""
      elif top in tops:
        out[p] = tops[top]
      else:
        self._rejected.append((p, "beside the split folders (Training/, Test/, ...): not read"))
    return out

  def _attach(self, recordings: dict[str, _Recording], texts: list[str]) -> None:
    """Reads every table and hands its boxes to the recordings it annotates."""
    beside: dict[tuple[str, str], list[_Recording]] = collections.defaultdict(list)
    by_name: dict[str, list[_Recording]] = collections.defaultdict(list)
    by_stem: dict[str, list[_Recording]] = collections.defaultdict(list)
    for path, rec in recordings.items():
      stem = os.path.splitext(os.path.basename(path))[0]
      beside[(os.path.dirname(path), stem)].append(rec)
      by_name[os.path.basename(path)].append(rec)
      by_stem[stem].append(rec)

    def named(value: str) -> _Recording | str:
      """The recording a `Begin File` value names, or why none."""
      found = by_name.get(value) or by_stem.get(os.path.splitext(value)[0], [])
      if len(found) == 1:
        return found[0]
      if not found:
        return f"Begin File {value!r} names no recording under {self.root}"
      return f"Begin File {value!r} names {len(found)} recordings ({found[0].path}, ...): ambiguous"

    for table_path in texts:
      match = _BESIDE.fullmatch(os.path.basename(table_path))
      owners = beside.get((os.path.dirname(table_path), match["stem"]), []) if match else []
      if not match and not _has_begin_time(table_path):
        continue  # some other text file (a README): not a table
      try:
        table = read_table(table_path, self.label_column)
      except TableError as err:
        for rec in owners:
          rec.errors.append(f"its Raven table {table_path} cannot be read: {err}")
        if not owners:
          self._rejected.append((table_path, f"not read as a Raven selection table: {err}"))
        continue
      bad = [(r.line, r.reason, r.begin_file) for r in table.refused]
      if owners:
        for rec in owners:
          rec.annotated = True
          rec.boxes.extend(table.boxes)
      elif table.has_begin_file:
        for box in table.boxes:
          rec = named(box.begin_file)
          if isinstance(rec, str):
            bad.append((box.line, rec, ""))
          else:
            rec.annotated = True
            rec.boxes.append(box)
        for _, _, value in bad:
          owner = named(value) if value else ""
          if not isinstance(owner, str):
            owner.annotated = True  # its row is bad, but the table does cover the recording
      else:
        why = "a Raven table named after no recording beside it and without a Begin File column: unused"
        self._rejected.append((table_path, why))
        continue
      self._rejected.extend((table_path, f"line {line}: {why}") for line, why, _ in sorted(bad))

  def _list(self) -> list[Example]:
    audio, texts = self._walk()
    if not audio:
      raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {self.root}")
    splits = self._split_of(audio)
    recordings = {p: _Recording(p) for p in audio if p in splits}
    self._attach(recordings, texts)

    kept: list[_Recording] = []
    for rec in recordings.values():
      if rec.errors:
        self._rejected.append((rec.path, "; ".join(rec.errors)))
      elif rec.annotated or self.unannotated == "negative":
        kept.append(rec)
      else:
        self._rejected.append((rec.path, _NO_TABLE))
    if not kept:
      why = "; ".join(f"{p}: {r}" for p, r in self._rejected[:2])
      raise ValueError(f"none of the {len(audio)} recordings under {self.root} can be packed ({why} ...)")

    labels = sorted({b.label for rec in kept for b in rec.boxes})
    if self.wanted:
      unknown = [c for c in self.wanted if c not in labels]
      if unknown:
        raise ValueError(
          f"classes {', '.join(map(repr, unknown))}: no selection under {self.root} has that label; the "
          f"labels are: {', '.join(labels) or 'none'}"
        )
    self.class_names = tuple(sorted(self.wanted)) if self.wanted else tuple(labels)
    if not self.class_names:
      raise ValueError(f"no table under {self.root} has a selection with a label: no class to learn")
    ids = {c: i for i, c in enumerate(self.class_names)}
    ignored = collections.Counter(b.label for r in kept for b in r.boxes if b.label not in ids)
    self._ignored = dict(sorted(ignored.items()))
    recordings_of = collections.Counter(
      c for r in kept for c in {ids[b.label] for b in r.boxes if b.label in ids}
    )

    if any(splits[r.path] for r in kept):
      fixed = {splits[r.path] for r in kept}
      val = self.split_ratios[1]
      if "validation" not in fixed and "train" in fixed and val > 0:
        if val >= 1:
          raise ValueError(
            f"{self.root} has Training/ but no validation folder: the validation weight of split_ratios is "
            f"the fraction of Training carved out for validation and must be < 1, got {val:g}"
          )
        self.carves["train"] = Carve(("train", "validation"), (1.0 - val, val), self.seed)
    else:
      self.carves["all"] = Carve(SPLITS, self.split_ratios, self.seed)

    out = []
    for rec in kept:
      events = tuple(sorted({(b.begin, b.end, ids[b.label]) for b in rec.boxes if b.label in ids}))
      present = tuple(sorted({c for _, _, c in events}))
      rarest = min(present, key=lambda c: (recordings_of[c], c)) if present else None
      split = splits[rec.path] or "train"
      carve = "all" if "all" in self.carves else (split if split in self.carves else "")
      out.append(
        Example(
          rec.path,
          present[0] if present else UNLABELLED,
          ";".join(self.class_names[c] for c in present),
          split,
          group=group_key(self.group_by, os.path.splitext(os.path.basename(rec.path))[0]),
          carve=carve,
          labels=present,
          events=events,
          stratum="" if rarest is None else self.class_names[rarest],
        )
      )
    return carve_examples(out, self.carves)  # provisional: the packer redoes it with the exact duplicates


def read_annotated_recordings(
  root: str | os.PathLike, *, label_column: str | None = None
) -> tuple[list[tuple[str, list[tuple[float, float, str]]]], tuple[tuple[str, str], ...]]:
  """Every annotated recording under `root` with its boxes by class name, for scoring detections against them
  (`python -m animaljax.evaluate --raven`): `([(audio path, [(begin_s, end_s, class), ...]), ...], rejected)`,
  recordings in path order, `rejected` the `(path, reason)` of rows and recordings that could not be used (a
  recording without a table among them: an unannotated file says nothing about what is absent). Any layout
  `RavenSource` reads; its splits play no part."""
  source = RavenSource(root, label_column=label_column)
  names = source.class_names
  recordings = sorted(
    (e.path, [(float(b), float(end), names[c]) for b, end, c in e.events]) for e in source.examples()
  )
  return recordings, source.rejected
