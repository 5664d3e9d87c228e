"""A csv manifest, one clip per row, in one of three layouts told apart by the header:

  path,label[,split][,group][,start_s,end_s]    single-label: `label` is a class name; empty = unlabelled
  path,labels[,split][,group][,start_s,end_s]   multi-label: `labels` holds `;`-separated class names
                                                 ("owl;wren"); empty = a negative clip (no class present)
  primary_label,secondary_labels,filename,...   BirdCLEF's `train_metadata.csv` read as it is (no `path`
                                                 column): labels = the primary label + the secondary ones

Paths are relative to the manifest's folder unless absolute or `root` is given; a BirdCLEF `filename` is looked
up as `root/filename`, then `root/train_audio/filename` (where BirdCLEF keeps its audio, beside the csv). Class
ids follow the sorted unique names: of `label`, of the names in `labels`, or of BirdCLEF's primary labels (a
secondary label that is no one's primary label is not a class: it is dropped from the clip's labels and
counted in `split_settings()["unknown_secondary_labels"]`). Extra columns are ignored.

`start_s,end_s` (seconds; both or neither, per row) cut a segment from a long file (`Example.segment`); a file
may be listed once per segment. Segments are cut after decoding; one that ends after the file is rejected by
the packer with that reason.

Splits: a `split` column fixes them. Without one, labelled clips get a stratified train/validation/test split
(multi-label: every clip, negatives too, stratified by its rarest class), carved so that clips of one `group`
(the recording they come from) and exact duplicates stay in one split; unlabelled clips of a single-label
manifest go to "train" (a SimCLR corpus). The group is the `group` column, else what `group_by` (a regex on
file names) finds; a row without one is a group of its own, except that the segments of one file form one
group, so they never straddle carved splits.

A malformed manifest (header, field count, empty path, a clip listed twice, a bad split name) is an error
naming the manifest and line. A row whose labels or segment are wrong (an empty name in `labels`, an empty
`primary_label`, `secondary_labels` that is not a list of strings, a bad `start_s,end_s`) is left out and
listed in `rejected` with its line and reason (the packer writes rejected.csv); the other rows are kept.
"""

from __future__ import annotations

import ast
import collections
import csv
import math
import os
import re
from typing import NamedTuple

from animaljax.data.sources.base import SPLITS, UNLABELLED, Example, Source
from animaljax.data.sources.splits import (
  Carve,
  carve_examples,
  check_split_ratios,
  compile_group_by,
  group_key,
)

# TFDS split names are words; checked here so a typo fails at listing time, not deep in the packer.
_SPLIT_NAME = re.compile(r"\w+")
LABEL_SEPARATOR = ";"  # between the class names of a `labels` cell, and in a multi-label `label_name`
BIRDCLEF_AUDIO = "train_audio"  # BirdCLEF's audio folder, beside train_metadata.csv


class _Row(NamedTuple):
  """One kept manifest row."""

  path: str  # absolute
  names: tuple[str, ...]  # class names, unique, in cell order (single-label: one or none)
  split: str | None  # None: no split column
  group: str | None  # None: no group column
  segment: tuple[float, float] | None
  unknown: tuple[str, ...] = ()  # BirdCLEF secondary labels that are no class


def parse_secondary_labels(text: str) -> tuple[str, ...]:
  """BirdCLEF's `secondary_labels` cell ("['amerob', 'norcar']", "[]" or empty) -> the names.

  Read with `ast.literal_eval`, which evaluates literals only (never code).

  Raises:
    ValueError: anything but a list of non-empty strings.
  """
  text = text.strip()
  if not text:
    return ()
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
    raise ValueError(f"secondary_labels {text!r} is not a list literal like ['amerob', 'norcar']") from None
  if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
    raise ValueError(f"secondary_labels {text!r} is not a list of strings")
  names = tuple(v.strip() for v in value)
  if not all(names):
    raise ValueError(f"secondary_labels {text!r} holds an empty name")
  return names


def _parse_segment(start: str, end: str) -> tuple[float, float] | None:
  """`start_s,end_s` cells -> `(start, end)`, or None when both are empty; ValueError if malformed."""
  start, end = start.strip(), end.strip()
  if not start and not end:
    return None
  if not start or not end:
    raise ValueError(f"start_s={start!r}, end_s={end!r}: give both or neither")
  try:
    segment = (float(start), float(end))
  except ValueError:
    raise ValueError(f"start_s={start!r}, end_s={end!r} must be numbers of seconds") from None
  if not (math.isfinite(segment[0]) and math.isfinite(segment[1])) or not 0 <= segment[0] < segment[1]:
    raise ValueError(f"segment {start}-{end} s must have 0 <= start_s < end_s")
  return segment


