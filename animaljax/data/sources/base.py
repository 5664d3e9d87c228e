"""What every source hands the packer: a list of `Example`s plus a way to decode one.

A source only *lists* clips; decoding happens in the packer's worker processes through `Source.load`, so a
source object must be picklable (plain attributes, no open files).
"""

from __future__ import annotations

import abc
import dataclasses
import math
import zlib

import numpy as np

from animaljax.audio import io as audio_io

# Label id of examples that carry no class (the `noise` split, unlabelled folders for SimCLR).
UNLABELLED = -1


@dataclasses.dataclass(frozen=True)
class Example:
  """One clip to pack.

  Attributes:
    path: the file it comes from (or a `synthetic://...` id for generated clips); kept in the record.
    label: class id in `0..num_classes-1`, or `UNLABELLED`.
    label_name: the class name (`""` when unlabelled).
    split: TFDS split name: `train`, `validation`, `test`, `noise`, or `fold1`..`foldN` for ESC-50.
    fold: ESC-50 fold number (1-based), 0 when the corpus has no folds.
  """

  path: str
  label: int
  label_name: str
  split: str
  fold: int = 0


class Source(abc.ABC):
  """Base class: subclasses set `name` and `class_names` and implement `examples()`.

  `load` decodes a file with `animaljax.audio.io.load_audio`; the synthetic source overrides it to generate
  the clip instead. Both return float32 mono in [-1, 1] at `sample_rate` or raise `AudioError`.

  Attributes:
    name: the source's name in the pack's metadata.
    class_names: label id -> class name.
    rejected: `(path, reason)` of what the listing itself refused (a folder link that would list clips twice,
      a folder named like an audio file, ...); the packer writes them to `rejected.csv` with the files that
      failed to decode, so nothing the user gave disappears without a word.
  """

  name: str = "source"
  class_names: tuple[str, ...] = ()
  rejected: tuple[tuple[str, str], ...] = ()

  def locations(self) -> tuple[str, ...]:
    """The folders and files the source reads besides its clips (a corpus root, a manifest).

    The packer refuses an output folder that holds any of them or any listed clip: replacing it would
    delete the corpus.
    """
    return ()

  @abc.abstractmethod
  def examples(self) -> list[Example]:
    """Every clip of the corpus, sorted deterministically (by split, then path)."""

  def load(self, example: Example, sample_rate: int, **validation) -> np.ndarray:
    return audio_io.load_audio(example.path, sample_rate, **validation)


# Split names of a corpus without folds, in the order `split_ratios` lists them.
SPLITS = ("train", "validation", "test")


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


def stratified_split(
  paths_by_class: dict[str, list[str]],
  split_ratios: tuple[float, ...] = (0.8, 0.1, 0.1),
  seed: int = 0,
  split_names: tuple[str, ...] = SPLITS,
) -> dict[str, str]:
  """Assigns each path a split, class by class, so every split sees every class in proportion.

  Each class is shuffled with a generator seeded by `(seed, crc32(class name))`, so a class's assignment
  depends only on its own files and the seed: adding a class or a file elsewhere leaves it unchanged. A class
  with at least as many files as nonzero ratios gets >= 1 file in each nonzero split.

  Args:
    paths_by_class: class name -> paths (any order; sorted here so the caller's order does not matter).
    split_ratios: one non-negative weight per split name (normalised; need not sum to 1).
    seed: shuffling seed.
    split_names: the names the ratios refer to.
  Returns:
    path -> split name.
  """
  split_ratios = check_split_ratios(split_ratios, len(split_names))
  out: dict[str, str] = {}
  for name, paths in paths_by_class.items():
    order = sorted(paths)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    order = [order[i] for i in rng.permutation(len(order))]
    start = 0
    for split, count in zip(split_names, _allocate(len(order), tuple(split_ratios)), strict=True):
      for p in order[start : start + count]:
        out[p] = split
      start += count
  return out
