"""Sources by name, and the one translation of user-facing source options into a source's arguments.

The `pack` command's flags (`--source --root --category --seed --split-ratios --group-by`) and a training
config (`data.source`, `data.root`, `data.category`, `train.seed`, `data.group_by`, the smoke run's folds,
`data.synthetic_*`) name the same things. `source_kwargs` turns either into the keyword arguments of `SOURCES[source]`, with one set of
checks and one set of messages (spelled in the caller's vocabulary through `FLAG_NAMES` / `CONFIG_NAMES`), so
`--category natural` and `data.category="natural"` select the same classes and fail the same way.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from animaljax.data.sources.base import Source, check_split_ratios
from animaljax.data.sources.csv_manifest import CsvSource
from animaljax.data.sources.esc50 import GROUPS, Esc50Source
from animaljax.data.sources.folder import FolderSource
from animaljax.data.sources.splits import compile_group_by
from animaljax.data.sources.synthetic import SyntheticSource

# Explicit name -> class table (no string look-ups into modules); configs and CLIs name a source by its key.
SOURCES: dict[str, type[Source]] = {
  "folder": FolderSource,
  "esc50": Esc50Source,
  "csv": CsvSource,
  "synthetic": SyntheticSource,
}
# The keyword under which each source takes `root`: a csv source reads a manifest file, not a folder.
_ROOT_KEYWORD = {"esc50": "root", "folder": "root", "csv": "manifest"}
# ESC-50's category groups (blocks of ten targets), in target order: the values `category` takes by name.
CATEGORY_GROUPS = tuple(GROUPS)

# How each caller spells the options in `source_kwargs`'s messages (a flag, a config field).
FLAG_NAMES = {
  "source": "--source",
  "root": "--root",
  "category": "--category",
  "seed": "--seed",
  "split_ratios": "--split-ratios",
  "group_by": "--group-by",
  "folds": "folds",  # no pack flag: only the trainer picks folds (smoke runs)
}
CONFIG_NAMES = {
  "source": "data.source",
  "root": "data.root",
  "category": "data.category",
  "seed": "train.seed",
  "split_ratios": "data.split_ratios",
  "group_by": "data.group_by",
  "folds": "the folds of data.train_split/eval_split",
}
# The sources each selecting option applies to: given to another source it is an error, since ignoring it would
# pack other clips than asked for. (Generator settings and `root` are instead ignored where they do not apply: a
# config carries `data.synthetic_*` defaults whatever its source.)
_WHICH = {
  "category": ("esc50",),
  "folds": ("esc50",),
  "split_ratios": ("folder", "csv"),
  "group_by": ("folder", "csv", "esc50"),
}


def make_source(name: str, **kwargs) -> Source:
  """Builds `SOURCES[name](**kwargs)`; ValueError naming the valid sources for an unknown name."""
  if name not in SOURCES:
    raise ValueError(f"unknown source {name!r}; valid: {', '.join(sorted(SOURCES))}")
  return SOURCES[name](**kwargs)


def parse_category(category: str | Sequence[str | int] | None) -> str | list[str | int] | None:
  """An ESC-50 category option -> the value `Esc50Source(category=...)` takes.

  Args:
    category: None or "" (every class); a group name in `CATEGORY_GROUPS` ("animals", "natural", "human",
      "domestic", "urban"); comma-separated category names ("dog, rooster"); or a sequence of names and/or
      ESC-50 target ids.
  Returns:
    None, the group name, or the list of names/ids with surrounding spaces removed. Whether each name is in
    the corpus is checked by `Esc50Source`, which reads the csv (its error lists the names and the groups).
  Raises:
    ValueError: an empty name in a list ("dog,,cat", "dog,") or an item that is neither a name nor an id.
  """
  if category is None or category == "":
    return None
  if isinstance(category, str):
    text = category.strip()
    if text in GROUPS:
      return text
    items: Sequence[str | int] = text.split(",")
  else:
    items = list(category)
  out: list[str | int] = []
  for item in items:
    if isinstance(item, str) and item.strip():
      out.append(item.strip())
    elif isinstance(item, numbers.Integral) and not isinstance(item, bool):
      out.append(int(item))
    else:
      raise ValueError(
        f"category {category!r} has an empty or invalid item {item!r}; give a group "
        f"({', '.join(CATEGORY_GROUPS)}) or comma-separated ESC-50 category names"
      )
  return out


def source_kwargs(
  source: str,
  *,
  root: str | os.PathLike | None = None,
  category: str | Sequence[str | int] | None = None,
  seed: int = 0,
  split_ratios: Sequence[float] | None = None,
  group_by: str | None = None,
  folds: Sequence[int] | None = None,
  synthetic_classes: int | None = None,
  synthetic_clips_per_class: Sequence[int] | None = None,
  synthetic_clip_seconds: float | None = None,
  synthetic_multi_label: bool | None = None,
  names: Mapping[str, str] = FLAG_NAMES,
) -> dict[str, Any]:
  """The `make_source(source, **kwargs)` arguments of a command's or a config's source options.

  Args:
    source: a key of `SOURCES`.
    root: the corpus folder (esc50, folder) or manifest file (csv); required for those, ignored for synthetic.
    category: esc50 only: see `parse_category`; None or "" keeps every class.
    seed: the split seed (folder, csv) or generator seed (synthetic); unused by esc50 (fixed folds).
    split_ratios: folder and csv only: `train,validation,test` weights (None: the source's default).
    group_by: folder, csv and esc50: a regex on file names (without extension) whose first capture group, or
      whole match, names the recording a clip comes from; clips of one recording never land in two carved
      splits. None or "": the source's default (folder: none; csv: its `group` column if any; esc50: the
      `src_file` column).
    folds: esc50 only: keep only these folds (None: all).
    synthetic_classes, synthetic_clips_per_class, synthetic_clip_seconds, synthetic_multi_label: the
      generator's settings (None: its default; multi-label: annotated recordings, see `SyntheticSource`);
      ignored by the other sources.
    names: how the caller spells each option in error messages: `FLAG_NAMES` (pack) or `CONFIG_NAMES` (train).
  Returns:
    The keyword arguments, only those the source takes (so `SOURCES[source](**kwargs)` binds).
  Raises:
    ValueError: an unknown source, a missing root, an option given to a source it does not apply to, a bad
      seed, split ratio, category list or group_by regex. Nothing is read from disk.
  """
  n = {**FLAG_NAMES, **names}
  if source not in SOURCES:
    raise ValueError(f"unknown {n['source']} {source!r}; valid: {', '.join(sorted(SOURCES))}")
  given = {
    "category": category not in (None, ""),
    "folds": folds is not None,
    "split_ratios": split_ratios is not None,
    "group_by": group_by not in (None, ""),
  }
  for option, used in given.items():
    if used and source not in _WHICH[option]:
      valid = " and ".join(_WHICH[option])
      raise ValueError(f"{n[option]} applies to {n['source']} {valid} only, not {source}")
  if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
    raise ValueError(f"{n['seed']} must be an integer >= 0, got {seed!r}")

  kwargs: dict[str, Any] = {}
  if source in _ROOT_KEYWORD:
    if root is None or os.fspath(root) == "":
      what = "the manifest file" if source == "csv" else "the corpus folder"
      raise ValueError(f"{n['source']} {source} needs {n['root']} ({what})")
    kwargs[_ROOT_KEYWORD[source]] = os.fspath(root)
  if given["group_by"]:
    try:
      compile_group_by(group_by)
    except ValueError as err:
      raise ValueError(f"{n['group_by']}: {err}") from None
    kwargs["group_by"] = group_by
  if source == "esc50":
    if given["category"]:
      kwargs["category"] = parse_category(category)
    if folds is not None:
      kwargs["folds"] = sorted({int(k) for k in folds})
    return kwargs  # ESC-50's folds are fixed: no seed
  kwargs["seed"] = int(seed)
  if split_ratios is not None:
    try:
      kwargs["split_ratios"] = check_split_ratios(split_ratios)
    except ValueError as err:
      raise ValueError(f"{n['split_ratios']}: {err}") from None
  if source == "synthetic":
    if synthetic_classes is not None:
      kwargs["num_classes"] = int(synthetic_classes)
    if synthetic_clips_per_class is not None:
      kwargs["clips_per_class"] = tuple(int(k) for k in synthetic_clips_per_class)
    if synthetic_clip_seconds is not None:
      kwargs["clip_seconds"] = float(synthetic_clip_seconds)
    if synthetic_multi_label:
      kwargs["multi_label"] = True
  return kwargs
