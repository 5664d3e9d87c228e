"""Splits that we carve (not the ones a layout fixes): stratified by class, grouped, seeded.

A source fixes a clip's split when its layout says so (ESC-50's folds, `Training/` and `Test/` folders, a csv
`split` column); those are the user's and nothing here moves a clip across them. It *carves* a split when it
must decide: validation out of `Training/`, train/validation/test of an unsplit folder or csv. Such clips carry
`Example.carve`, the name of a `Carve` in `Source.carves`, and `carve_examples` assigns them.

Clips that must stay together form one *unit*: clips with the same `Example.group` (one source recording, by
`--group-by` or a `group`/`src_file` column) and clips that the packer found to be exact duplicates (`links`),
transitively, through any clip, also one whose split is fixed. `grouped_split` places whole units, so no
recording and no duplicate lands in two carved splits, while keeping every class in proportion as far as the
units allow. A clip's class here is its `Example.stratum`, else its `label_name`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# Split names of a corpus without folds, in the order `split_ratios` lists them.
SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class Carve:
  """How a source divides one pool of clips: `splits[i]` gets weight `ratios[i]`, shuffled with `seed`."""

  splits: tuple[str, ...]
  ratios: tuple[float, ...]
  seed: int = 0


def check_split_ratios(split_ratios, count: int = len(SPLITS)) -> tuple[float, ...]:
  """`split_ratios` as floats, or ValueError unless it is `count` finite weights >= 0, not all zero."""
  try:
    ratios = tuple(float(r) for r in split_ratios)
  except (TypeError, ValueError):
    raise ValueError(f"split_ratios must be {count} numbers, got {split_ratios!r}") from None
  if len(ratios) != count:
    raise ValueError(f"split_ratios needs exactly {count} numbers, got {len(ratios)}: {split_ratios!r}")
  if not all(0 <= r < math.inf for r in ratios) or sum(ratios) <= 0:
    raise ValueError(f"split_ratios must be finite, >= 0 and not all zero, got {split_ratios!r}")
  return ratios


def compile_group_by(group_by: str | re.Pattern | None) -> re.Pattern | None:
  """The `--group-by` regex compiled (None or "" = no grouping); ValueError for a pattern that does not compile."""
  if group_by is None or isinstance(group_by, re.Pattern):
    return group_by
  if not isinstance(group_by, str):
    raise ValueError(f"group_by must be a regular expression (a string), got {group_by!r}")
  if not group_by:
    return None
  try:
    return re.compile(group_by)
  except re.error as err:
    raise ValueError(f"group_by {group_by!r} is not a valid regular expression: {err}") from None


def group_key(pattern: re.Pattern | None, stem: str) -> str:
  """The group of a file whose name without extension is `stem`: the first capture group of `pattern` (or its
  whole match when it has none) searched in `stem`; "" (a group of its own) when it does not match."""
  if pattern is None:
    return ""
  match = pattern.search(stem)
  if match is None:
    return ""
  return (match.group(1) if pattern.groups else match.group(0)) or ""


def _allocate(n: int, ratios: tuple[float, ...]) -> list[int]:
  """Counts per split for `n` items: largest remainder, then >= 1 in every nonzero split when n allows."""
  total = sum(ratios)
  exact = [n * r / total for r in ratios]
  counts = [int(e) for e in exact]
  by_remainder = sorted(range(len(ratios)), key=lambda i: (counts[i] - exact[i], i))
  for i in by_remainder[: n - sum(counts)]:
    counts[i] += 1
  nonzero = [i for i, r in enumerate(ratios) if r > 0]
  if n >= len(nonzero):
    for i in nonzero:
      if counts[i] == 0:
        donor = max(nonzero, key=lambda j: (counts[j], -j))
        counts[donor] -= 1
        counts[i] += 1
  return counts


def _shuffled(units: list[list[tuple[str, str]]], seed: int, name: str) -> list[list[tuple[str, str]]]:
  """`units` in a seeded random order, then the larger first (stable): big units are placed while every split
  still has room, single clips fill the remaining counts exactly."""
  units = sorted(units, key=lambda u: min(p for p, _ in u))
  rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
  units = [units[i] for i in rng.permutation(len(units))]
  return sorted(units, key=len, reverse=True)


def grouped_split(
  units: Iterable[Sequence[tuple[str, str]]],
  split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
  seed: int = 0,
  split_names: Sequence[str] = SPLITS,
) -> dict[str, str]:
  """Assigns every unit (clips that must stay together) one split, keeping each class in proportion.

  Each class's target counts are its clip count divided by the ratios (largest remainder; >= 1 clip in every
  nonzero split when the class has enough clips). Units are placed one at a time in the split where they
  most reduce the squared distance of the counts from the targets (ties: the earlier split); never in a split
  of weight 0. Units holding several classes go first (seeded by `seed`), then each class's own units, shuffled
  with a generator seeded by `(seed, crc32(class name))`, larger units first. So with single-clip units every
  class gets exactly its target counts, and a class's assignment depends only on its own files and the seed
  (unless a unit ties it to another class).

  Args:
    units: each a sequence of `(path, class name)`; a path appears in one unit only.
    split_ratios: one non-negative weight per split name (normalised; need not sum to 1).
    seed: shuffling seed.
    split_names: the names the ratios refer to.
  Returns:
    path -> split name.
  """
  ratios = check_split_ratios(split_ratios, len(split_names))
  units = [list(u) for u in units if u]
  totals: dict[str, int] = {}
  for unit in units:
    for _, cls in unit:
      totals[cls] = totals.get(cls, 0) + 1
  target = {cls: _allocate(n, ratios) for cls, n in totals.items()}
  placed = {cls: [0] * len(ratios) for cls in totals}
  open_splits = [i for i, r in enumerate(ratios) if r > 0]

  mixed = [u for u in units if len({c for _, c in u}) > 1]
  by_class: dict[str, list] = {}
  for unit in units:
    if len({c for _, c in unit}) == 1:
      by_class.setdefault(unit[0][1], []).append(unit)
  order = _shuffled(mixed, seed, "\0mixed")
  for cls in sorted(by_class):
    order += _shuffled(by_class[cls], seed, cls)

  out: dict[str, str] = {}
  for unit in order:
    counts: dict[str, int] = {}
    for _, cls in unit:
      counts[cls] = counts.get(cls, 0) + 1

    def cost(i: int, counts=counts) -> int:  # growth of sum((placed - target)^2) if the unit goes to split i
      return sum(n * (2 * (placed[c][i] - target[c][i]) + n) for c, n in counts.items())

    best = min(open_splits, key=lambda i: (cost(i), i))
    for cls, n in counts.items():
      placed[cls][best] += n
    for path, _ in unit:
      out[path] = split_names[best]
  return out


def stratified_split(
  paths_by_class: Mapping[str, Sequence[str]],
  split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
  seed: int = 0,
  split_names: Sequence[str] = SPLITS,
) -> dict[str, str]:
  """`grouped_split` of single clips: class name -> paths (any order) in, path -> split name out."""
  units = [[(p, cls)] for cls, paths in paths_by_class.items() for p in paths]
  return grouped_split(units, split_ratios, seed, split_names)


class _Components:
  """Union-find over paths: `join` ties two together, `root` names a path's component."""

  def __init__(self):
    self._parent: dict[str, str] = {}

  def root(self, path: str) -> str:
    parent = self._parent.setdefault(path, path)
    while parent != path:  # path halving
      self._parent[path] = self._parent[parent]
      path, parent = parent, self._parent[parent]
    return path

  def join(self, a: str, b: str) -> None:
    ra, rb = self.root(a), self.root(b)
    if ra != rb:
      self._parent[max(ra, rb)] = min(ra, rb)  # the smaller path names the component: order-independent


