"""Sources by name, and the one translation of user-facing source options into a source's arguments.

The `pack` command's flags (`--source --root --category --seed --split-ratios --group-by`; raven's
`--label-column --min-overlap --classes --unannotated`) and a training config (`data.source`, `data.root`,
`data.category`, `train.seed`, `data.group_by`, the smoke run's folds, `data.synthetic_*`; `data.label_column`
...) name the same things. `source_kwargs` turns either into the keyword arguments of `SOURCES[source]`, with one set of
checks and one set of messages (spelled in the caller's vocabulary through `FLAG_NAMES` / `CONFIG_NAMES`), so
`--category natural` and `data.category="natural"` select the same classes and fail the same way.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from animaljax.data.sources.audioset import AudioSetSource
from animaljax.data.sources.base import Source, check_split_ratios
from animaljax.data.sources.csv_manifest import CsvSource
from animaljax.data.sources.esc50 import GROUPS, Esc50Source
from animaljax.data.sources.folder import FolderSource
from animaljax.data.sources.raven import UNANNOTATED, RavenSource, parse_classes
from animaljax.data.sources.splits import compile_group_by
from animaljax.data.sources.synthetic import SyntheticSource

# Explicit name -> class table (no string look-ups into modules); configs and CLIs name a source by its key.
SOURCES: dict[str, type[Source]] = {
  "folder": FolderSource,
  "esc50": Esc50Source,
  "csv": CsvSource,
  "synthetic": SyntheticSource,
  "raven": RavenSource,
  "audioset": AudioSetSource,
}
# The keyword under which each source takes `root`: a csv source reads a manifest file, not a folder.
_ROOT_KEYWORD = {"esc50": "root", "folder": "root", "csv": "manifest", "raven": "root", "audioset": "root"}
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
  "include_unbalanced": "--include-unbalanced",
  "label_column": "--label-column",
  "min_overlap_seconds": "--min-overlap",
  "classes": "--classes",
  "unannotated": "--unannotated",
}
CONFIG_NAMES = {
  "source": "data.source",
  "root": "data.root",
  "category": "data.category",
  "seed": "train.seed",
  "split_ratios": "data.split_ratios",
  "group_by": "data.group_by",
  "folds": "the folds of data.train_split/eval_split",
  "include_unbalanced": "data.include_unbalanced",
  "label_column": "data.label_column",
  "min_overlap_seconds": "data.min_overlap_seconds",
  "classes": "data.classes",
  "unannotated": "data.unannotated",
}
# The sources each selecting option applies to: given to another source it is an error, since ignoring it would
# pack other clips than asked for. (Generator settings and `root` are instead ignored where they do not apply: a
# config carries `data.synthetic_*` defaults whatever its source.)
_WHICH = {
  "category": ("esc50", "audioset"),
  "include_unbalanced": ("audioset",),
  "folds": ("esc50",),
  "split_ratios": ("folder", "csv", "raven"),
  "group_by": ("folder", "csv", "esc50", "raven"),
  "label_column": ("raven",),
  "min_overlap_seconds": ("raven",),
  "classes": ("raven",),
  "unannotated": ("raven",),
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
  include_unbalanced: bool | None = None,
  label_column: str | None = None,
  min_overlap_seconds: float | None = None,
  classes: str | Sequence[str] | None = None,
  unannotated: str | None = None,
  names: Mapping[str, str] = FLAG_NAMES,
) -> dict[str, Any]:
  """The `make_source(source, **kwargs)` arguments of a command's or a config's source options.

  Args:
    source: a key of `SOURCES`.
    root: the corpus folder (esc50, folder, raven) or manifest file (csv); required for those, ignored for
      synthetic.
    category: esc50: see `parse_category`; audioset: an ontology node's name or id ("Animal", "/m/0jbk"), or a
      list of them, whose subtree is kept (`AudioSetSource`); None or "" keeps every class.
    seed: the split seed (folder, csv, raven) or generator seed (synthetic); unused by esc50 (fixed folds).
    split_ratios: folder, csv and raven only: `train,validation,test` weights (None: the source's default).
    group_by: folder, csv, esc50 and raven: a regex on file names (without extension) whose first capture
      group, or whole match, names the recording a clip comes from; clips of one recording never land in two
      carved splits. None or "": the source's default (folder, raven: none; csv: its `group` column if any;
      esc50: the `src_file` column).
    folds: esc50 only: keep only these folds (None: all).
    include_unbalanced: audioset only: also pack unbalanced_train_segments.csv as train.
    synthetic_classes, synthetic_clips_per_class, synthetic_clip_seconds, synthetic_multi_label: the
      generator's settings (None: its default; multi-label: annotated recordings, see `SyntheticSource`);
      ignored by the other sources.
    label_column, min_overlap_seconds, classes, unannotated: raven only (None or "": the source's default):
      the tables' label column, the overlap in seconds that switches a box's class on in a window, the labels
      to keep (comma-separated), and "reject" or "negative" for a recording without a table (`RavenSource`).
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
    "include_unbalanced": bool(include_unbalanced),
    "label_column": label_column not in (None, ""),
    "min_overlap_seconds": min_overlap_seconds is not None,
    "classes": classes not in (None, "", ()),
    "unannotated": unannotated not in (None, ""),
  }
  for option, used in given.items():
    if used and source not in _WHICH[option]:
      *rest, last = _WHICH[option]
      valid = f"{', '.join(rest)} and {last}" if rest else last
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
  if source == "audioset":
    if given["category"]:  # one ontology node (its name may hold commas: "Domestic animals, pets") or a list
      kwargs["category"] = (
        category.strip() if isinstance(category, str) else [str(c).strip() for c in category]
      )
    if include_unbalanced:
      kwargs["include_unbalanced"] = True
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
  if source == "raven":
    kwargs.update(_raven_kwargs(label_column, min_overlap_seconds, classes, unannotated, n))
  return kwargs


def _raven_kwargs(
  label_column, min_overlap_seconds, classes, unannotated, n: Mapping[str, str]
) -> dict[str, Any]:
  """`RavenSource`'s own options, checked (the tables are not read here)."""
  kwargs: dict[str, Any] = {}
  if label_column not in (None, ""):
    kwargs["label_column"] = str(label_column).strip()
  if min_overlap_seconds is not None:
    value = min_overlap_seconds
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < float("inf"):
      raise ValueError(f"{n['min_overlap_seconds']} must be a number of seconds >= 0, got {value!r}")
    kwargs["min_overlap_seconds"] = float(value)
  if classes not in (None, "", ()):
    try:
      kwargs["classes"] = parse_classes(classes)
    except ValueError as err:
      raise ValueError(f"{n['classes']}: {err}") from None
  if unannotated not in (None, ""):
    if unannotated not in UNANNOTATED:
      raise ValueError(f"{n['unannotated']} must be one of {', '.join(UNANNOTATED)}, got {unannotated!r}")
    kwargs["unannotated"] = unannotated
  return kwargs
