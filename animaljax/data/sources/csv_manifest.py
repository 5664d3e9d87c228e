"""A csv manifest: `path,label[,split][,group]`, one clip per row.

Paths are relative to the manifest's folder unless absolute or `root` is given. Labels are class names; ids
follow the sorted unique names. An empty label makes the clip unlabelled. Without a split column, labelled clips
get a stratified train/validation/test split, carved so that clips of one `group` (the recording they come
from; an empty cell is a group of its own) and exact duplicates stay in one split, and unlabelled ones go to
"train" (a SimCLR corpus). `group_by` (a regex on file names) may stand in for a group column. Extra columns
are ignored.
"""

from __future__ import annotations

import csv
import os
import re

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


class CsvSource(Source):
  """Clips listed in a csv file.

  Args:
    manifest: the csv, with a header naming at least `path` and `label` (optionally `split`, `group`).
    root: folder that relative paths are relative to (default: the manifest's folder).
    split_ratios: (train, validation, test) weights when there is no split column.
    seed: seed of that split.
    group_by: a regex whose first capture group (or whole match) in a file's name without extension names its
      recording, for a manifest without a group column (ValueError with one: say which groups to use).
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
    rows = self._read()
    self.class_names = tuple(sorted({label for _, label, _, _ in rows if label}))
    ids = {c: i for i, c in enumerate(self.class_names)}

    has_split = rows[0][2] is not None
    self.carves = {} if has_split else {"all": Carve(SPLITS, self.split_ratios, self.seed)}
    examples = []
    for path, label, split, group in rows:
      if group is None:
        group = group_key(self.group_by, os.path.splitext(os.path.basename(path))[0])
      carve = "all" if label and not has_split else ""
      label_id = ids[label] if label else UNLABELLED
      examples.append(Example(path, label_id, label, split or "train", group=group, carve=carve))
    self._examples = carve_examples(examples, self.carves)  # provisional: the packer adds the duplicates

  def split_settings(self) -> dict:
    return {
      "group_by": self.group_by.pattern
      if self.group_by
      else ("group column" if self._group_column else None),
      "seed": self.seed,
      "split_ratios": list(self.split_ratios),
    }

  def _read(self) -> list[tuple[str, str, str | None, str | None]]:
    """(absolute path, label, split or None, group or None) per row; errors name the manifest and line."""
    where = self.manifest
    if not os.path.isfile(where):
      raise ValueError(f"manifest {where} not found")
    with open(where, newline="", encoding="utf-8-sig") as f:
      reader = csv.reader(f)
      header = [h.strip().lower() for h in next(reader, [])]
      missing = [c for c in ("path", "label") if c not in header]
      if missing:
        raise ValueError(f"{where}:1: header must name 'path' and 'label' (optionally 'split'); got {header}")
      col = {name: header.index(name) for name in ("path", "label", "split", "group") if name in header}
      self._group_column = "group" in col
      if self._group_column and self.group_by is not None:
        raise ValueError(
          f"{where}: has a group column and group_by={self.group_by.pattern!r} was given too; use one of them"
        )
      rows, seen = [], {}
      for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
          continue  # blank lines are harmless
        if len(row) != len(header):
          raise ValueError(
            f"{where}:{line}: expected {len(header)} fields ({','.join(header)}), got {len(row)}"
          )
        path = row[col["path"]].strip()
        if not path:
          raise ValueError(f"{where}:{line}: empty path")
        path = os.path.normpath(os.path.join(self.root, path))
        if path in seen:
          raise ValueError(f"{where}:{line}: {path} is already listed on line {seen[path]}")
        seen[path] = line
        split = None
        if "split" in col:
          split = row[col["split"]].strip()
          if not _SPLIT_NAME.fullmatch(split):
            raise ValueError(f"{where}:{line}: split {split!r} must be a non-empty word (letters, digits, _)")
        group = row[col["group"]].strip() if "group" in col else None
        rows.append((path, row[col["label"]].strip(), split, group))
    if not rows:
      raise ValueError(f"{where}: no clips listed")
    return rows

  def examples(self) -> list[Example]:
    return list(self._examples)

  def locations(self) -> tuple[str, ...]:
    return (self.manifest, self.root)
