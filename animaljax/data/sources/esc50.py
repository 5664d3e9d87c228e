"""ESC-50 (Piczak 2015): `meta/esc50.csv` + `audio/<filename>`, five predefined folds.

The split of each clip is its fold (`fold1`..`fold5`); the cross-validation protocol picks which folds train
and which evaluate, so the source does not decide. Works on the full corpus and on any subset whose csv keeps
the original columns (e.g. the 400-clip animal subset).

A clip's `group` is its `src_file` (the freesound recording it was cut from), or what `group_by` finds in its
file name. The folds are already grouped by recording, so the packer only reports groups and exact
duplicates that straddle folds (in the animal subset: two recordings, each cut into a hen and a rooster clip).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from animaljax.data.sources.base import Example, Source
from animaljax.data.sources.splits import compile_group_by, group_key

_COLUMNS = ("filename", "fold", "target", "category")
# ESC-50's five major categories are blocks of ten targets; `category` takes their names.
GROUPS = {
  "animals": range(0, 10),
  "natural": range(10, 20),
  "human": range(20, 30),
  "domestic": range(30, 40),
  "urban": range(40, 50),
}


def _read_rows(csv_path: str) -> list[tuple[str, int, int, str, str]]:
  """(filename, fold, target, category, src_file or "") per row, with errors naming the csv and line."""
  if not os.path.isfile(csv_path):
    raise ValueError(f"ESC-50 metadata {csv_path} not found (expected <root>/meta/esc50.csv)")
  with open(csv_path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
      raise ValueError(f"{csv_path}: missing column(s) {missing}; header is {reader.fieldnames}")
    rows, seen = [], {}
    for row in reader:
      try:
        fold, target = int(row["fold"]), int(row["target"])
      except (TypeError, ValueError):
        raise ValueError(
          f"{csv_path}:{reader.line_num}: fold and target must be integers, got {row['fold']!r}, {row['target']!r}"
        ) from None
      if not row["filename"] or not row["category"] or fold < 1 or target < 0:
        raise ValueError(f"{csv_path}:{reader.line_num}: malformed row {row}")
      if row["filename"] in seen:  # listed twice it would be packed twice, maybe in two folds
        raise ValueError(
          f"{csv_path}:{reader.line_num}: {row['filename']} is already listed on line {seen[row['filename']]}"
        )
      seen[row["filename"]] = reader.line_num
      rows.append((row["filename"], fold, target, row["category"], (row.get("src_file") or "").strip()))
  if not rows:
    raise ValueError(f"{csv_path}: no rows")
  return rows


class Esc50Source(Source):
  """ESC-50 clips with split `fold{k}` and `fold=k`.

  Args:
    root: folder holding `meta/esc50.csv` and `audio/`.
    category: None keeps every class in the csv with label = ESC-50 target (class_names indexed by target);
      a group name ("animals", "natural", "human", "domestic", "urban") or a list of category names and/or
      target ids keeps those classes, relabelled 0..N-1 in target order.
    folds: keep only these folds (None: all).
    group_by: None groups clips by the csv's `src_file` column; a regex groups them by its first capture group
      (or whole match) in the file name without extension instead.
  """

  name = "esc50"

  def __init__(
    self,
    root: str | os.PathLike,
    *,
    category: str | Sequence[str | int] | None = None,
    folds: Sequence[int] | None = None,
    group_by: str | None = None,
  ):
    self.root = os.path.abspath(os.fspath(root))
    self.group_by = compile_group_by(group_by)
    self.category = category if category is None or isinstance(category, str) else tuple(category)
    self.folds = None if folds is None else tuple(int(k) for k in folds)
    csv_path = os.path.join(self.root, "meta", "esc50.csv")
    rows = _read_rows(csv_path)
    audio_dir = os.path.join(self.root, "audio")
    if not os.path.isdir(audio_dir):
      raise ValueError(f"ESC-50 audio folder {audio_dir} not found")

    names: dict[int, str] = {}
    for _, _, target, cat, _ in rows:
      if names.setdefault(target, cat) != cat:
        raise ValueError(f"{csv_path}: target {target} is both {names[target]!r} and {cat!r}")
    keep = self._selected_targets(names)
    if category is None:
      # Labels stay ESC-50 targets; a subset csv may lack some, which get a placeholder name.
      relabel = {t: t for t in keep}
      self.class_names = tuple(names.get(t, f"target_{t}") for t in range(max(keep) + 1))
    else:
      relabel = {t: i for i, t in enumerate(keep)}
      self.class_names = tuple(names[t] for t in keep)

    self._examples = sorted(
      (
        Example(os.path.join(audio_dir, fn), relabel[t], names[t], f"fold{fold}", fold, self._group(fn, src))
        for fn, fold, t, _, src in rows
        if t in relabel and (self.folds is None or fold in self.folds)
      ),
      key=lambda e: (e.split, e.path),
    )
    if not self._examples:
      raise ValueError(f"{csv_path}: no clips left after category={category!r}, folds={folds!r}")

  def _group(self, filename: str, src_file: str) -> str:
    if self.group_by is None:
      return src_file
    return group_key(self.group_by, os.path.splitext(filename)[0])

  def split_settings(self) -> dict:
    return {"group_by": self.group_by.pattern if self.group_by else "src_file"}

  def _selected_targets(self, names: dict[int, str]) -> list[int]:
    """Sorted targets the `category` filter keeps, each present in the csv."""
    cat = self.category
    if cat is None:
      return sorted(names)
    if isinstance(cat, str):
      if cat not in GROUPS:
        raise ValueError(
          f"unknown ESC-50 category group {cat!r}; use one of {', '.join(GROUPS)} or a list of names"
        )
      targets = [t for t in GROUPS[cat] if t in names]
      if not targets:
        raise ValueError(
          f"the csv has no clips of group {cat!r} (targets {GROUPS[cat].start}-{GROUPS[cat].stop - 1})"
        )
      return targets
    by_name = {n: t for t, n in names.items()}
    targets = set()
    for item in cat:
      if isinstance(item, int) and item in names:
        targets.add(item)
      elif isinstance(item, str) and item in by_name:
        targets.add(by_name[item])
      else:
        raise ValueError(
          f"ESC-50 category {item!r} is not in the csv; known: {', '.join(sorted(by_name))}; or one group "
          f"alone: {', '.join(GROUPS)}"
        )
    return sorted(targets)

  def examples(self) -> list[Example]:
    return list(self._examples)

  def locations(self) -> tuple[str, ...]:
    return (self.root,)
