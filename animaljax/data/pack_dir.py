"""The output folder of `animaljax.data.packing.pack`: what a finished pack is, and what may be replaced.

Nothing but a pack is deleted: an existing `out_dir` is replaced only with `overwrite=True` and only when it
is a finished pack (`is_pack`: its `summary.json` beside TFDS's `dataset_info.json` and `features.json`) holding
no file that a pack or the loader does not write (`check_replaceable`); a folder that holds the source (its
root, manifest or any listed clip) is refused even with `overwrite`, and so is any other non-empty folder
(`check_out_dir`). A pack is built in a hidden sibling `.{out_dir.name}.incomplete/` marked with
`SCRATCH_MARKER` (`make_scratch`) and renamed into place in one step (`move_into_place`); a scratch folder
without the marker is not ours, so it is refused rather than deleted.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
from collections.abc import Sequence
from typing import Any

from animaljax.data.shard_source import INDEX_FILE
from animaljax.data.sources.base import Example, Source

# What a finished pack folder may hold: the files `pack` writes, the shards, and the loader's index cache.
# `overwrite` deletes such a folder only when it holds nothing else.
METADATA_FILES = ("dataset_info.json", "features.json", "summary.json")
_PACK_FILES = {*METADATA_FILES, "metadata.json", "rejected.csv", "warnings.csv", "duplicates.csv", INDEX_FILE}
_PACK_FILE_PATTERNS = (
  re.compile(r"[\w-]+-\w+\.(tfrecord|array_record)-\d{5}-of-\d{5}"),  # shards
  re.compile(rf"\.{re.escape(INDEX_FILE)}\.\d+\.tmp\.npz"),  # an index being written
)
# The marker `pack` puts in its scratch folder: a folder without it was not made here and is never deleted.
SCRATCH_MARKER = ".animaljax-pack-scratch"


def _within(path: str, folder: str) -> bool:
  """Whether `path` is `folder` or lies under it (both absolute and normalised)."""
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _source_inside(out_dir: pathlib.Path, source: Source, examples: Sequence[Example]) -> str | None:
  """A folder, file or clip of `source` that `out_dir` is or holds (as written or through links), or None."""
  outs = {os.path.normpath(out_dir), os.path.realpath(out_dir)}
  paths = [*source.locations(), *(e.path for e in examples if "://" not in e.path)]  # not generated clips
  for path in paths:
    for p in {os.path.abspath(path), os.path.realpath(path)}:
      if any(_within(p, o) for o in outs):
        return path
  return None


def _not_pack_files(folder: pathlib.Path) -> list[str]:
  """Names in `folder` that no pack holds (subfolders, links, unknown files): `overwrite` must keep them."""
  out = []
  for entry in sorted(os.scandir(folder), key=lambda e: e.name):
    known = entry.name in _PACK_FILES or any(p.fullmatch(entry.name) for p in _PACK_FILE_PATTERNS)
    if not known or entry.is_symlink() or not entry.is_file():
      out.append(entry.name)
  return out


def is_pack(folder: pathlib.Path) -> bool:
  """Whether `folder` holds a finished pack's metadata: our `summary.json` beside TFDS's files."""
  summary = read_summary(folder)
  return (
    isinstance(summary, dict)
    and {"fingerprint", "settings", "version"} <= summary.keys()
    and all((folder / f).is_file() for f in METADATA_FILES)
  )


def check_out_dir(out_dir: pathlib.Path, source: Source, examples: Sequence[Example]) -> bool:
  """Refuses an `out_dir` that no run may replace; True when it holds a finished pack, False when empty/absent.

  Raises:
    FileExistsError: `out_dir` holds the source, is not a folder, is a link, or is a non-empty folder that is
      not a finished pack.
  """
  if out_dir.is_symlink():
    raise FileExistsError(
      f"{out_dir} is a symbolic link (to {os.path.realpath(out_dir)}); give the folder itself as the output"
    )
  if not out_dir.exists():
    return False
  if not out_dir.is_dir():
    raise FileExistsError(f"{out_dir} exists and is not a folder; choose a new folder for the pack")
  if not any(out_dir.iterdir()):
    return False
  held = _source_inside(out_dir, source, examples)
  if held is not None:
    raise FileExistsError(
      f"{out_dir} holds the data being packed ({held}); choose an output folder outside it (it was not changed)"
    )
  if not is_pack(out_dir):
    raise FileExistsError(
      f"{out_dir} is not empty and is not a finished pack; choose a new or empty folder (it was not changed)"
    )
  return True


def check_replaceable(out_dir: pathlib.Path) -> None:
  """FileExistsError unless the pack in `out_dir` holds only what a pack holds (so replacing it loses nothing)."""
  if not is_pack(out_dir):
    raise FileExistsError(f"{out_dir} no longer holds a finished pack; it was not replaced")
  extra = _not_pack_files(out_dir)
  if extra:
    raise FileExistsError(
      f"{out_dir} holds a pack but also {len(extra)} item(s) no pack writes ({', '.join(extra[:5])}); "
      "replacing the pack would delete them: move them out first (nothing was changed)"
    )


def make_scratch(out_dir: pathlib.Path) -> pathlib.Path:
  """Creates the empty, marked scratch folder beside `out_dir`, deleting a killed run's (marked) one first."""
  scratch = out_dir.parent / f".{out_dir.name}.incomplete"
  if scratch.is_symlink() or scratch.exists():
    if scratch.is_symlink() or not scratch.is_dir():
      raise FileExistsError(f"{scratch} is in the way of the pack's scratch folder; move it away")
    if (scratch / SCRATCH_MARKER).is_file():
      shutil.rmtree(scratch)  # a killed run's leftovers
    elif any(scratch.iterdir()):
      raise FileExistsError(
        f"{scratch} is in the way of the pack's scratch folder and was not made by animaljax.pack (no "
        f"{SCRATCH_MARKER} in it); move it away"
      )
    else:
      scratch.rmdir()  # empty: a run killed between creating it and marking it
  scratch.mkdir(parents=True)
  (scratch / SCRATCH_MARKER).write_text("animaljax.pack builds a pack here; deleted when the pack is done\n")
  return scratch


def read_summary(out_dir: pathlib.Path) -> dict[str, Any] | None:
  """The parsed `summary.json` of `out_dir`, or None if it is missing or not JSON."""
  try:
    return json.loads((out_dir / "summary.json").read_text())
  except (OSError, ValueError):
    return None


def move_into_place(built: pathlib.Path, out_dir: pathlib.Path, scratch: pathlib.Path) -> None:
  """Renames the finished folder to `out_dir` so readers never see a partial one.

  An old pack in `out_dir` (checked again here: the decode may have taken hours) is first moved into
  `scratch`, which the caller deletes: no fixed trash name that might be someone else's folder.
  """
  if out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir()):
    out_dir.rmdir()
  if out_dir.exists() or out_dir.is_symlink():
    check_replaceable(out_dir)
    out_dir.rename(scratch / "replaced")
  built.rename(out_dir)