def carve_examples(
  examples: Sequence[Any], carves: Mapping[str, Carve], links: Iterable[Sequence[str]] = ()
) -> list[Any]:
  """`examples` (`sources.base.Example`s) with the split of every carved one (`carve` set) decided.

  Args:
    examples: every clip of the source, fixed and carved; only carved ones change.
    carves: `Example.carve` -> how that pool is divided.
    links: sets of `Example.key`s (paths; `path@start-end` for segments) that must stay together besides
      those sharing a `group` (the packer's exact duplicates); they may tie carved clips through a fixed one,
      which stays where it is.
  Returns:
    The examples sorted by (split, path), carved ones with their new split.
  Raises:
    ValueError: an example names a carve that `carves` lacks.
  """
  components = _Components()  # over `Example.key`: the path, or `path@start-end` for a segment of a file
  first_of_group: dict[str, str] = {}
  for e in examples:
    components.root(e.key)
    if e.group:
      components.join(first_of_group.setdefault(e.group, e.key), e.key)
  for paths in links:
    paths = list(paths)
    for p in paths[1:]:
      components.join(paths[0], p)

  assigned: dict[str, str] = {}
  for name in sorted({e.carve for e in examples if e.carve}):
    if name not in carves:
      raise ValueError(f"example carve {name!r} is not one of the source's carves ({', '.join(carves)})")
    units: dict[str, list[tuple[str, str]]] = {}
    for e in examples:
      if e.carve == name:
        units.setdefault(components.root(e.key), []).append((e.key, e.stratum or e.label_name))
    c = carves[name]
    assigned.update(grouped_split(units.values(), c.ratios, c.seed, c.splits))
  out = [dataclasses.replace(e, split=assigned[e.key]) if e.carve else e for e in examples]
  return sorted(out, key=lambda e: (e.split, e.path, e.segment or ()))