class CsvSource(Source):
  """Clips listed in a csv file (layouts: the module docstring).

  Args:
    manifest: the csv: a header naming `path` and `label` or `labels` (optionally `split`, `group`, `start_s`
      and `end_s`), or BirdCLEF's `train_metadata.csv`.
    root: folder that relative paths are relative to (default: the manifest's folder).
    split_ratios: (train, validation, test) weights when there is no split column.
    seed: seed of that split.
    group_by: a regex whose first capture group (or whole match) in a file's name without extension names its
      recording, for a manifest without a group column (ValueError with one: say which groups to use).

  Attributes:
    layout: "label", "labels" or "birdclef".
    multi_label: True for the `labels` and BirdCLEF layouts.
    rejected: `(path, "line N: reason")` of the rows left out.
  """

  name = "csv"

  def __init__(
    self,
    manifest: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    group_by: str | None = None,
  ):
    self.manifest = os.path.abspath(os.fspath(manifest))
    self.root = os.path.abspath(os.fspath(root)) if root is not None else os.path.dirname(self.manifest)
    self.split_ratios = check_split_ratios(split_ratios)
    self.seed = int(seed)
    self.group_by = compile_group_by(group_by)
    rows, rejected = self._read()
    self.rejected = tuple(rejected)
    self.multi_label = self.layout != "label"
    if self.layout == "birdclef":
      # Classes are the primary labels; a secondary label outside them names no class of this corpus.
      self.class_names = tuple(sorted({r.names[0] for r in rows}))
      known = set(self.class_names)
      rows = [r._replace(names=tuple(n for n in r.names if n in known),
                         unknown=tuple(n for n in r.names if n not in known)) for r in rows]  # fmt: skip
    else:
      self.class_names = tuple(sorted({n for r in rows for n in r.names}))
    self._unknown = collections.Counter(n for r in rows for n in r.unknown)
    ids = {c: i for i, c in enumerate(self.class_names)}

    has_split = rows[0].split is not None
    self.carves = {} if has_split else {"all": Carve(SPLITS, self.split_ratios, self.seed)}
    listed = collections.Counter(r.path for r in rows)
    clips_of = collections.Counter(n for r in rows for n in r.names)  # multi-label: strata by rarest class
    self._segments_grouped = False
    examples = []
    for r in rows:
      group = r.group
      if group is None:
        group = group_key(self.group_by, os.path.splitext(os.path.basename(r.path))[0])
      if not group and listed[r.path] > 1:  # segments of one file: one recording, one carved split
        group, self._segments_grouped = r.path, True
      carve = "all" if (r.names or self.multi_label) and not has_split else ""
      split = r.split or "train"
      if self.multi_label:
        labels = tuple(sorted({ids[n] for n in r.names}))
        name = LABEL_SEPARATOR.join(self.class_names[i] for i in labels)
        label = labels[0] if labels else UNLABELLED
        rarest = min(r.names, key=lambda n: (clips_of[n], ids[n]), default="")
        examples.append(Example(r.path, label, name, split, group=group, carve=carve, labels=labels,
                                stratum=rarest, segment=r.segment))  # fmt: skip
      else:
        label_name = r.names[0] if r.names else ""
        label = ids[label_name] if label_name else UNLABELLED
        examples.append(
          Example(r.path, label, label_name, split, group=group, carve=carve, segment=r.segment)
        )
    self._examples = carve_examples(examples, self.carves)  # provisional: the packer adds the duplicates

  def split_settings(self) -> dict:
    by = self.group_by.pattern if self.group_by else ("group column" if self._group_column else None)
    if self._segments_grouped and by is None:
      by = "file (segments)"
    settings = {"group_by": by, "seed": self.seed, "split_ratios": list(self.split_ratios)}
    if self.layout != "label":  # only then: single-label packs keep their fingerprints
      settings.update(layout=self.layout, stratified_by="rarest class")
    if self._unknown:
      settings["unknown_secondary_labels"] = dict(sorted(self._unknown.items()))
    return settings

  def _header(self, header: list[str]) -> dict[str, int]:
    """Column name -> index for the layout the header names (sets `layout`); ValueError naming the manifest."""
    where = self.manifest
    if "path" not in header and "primary_label" in header and "filename" in header:
      self.layout = "birdclef"
      names = ("filename", "primary_label", "secondary_labels", "split", "group", "start_s", "end_s")
    else:
      if "path" not in header or ("label" not in header and "labels" not in header):
        raise ValueError(
          f"{where}:1: header must name 'path' and 'label' (single-label) or 'labels' (multi-label), optionally "
          f"'split', 'group', 'start_s,end_s'; or be BirdCLEF's (primary_label, filename, ...); got {header}"
        )
      if "label" in header and "labels" in header:
        raise ValueError(f"{where}:1: header names both 'label' and 'labels'; keep one (labels: multi-label)")
      self.layout = "labels" if "labels" in header else "label"
      names = ("path", self.layout, "split", "group", "start_s", "end_s")
    col = {name: header.index(name) for name in names if name in header}
    if ("start_s" in col) != ("end_s" in col):
      raise ValueError(f"{where}:1: header names only one of 'start_s' and 'end_s'; a segment needs both")
    return col

  def _path(self, cell: str) -> str:
    path = os.path.normpath(os.path.join(self.root, cell))
    if self.layout == "birdclef" and not os.path.exists(path):
      beside = os.path.normpath(os.path.join(self.root, BIRDCLEF_AUDIO, cell))
      if os.path.exists(beside) or os.path.isdir(os.path.join(self.root, BIRDCLEF_AUDIO)):
        return beside
    return path

  def _names(self, row: list[str], col: dict[str, int]) -> tuple[str, ...]:
    """The class names of a row (unique, in cell order); ValueError with the reason for a bad cell."""
    if self.layout == "label":
      label = row[col["label"]].strip()
      return (label,) if label else ()
    if self.layout == "labels":
      cell = row[col["labels"]].strip()
      if not cell:
        return ()  # a negative
      names = [n.strip() for n in cell.split(LABEL_SEPARATOR)]
      if not all(names):
        raise ValueError(f"labels {cell!r} holds an empty class name")
      return tuple(dict.fromkeys(names))
    primary = row[col["primary_label"]].strip()
    if not primary:
      raise ValueError("empty primary_label")
    secondary = parse_secondary_labels(row[col["secondary_labels"]]) if "secondary_labels" in col else ()
    return tuple(dict.fromkeys((primary, *secondary)))

  def _read(self) -> tuple[list[_Row], list[tuple[str, str]]]:
    """The kept rows and the rejected `(path, reason)`; errors name the manifest and line."""
    where = self.manifest
    if not os.path.isfile(where):
      raise ValueError(f"manifest {where} not found")
    with open(where, newline="", encoding="utf-8-sig") as f:
      reader = csv.reader(f)
      header = [h.strip().lower() for h in next(reader, [])]
      col = self._header(header)
      path_column = "filename" if self.layout == "birdclef" else "path"
      self._group_column = "group" in col
      if self._group_column and self.group_by is not None:
        raise ValueError(
          f"{where}: has a group column and group_by={self.group_by.pattern!r} was given too; use one of them"
        )
      rows, rejected, seen = [], [], {}
      for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
          continue  # blank lines are harmless
        if len(row) != len(header):
          raise ValueError(
            f"{where}:{line}: expected {len(header)} fields ({','.join(header)}), got {len(row)}"
          )
        cell = row[col[path_column]].strip()
        if not cell:
          raise ValueError(f"{where}:{line}: empty {path_column}")
        path = self._path(cell)
        split = None
        if "split" in col:
          split = row[col["split"]].strip()
          if not _SPLIT_NAME.fullmatch(split):
            raise ValueError(f"{where}:{line}: split {split!r} must be a non-empty word (letters, digits, _)")
        try:
          segment = _parse_segment(row[col["start_s"]], row[col["end_s"]]) if "start_s" in col else None
          names = self._names(row, col)
        except ValueError as err:
          rejected.append((path, f"line {line}: {err}"))
          continue
        key = Example(path, UNLABELLED, "", "", segment=segment).key
        if key in seen:
          what = path if segment is None else f"{path} segment {segment[0]:g}-{segment[1]:g} s"
          raise ValueError(f"{where}:{line}: {what} is already listed on line {seen[key]}")
        seen[key] = line
        group = row[col["group"]].strip() if "group" in col else None
        rows.append(_Row(path, names, split, group, segment))
    if not rows:
      why = f" ({len(rejected)} row(s) rejected, e.g. {rejected[0][1]})" if rejected else ""
      raise ValueError(f"{where}: no clips listed{why}")
    return rows, rejected

  def examples(self) -> list[Example]:
    return list(self._examples)

  def locations(self) -> tuple[str, ...]:
    return (self.manifest, self.root)
