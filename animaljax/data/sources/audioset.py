"""AudioSet (Gemmeke et al. 2017): Google's segment lists and ontology, with the clips the user downloaded.

Files read under `root` (each directly in it or in `root/metadata/`, as PANNs keeps them):

  balanced_train_segments.csv     -> split "train" (a seeded "validation" is carved out of it)
  unbalanced_train_segments.csv   -> "train" too, only with `include_unbalanced` (2M rows)
  eval_segments.csv               -> "test"
  class_labels_indices.csv        `index,mid,display_name`: the classes, in index order
  ontology.json                   `[{id, name, description, citation_uri, positive_examples, child_ids,
                                  restrictions}, ...]`: needed only for `category`

A segments csv starts with three comment lines (`# Segments csv created ...`, `# num_ytids=..., ...`,
`# YTID, start_seconds, end_seconds, positive_labels`), then rows such as
`--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"`. A missing segments csv is an empty list (someone who
downloaded only the balanced set), but at least one must exist.

Clips: the audio files anywhere under `root` named by YouTube id, `<YTID>.<ext>` or PANNs' `Y<YTID>.<ext>`, also
with the segment's times, `Y<YTID>_<start>_<end>.<ext>` (ext: `animaljax.audio.io.AUDIO_EXTENSIONS`, .opus,
.m4a). The folder is walked once. Each downloaded file holds just its 10 s segment, so it is packed whole. A
listed clip with no file is "not downloaded": left out, listed in `rejected` (the packer writes rejected.csv)
and counted in `split_settings()["missing"]` (in summary.json's `splitting`); with no clip found at all the
source refuses (ValueError). A YouTube id listed in two csvs is kept in the first of eval, balanced,
unbalanced (counted as `listed_twice`).

`category` keeps a subtree of the ontology: the named node (by name, case-insensitive, or id: "Animal",
"/m/0jbk") and every descendant through `child_ids`, transitively (the ontology is a DAG: "Growling" sits under
both Dog and Cat). The kept classes are those of class_labels_indices.csv in the subtree (abstract nodes are
not classes), relabelled 0..N-1 in index order; `class_names` are their display names and `class_ids` their
ontology ids (both reach summary.json). A clip is multi-label: every kept class of its positive labels; a clip
with none of them is *dropped* from the listing, not kept as a negative (AudioSet labels only what is present,
so such a clip is unlabelled for these classes, not verified to be free of them), and counted in
`split_settings()["no_kept_label"]`.

Validation is carved from train, seeded, grouped by YouTube id and stratified by each clip's rarest class.
"""

from __future__ import annotations

import collections
import csv
import difflib
import json
import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from animaljax.audio.io import AUDIO_EXTENSIONS
from animaljax.data.sources.base import Example, Source
from animaljax.data.sources.splits import Carve, carve_examples

# csv file -> split, in the order a YouTube id listed twice is kept.
SEGMENT_FILES = (
  ("eval_segments.csv", "test"),
  ("balanced_train_segments.csv", "train"),
  ("unbalanced_train_segments.csv", "train"),
)
CLASS_FILE = "class_labels_indices.csv"
ONTOLOGY_FILE = "ontology.json"
CLIP_EXTENSIONS = (*AUDIO_EXTENSIONS, ".opus", ".m4a")
# `Y<YTID>_<start>_<end>` (PANNs' copies keep the segment's times in the name)
_TIMES = re.compile(r"(.+)_\d+(?:\.\d+)?_\d+(?:\.\d+)?")


class Segment(NamedTuple):
  """One row of a segments csv."""

  ytid: str
  start_s: float
  end_s: float
  labels: tuple[str, ...]  # ontology ids (mids)


def read_segments(path: str) -> list[Segment]:
  """The rows of an AudioSet segments csv (comment lines skipped); ValueError naming the file and line."""
  out = []
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.reader(f, skipinitialspace=True)  # "id, 30.000, 40.000, "/m/a,/m/b"": spaces after commas
    for row in reader:
      if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
        continue
      if len(row) != 4:
        raise ValueError(
          f"{path}:{reader.line_num}: expected 4 fields (YTID, start_seconds, end_seconds, positive_labels), "
          f"got {len(row)}: {row}"
        )
      try:
        start, end = float(row[1]), float(row[2])
      except ValueError:
        raise ValueError(
          f"{path}:{reader.line_num}: start/end seconds must be numbers, got {row[1:3]}"
        ) from None
      labels = tuple(m.strip() for m in row[3].split(",") if m.strip())
      out.append(Segment(row[0].strip(), start, end, labels))
  return out


