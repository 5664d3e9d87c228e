"""What a pack reports about leaks between its splits: exact duplicates and recording groups.

Two clips are exact duplicates when their decoded samples at the pack's rate are identical (the digest of
`animaljax.data.decoding`): the same clip renamed, copied into another class folder or re-encoded losslessly
(FLAC -> WAV) is one (and so are two all-zero clips of one length). The packer keeps every cluster of duplicates, and every recording group, inside one
*carved* split (`animaljax.data.sources.splits.carve_examples`); a split that the layout fixes is the user's,
so duplicates and groups that straddle such splits are only reported:

  duplicates.csv   `path,duplicate_of,split,duplicate_of_split,label,duplicate_of_label`: one row per packed
                   clip that duplicates an earlier one (in path order) of its cluster; header only if none. A
                   segment of a file is named by its `Example.key`, `path@start-end`
  summary.json     `duplicates` (`duplicate_counts`) and `groups` (`group_counts`)
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from animaljax.data.sources.base import Example, Source

DUPLICATES_HEADER = ("path", "duplicate_of", "split", "duplicate_of_split", "label", "duplicate_of_label")


def _order(e: Example) -> tuple:
  """Path order; segments of one file by their times."""
  return (e.path, e.segment or ())


def clusters(digests: Iterable[tuple[Example, str]]) -> list[list[Example]]:
  """Clusters of >= 2 examples with the same digest, each sorted by path, in order of their first path.

  Args:
    digests: `(example, digest)` pairs; an empty digest (a clip that did not decode) is nobody's duplicate.
  """
  by_digest: dict[str, list[Example]] = collections.defaultdict(list)
  for example, digest in digests:
    if digest:
      by_digest[digest].append(example)
  found = [sorted(c, key=_order) for c in by_digest.values() if len(c) > 1]
  return sorted(found, key=lambda c: _order(c[0]))


def duplicate_rows(found: Sequence[Sequence[Example]]) -> list[tuple[str, ...]]:
  """The rows of duplicates.csv (see the module docstring) for `clusters(...)`."""
  rows = []
  for cluster in found:
    first = cluster[0]
    for e in cluster[1:]:
      rows.append((e.key, first.key, e.split, first.split, e.label_name, first.label_name))
  return rows


def duplicate_counts(found: Sequence[Sequence[Example]]) -> dict[str, int]:
  """`clusters` (sets of identical clips), `files` in them, `extra_copies` (files less clusters), the clusters
  (`straddling_clusters`) and files (`straddling_files`) of clusters in more than one split, and the clusters
  whose copies carry different labels (`conflicting_labels`)."""
  straddling = [c for c in found if len({e.split for e in c}) > 1]
  return {
    "clusters": len(found),
    "files": sum(len(c) for c in found),
    "extra_copies": sum(len(c) - 1 for c in found),
    "straddling_clusters": len(straddling),
    "straddling_files": sum(len(c) for c in straddling),
    "conflicting_labels": sum(len({e.label_name for e in c}) > 1 for c in found),
  }


def group_counts(packed: Iterable[Example], by: str | None) -> dict[str, object]:
  """How the packed clips fall into recording groups (`Example.group`).

  Returns:
    `by` (what named the groups: a regex, "src_file", "group column" or None), `count` (distinct groups),
    `files` (clips with a group), `ungrouped` (clips without one: each its own), `multi_clip` (groups of more
    than one clip) and `straddling` (groups in more than one split: only where the layout fixed the splits).
  """
  splits: dict[str, set[str]] = collections.defaultdict(set)
  sizes: collections.Counter = collections.Counter()
  ungrouped = 0
  for e in packed:
    if e.group:
      splits[e.group].add(e.split)
      sizes[e.group] += 1
    else:
      ungrouped += 1
  return {
    "by": by,
    "count": len(sizes),
    "files": sum(sizes.values()),
    "ungrouped": ungrouped,
    "multi_clip": sum(n > 1 for n in sizes.values()),
    "straddling": sum(len(s) > 1 for s in splits.values()),
  }


def links(digests: Mapping[str, str]) -> list[list[str]]:
  """Clips that share a digest (`Example.key -> digest`; "" for none), as lists of >= 2 keys: what must stay
  together."""
  by_digest: dict[str, list[str]] = collections.defaultdict(list)
  for key, digest in digests.items():
    if digest:
      by_digest[digest].append(key)
  return [sorted(p) for p in by_digest.values() if len(p) > 1]


def report(
  packed: Sequence[tuple[Example, str]], source: Source
) -> tuple[dict[str, Any], list[tuple[str, ...]]]:
  """The `summary.json` entries `duplicates`, `groups` and `splitting` (what decided the splits: the
  source's `split_settings()` and its carves), and the rows of duplicates.csv.

  Args:
    packed: `(example, digest)` of every clip that became records, with its final split.
    source: the source packed.
  """
  found = clusters(packed)
  settings = source.split_settings()
  carved = {
    pool: {"splits": list(c.splits), "ratios": list(c.ratios)} for pool, c in sorted(source.carves.items())
  }
  entries = {
    "duplicates": duplicate_counts(found),
    "groups": group_counts([e for e, _ in packed], settings.get("group_by")),
    "splitting": {**settings, "carved": carved},
  }
  return entries, duplicate_rows(found)
