"""What a pack tells its user besides the shards: the CSV files beside them and the printed summary.

  rejected.csv     `path,reason` of every file the source refused to list or that failed to decode
  warnings.csv     `path,reason` of every clip kept with a warning (silent, all samples zero)
  duplicates.csv   exact duplicates, one row per copy (`animaljax.data.duplicates.DUPLICATES_HEADER`)

Each is written with its header even when it has no rows, so a reader never has to ask whether it exists.
"""

from __future__ import annotations

import csv
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from animaljax.data.duplicates import DUPLICATES_HEADER

REASON_HEADER = ("path", "reason")


def write_csvs(
  folder: os.PathLike | str,
  rejected: Sequence[tuple[str, str]],
  warned: Sequence[tuple[str, str]],
  duplicate_rows: Sequence[Sequence[str]],
) -> None:
  """Writes rejected.csv, warnings.csv and duplicates.csv into `folder`."""
  for filename, header, rows in (
    ("rejected.csv", REASON_HEADER, rejected),
    ("warnings.csv", REASON_HEADER, warned),
    ("duplicates.csv", DUPLICATES_HEADER, duplicate_rows),
  ):
    with open(os.path.join(folder, filename), "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(header)
      writer.writerows(rows)


def _leak_lines(summary: dict[str, Any]) -> list[str]:
  """The duplicates and groups of `summary`, in words."""
  lines = []
  d = summary["duplicates"]
  if d["clusters"]:
    lines.append(
      f"  duplicates: {d['clusters']} set(s) of identical clips ({d['files']} files, duplicates.csv); "
      + (
        f"{d['straddling_clusters']} across splits that the layout fixes (reported, not moved)"
        if d["straddling_clusters"]
        else "none across splits"
      )
      + (f"; {d['conflicting_labels']} with different labels" if d["conflicting_labels"] else "")
    )
  g = summary["groups"]
  if g["by"]:
    lines.append(
      f"  groups: {g['count']} recording(s) by {g['by']} ({g['multi_clip']} of several clips, "
      f"{g['ungrouped']} clip(s) without a group)"
      + (f"; {g['straddling']} across splits that the layout fixes" if g["straddling"] else "")
    )
  return lines


def print_summary(summary: dict[str, Any], rejected, warned, out_dir: pathlib.Path) -> None:
  """Prints what `pack` wrote: records per split and class, then rejects, warnings, duplicates and groups."""
  print(f"\npacked {summary['source']} -> {out_dir} ({summary['file_format']}, {summary['sample_rate']} Hz)")
  for split, s in summary["splits"].items():
    counts = ", ".join(f"{k}={v}" for k, v in s["per_class"].items())
    print(
      f"  {split:>10}: {s['num_examples']:6d} records, {s['seconds']:9.1f} s, {s['num_shards']} shard(s): {counts}"
    )
  print(f"  rejected: {len(rejected)} file(s) (rejected.csv)")
  for path, reason in rejected[:20]:  # AudioSet lists thousands of clips not downloaded: the csv has them all
    print(f"    {path}: {reason}")
  if len(rejected) > 20:
    print(f"    ... {len(rejected) - 20} more (rejected.csv)")
  if warned:
    print(f"  warnings: {len(warned)} file(s) kept with a warning (warnings.csv)")
  for path, reason in warned[:20]:
    print(f"    {path}: {reason}")
  if len(warned) > 20:
    print(f"    ... {len(warned) - 20} more (warnings.csv)")
  for line in _leak_lines(summary):
    print(line)