def read_class_labels(path: str) -> list[tuple[int, str, str]]:
  """`(index, mid, display_name)` of class_labels_indices.csv, sorted by index; ValueError if malformed."""
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    if not {"index", "mid", "display_name"} <= set(reader.fieldnames or ()):
      raise ValueError(f"{path}: header must be index,mid,display_name; got {reader.fieldnames}")
    rows = []
    for row in reader:
      try:
        rows.append((int(row["index"]), row["mid"].strip(), row["display_name"].strip()))
      except (TypeError, ValueError):
        raise ValueError(f"{path}:{reader.line_num}: malformed row {row}") from None
  if not rows:
    raise ValueError(f"{path}: no classes")
  for what, values in (("index", [r[0] for r in rows]), ("mid", [r[1] for r in rows])):
    twice = [v for v, n in collections.Counter(values).items() if n > 1]
    if twice:
      raise ValueError(f"{path}: {what} {twice[0]!r} is listed twice")
  return sorted(rows)


def subtree(ontology: Sequence[dict[str, Any]], roots: Sequence[str]) -> set[str]:
  """The ids of `roots` and of all their descendants through `child_ids` (ids not in the ontology have none)."""
  children = {node["id"]: node.get("child_ids", ()) for node in ontology}
  seen: set[str] = set()
  stack = list(roots)
  while stack:
    node = stack.pop()
    if node not in seen:
      seen.add(node)
      stack.extend(children.get(node, ()))
  return seen


def resolve_node(ontology: Sequence[dict[str, Any]], item: str) -> str:
  """An ontology node named by id ("/m/0jbk") or name ("animal", any case) -> its id; ValueError otherwise."""
  item = item.strip()
  ids = {node["id"] for node in ontology}
  if item in ids:
    return item
  by_name = collections.defaultdict(list)
  for node in ontology:
    by_name[node["name"].lower()].append(node["id"])
  found = by_name.get(item.lower(), [])
  if len(found) == 1:
    return found[0]
  if found:
    raise ValueError(
      f"AudioSet category {item!r} names several ontology nodes ({', '.join(found)}); give the id"
    )
  close = difflib.get_close_matches(item.lower(), list(by_name), n=3)
  names = {node["name"].lower(): node["name"] for node in ontology}
  hint = f"; did you mean {', '.join(repr(names[c]) for c in close)}?" if close else ""
  raise ValueError(f"AudioSet category {item!r} is no ontology node name or id{hint}")


def _clip_ids(stem: str) -> list[str]:
  """The YouTube ids a file name (without extension) may stand for, most literal first."""
  out = [stem]
  match = _TIMES.fullmatch(stem)
  for name in (stem, match.group(1) if match else None):
    if name is None:
      continue
    out.append(name)
    if name.startswith("Y"):
      out.append(name[1:])
  return list(dict.fromkeys(out))


def _find(root: str, name: str) -> str | None:
  for path in (os.path.join(root, name), os.path.join(root, "metadata", name)):
    if os.path.isfile(path):
      return path
  return None


