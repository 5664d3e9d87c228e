"""Labelled windows for a linear head: a labels CSV `file,start_s,end_s,label` matched to a `WindowTable`, a
stratified seeded split, and the metrics of a held-out set.

A window takes a row's label when it is of the same file and overlaps the row's span by at least half of the
shorter of the two (a 1 s call inside a 5 s window labels it; a window that only grazes the span does not).
Files match by their path as written, else by their absolute path, else by their name when that name is unique
in the table. A window matched by rows of different labels is ambiguous and left out (counted).
"""

from __future__ import annotations

import csv
import os
import pathlib

import numpy as np

from animaljax.retrieval.table import WindowTable

COLUMNS = ("file", "start_s", "end_s", "label")


def read_labels(path: str | os.PathLike) -> list[tuple[str, float, float, str]]:
  """The rows of a labels CSV (header `file,start_s,end_s,label`). ValueError naming the first bad row."""
  path = pathlib.Path(path)
  with path.open(newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
      raise ValueError(
        f"{path}: the labels CSV needs the columns {','.join(COLUMNS)}; missing {','.join(missing)}"
      )
    rows = []
    for line, row in enumerate(reader, start=2):
      try:
        start, end = float(row["start_s"]), float(row["end_s"])
      except (TypeError, ValueError):
        raise ValueError(f"{path}:{line}: start_s and end_s must be numbers") from None
      if not end > start or start < 0:
        raise ValueError(f"{path}:{line}: needs 0 <= start_s < end_s, got {start}, {end}")
      label = (row["label"] or "").strip()
      if not label or not (row["file"] or "").strip():
        raise ValueError(f"{path}:{line}: empty file or label")
      rows.append((row["file"].strip(), start, end, label))
  if not rows:
    raise ValueError(f"{path}: no labelled rows")
  return rows


def match_windows(table: WindowTable, rows) -> tuple[np.ndarray, list[str], dict[str, int]]:
  """Window indices of `table` and their labels for labels-CSV `rows`; and counts {"rows_unmatched",
  "ambiguous"} (rows that label no window; windows with conflicting labels, left out)."""
  by_path: dict[str, list[int]] = {}
  for i, f in enumerate(table.file):
    by_path.setdefault(f, []).append(i)
  absolute = {os.path.abspath(f): f for f in by_path}
  names: dict[str, list[str]] = {}
  for f in by_path:
    names.setdefault(pathlib.PurePath(f).name, []).append(f)

  def windows_of(file: str) -> list[int]:
    if file in by_path:
      return by_path[file]
    if os.path.abspath(file) in absolute:
      return by_path[absolute[os.path.abspath(file)]]
    same = names.get(pathlib.PurePath(file).name, [])
    return by_path[same[0]] if len(same) == 1 else []

  labels: dict[int, set[str]] = {}
  unmatched = 0
  for file, start, end, label in rows:
    hit = False
    for i in windows_of(file):
      s, e = table.start_s[i], table.end_s[i]
      if min(e, end) - max(s, start) >= 0.5 * min(e - s, end - start) - 1e-9:
        labels.setdefault(i, set()).add(label)
        hit = True
    unmatched += not hit
  keep = sorted(i for i, ls in labels.items() if len(ls) == 1)
  counts = {"rows_unmatched": unmatched, "ambiguous": len(labels) - len(keep)}
  return np.asarray(keep, np.int64), [next(iter(labels[i])) for i in keep], counts


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, held-out) index arrays: per class a seeded shuffle, `fraction` of it (rounded, at least one when
  the class has 2+ items, never all) held out."""
  rng = np.random.default_rng(seed)
  labels = np.asarray(labels)
  train, held = [], []
  for c in sorted(set(labels.tolist())):
    idx = rng.permutation(np.flatnonzero(labels == c))
    k = min(len(idx) - 1, max(1 if len(idx) > 1 else 0, round(fraction * len(idx)))) if fraction > 0 else 0
    held += idx[:k].tolist()
    train += idx[k:].tolist()
  return np.sort(np.asarray(train, np.int64)), np.sort(np.asarray(held, np.int64))


def metrics(truth, predicted, classes) -> dict:
  """{"n", "accuracy", "balanced_accuracy", "per_class": {c: {"n", "recall", "precision"}}} (JSON-able)."""
  truth, predicted = np.asarray(truth), np.asarray(predicted)
  per = {}
  for c in classes:
    t, p = truth == c, predicted == c
    per[c] = {
      "n": int(t.sum()),
      "recall": float((t & p).sum() / t.sum()) if t.any() else None,
      "precision": float((t & p).sum() / p.sum()) if p.any() else None,
    }
  recalls = [v["recall"] for v in per.values() if v["recall"] is not None]
  return {
    "n": int(len(truth)), "accuracy": float((truth == predicted).mean()) if len(truth) else None,
    "balanced_accuracy": float(np.mean(recalls)) if recalls else None, "per_class": per,
  }  # fmt: skip