class AudioSetSource(Source):
  """AudioSet clips with split train/validation/test (layout: the module docstring).

  Args:
    root: folder holding the csvs (or `root/metadata/`) and, anywhere below, the downloaded clips.
    category: None keeps every class of class_labels_indices.csv; an ontology node (name or id) or a list of
      them keeps their subtrees (see the module docstring).
    include_unbalanced: also list unbalanced_train_segments.csv as "train".
    seed: seed of the validation carve.
    validation_fraction: share of train carved into "validation" (0: none).

  Attributes:
    class_ids: ontology id of each class.
    missing: listed clips with a kept label but no file, per split.
  """

  name = "audioset"
  multi_label = True

  def __init__(
    self,
    root: str | os.PathLike,
    *,
    category: str | Sequence[str] | None = None,
    include_unbalanced: bool = False,
    seed: int = 0,
    validation_fraction: float = 0.1,
  ):
    self.root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(self.root):
      raise ValueError(f"AudioSet folder {self.root} not found")
    self.category = (
      None if category in (None, "") else ([category] if isinstance(category, str) else list(category))
    )
    self.include_unbalanced = bool(include_unbalanced)
    self.seed = int(seed)
    self.validation_fraction = float(validation_fraction)
    if not 0 <= self.validation_fraction < 1:
      raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    self._select_classes()
    self._list()

  def _select_classes(self) -> None:
    class_file = _find(self.root, CLASS_FILE)
    if class_file is None:
      raise ValueError(f"AudioSet class list {CLASS_FILE} not found in {self.root} (or its metadata/ folder)")
    rows = read_class_labels(class_file)
    self.category_ids: tuple[str, ...] = ()
    if self.category is not None:
      ontology_file = _find(self.root, ONTOLOGY_FILE)
      if ontology_file is None:
        raise ValueError(
          f"category needs AudioSet's {ONTOLOGY_FILE} in {self.root} (or its metadata/ folder)"
        )
      with open(ontology_file, encoding="utf-8") as f:
        ontology = json.load(f)
      if not isinstance(ontology, list) or not all(isinstance(n, dict) and "id" in n for n in ontology):
        raise ValueError(f"{ontology_file}: expected a list of nodes with an 'id' each")
      self.category_ids = tuple(resolve_node(ontology, str(item)) for item in self.category)
      keep = subtree(ontology, self.category_ids)
      rows = [r for r in rows if r[1] in keep]
      if not rows:
        raise ValueError(f"no class of {CLASS_FILE} lies under AudioSet category {self.category!r}")
    names = [name for _, _, name in rows]
    twice = {n for n, k in collections.Counter(names).items() if k > 1}
    self.class_names = tuple(f"{name} ({mid})" if name in twice else name for _, mid, name in rows)
    self.class_ids = tuple(mid for _, mid, _ in rows)

  def _index_clips(self, wanted: set[str]) -> dict[str, str]:
    """YouTube id -> its file (the first in path order when there are several copies: the others rejected)."""
    found: dict[str, list[str]] = collections.defaultdict(list)
    for folder, dirs, files in os.walk(self.root):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      for name in files:
        stem, ext = os.path.splitext(name)
        if name.startswith(".") or ext.lower() not in CLIP_EXTENSIONS:
          continue
        ytid = next((c for c in _clip_ids(stem) if c in wanted), None)
        if ytid is not None:
          found[ytid].append(os.path.join(folder, name))
    index = {}
    for ytid, paths in found.items():
      paths.sort()
      index[ytid] = paths[0]
      self._rejected += [(p, f"another copy of YouTube id {ytid} is packed: {paths[0]}") for p in paths[1:]]
    return index

  def _list(self) -> None:
    lists = [
      (name, split) for name, split in SEGMENT_FILES if self.include_unbalanced or "unbalanced" not in name
    ]
    rows: list[tuple[str, str, Segment]] = []  # (csv name, split, row)
    read_any = False
    taken: set[str] = set()
    self.listed_twice = 0
    for name, split in lists:
      path = _find(self.root, name)
      if path is None:
        continue
      read_any = True
      for seg in read_segments(path):
        if seg.ytid in taken:
          self.listed_twice += 1
          continue
        taken.add(seg.ytid)
        rows.append((name, split, seg))
    if not read_any:
      raise ValueError(f"no AudioSet segments csv ({', '.join(n for n, _ in lists)}) in {self.root}")

    ids = {mid: i for i, mid in enumerate(self.class_ids)}
    self.no_kept_label: collections.Counter = collections.Counter()
    kept: list[tuple[str, str, Segment, tuple[int, ...]]] = []
    for name, split, seg in rows:
      labels = tuple(sorted({ids[m] for m in seg.labels if m in ids}))
      if labels:
        kept.append((name, split, seg, labels))
      else:
        self.no_kept_label[split] += 1

    self._rejected: list[tuple[str, str]] = []
    index = self._index_clips({seg.ytid for _, _, seg, _ in kept})
    self.missing: collections.Counter = collections.Counter()
    present = []
    for name, split, seg, labels in kept:
      if seg.ytid in index:
        present.append((split, index[seg.ytid], seg.ytid, labels))
      else:
        self.missing[split] += 1
        self._rejected.append((seg.ytid, f"not downloaded ({name}, {seg.start_s:g}-{seg.end_s:g} s)"))
    if not present:
      raise ValueError(
        f"no AudioSet clip found under {self.root}: none of the {len(kept)} listed clip(s) with a kept label has "
        f"a file named <YTID>.<ext>, Y<YTID>.<ext> or Y<YTID>_<start>_<end>.<ext> "
        f"(ext: {', '.join(CLIP_EXTENSIONS)})"
      )
    self.rejected = tuple(self._rejected)

    fraction = self.validation_fraction
    self.carves = (
      {"train": Carve(("train", "validation"), (1 - fraction, fraction), self.seed)} if fraction else {}
    )
    clips_of = collections.Counter(c for split, _, _, labels in present if split == "train" for c in labels)
    examples = []
    for split, path, ytid, labels in present:
      rarest = min(labels, key=lambda c: (clips_of[c], c))
      examples.append(
        Example(
          path,
          labels[0],
          ";".join(self.class_names[c] for c in labels),
          split,
          group=ytid,
          carve="train" if split == "train" and fraction else "",
          labels=labels,
          stratum=self.class_names[rarest],
        )
      )
    self._examples = carve_examples(examples, self.carves)  # provisional: the packer adds the duplicates

  def split_settings(self) -> dict[str, Any]:
    return {
      "group_by": "youtube id",
      "seed": self.seed,
      "validation_fraction": self.validation_fraction,
      "stratified_by": "rarest class",
      "include_unbalanced": self.include_unbalanced,
      "category": list(self.category_ids) or None,
      "class_ids": list(self.class_ids),
      "missing": dict(sorted(self.missing.items())),
      "no_kept_label": dict(sorted(self.no_kept_label.items())),
      "listed_twice": self.listed_twice,
    }

  def __getstate__(self) -> dict[str, Any]:
    # A decode worker needs only `load`: the listing (2M clips with the unbalanced set) stays in the packer.
    state = dict(self.__dict__)
    state.update(_examples=None, _rejected=[], rejected=())
    return state

  def examples(self) -> list[Example]:
    if self._examples is None:
      raise RuntimeError(
        "a pickled AudioSetSource carries no listing (only what decoding needs); list the original"
      )
    return list(self._examples)

  def locations(self) -> tuple[str, ...]:
    return (self.root,)
