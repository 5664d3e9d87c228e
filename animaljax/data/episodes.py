"""N-way K-shot episodes over a packed split, for prototypical-network training and few-shot evaluation.

An episode draws `n_way` distinct classes and, from each, `k_shot + q_queries` distinct clips: the first
`k_shot` are the support set, the rest the queries. Episode `i` is a pure function of `(seed, i)`: its
classes, clips and random crops come from `np.random.default_rng([seed, i])` and the loader's crop hash, so it
does not depend on worker, thread or process counts, and a restored iterator yields the same next episodes.

`make_episode_loader` is a `grain.MapDataset` over episode indices (like `loader.make_loader` over positions):
JAX process `p` of `P` takes episodes `p, p + P, p + 2P, ...`, and batches of `episodes_per_batch` episodes
are stacked, so each iterated batch is

  {"support": int16 (E, N*K, T), "query": int16 (E, N*Q, T), "support_label": int32 (E, N*K),
   "query_label": int32 (E, N*Q), "classes": int32 (E, N), "episode": int64 (E,)}

with labels `0..N-1` inside the episode (position in `classes`, which holds the original class ids). Rows
are class-major: support row `c * K + j` is shot `j` of class `c`. `draw_episode` is the same draw on
plain indices, which the evaluation uses on cached embeddings.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from animaljax.data import records
from animaljax.data.loader import crop_or_pad
from animaljax.data.sampling import split_labels
from animaljax.data.shard_source import PackedDataset


def examples_by_class(labels: np.ndarray, classes: Sequence[int] | None = None) -> dict[int, np.ndarray]:
  """`{class id: sorted example ids}` for the labelled classes present (optionally only `classes`).

  Raises:
    ValueError: a requested class has no examples.
  """
  labels = np.asarray(labels)
  present = sorted(int(c) for c in np.unique(labels) if c >= 0)  # -1: unlabelled / noise clips
  wanted = present if classes is None else sorted({int(c) for c in classes})
  missing = [c for c in wanted if c not in present]
  if missing:
    raise ValueError(f"classes {missing} have no examples in the split (classes present: {present})")
  return {c: np.flatnonzero(labels == c) for c in wanted}


def check_episode_shape(by_class: dict[int, np.ndarray], n_way: int, k_shot: int, q_queries: int) -> None:
  """ValueError unless `n_way` classes each have at least `k_shot + q_queries` examples."""
  if n_way < 1 or k_shot < 1 or q_queries < 0:
    raise ValueError(f"need n_way >= 1, k_shot >= 1, q_queries >= 0; got {n_way}, {k_shot}, {q_queries}")
  if len(by_class) < n_way:
    raise ValueError(f"{n_way}-way episodes need {n_way} classes, only {len(by_class)} available")
  small = {c: len(ids) for c, ids in by_class.items() if len(ids) < k_shot + q_queries}
  if small:
    raise ValueError(
      f"classes {small} (id: examples) have fewer than k_shot + q_queries = {k_shot + q_queries} examples"
    )


def draw_episode(
  seed: int, episode: int, by_class: dict[int, np.ndarray], n_way: int, k_shot: int, q_queries: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Episode `episode` of stream `seed`: a pure function of both.

  Args:
    by_class: `{class id: example ids}` to draw from (`examples_by_class`).

  Returns:
    `classes (n_way,)` original class ids, `support (n_way, k_shot)` and `query (n_way, q_queries)` example
    ids; row `c` of both belongs to `classes[c]`. No example appears twice in an episode.
  """
  rng = np.random.default_rng([seed, episode])
  ids = sorted(by_class)  # the draw must not depend on dict order
  classes = np.asarray(ids)[rng.choice(len(ids), n_way, replace=False)]
  picks = np.stack([rng.choice(by_class[int(c)], k_shot + q_queries, replace=False) for c in classes])
  return classes.astype(np.int64), picks[:, :k_shot], picks[:, k_shot:]


@dataclasses.dataclass(frozen=True)
class _EpisodeReader:
  """Element function: position in this process's stream -> one episode (unbatched). Picklable."""

  source: Any
  by_class: dict[int, np.ndarray]
  n_way: int
  k_shot: int
  q_queries: int
  length: int
  crop: str
  seed: int
  process_index: int
  process_count: int
  short: str = "pad"

  def __call__(self, position: int, _: Any = None) -> dict[str, np.ndarray]:
    episode = int(position) * self.process_count + self.process_index
    classes, support, query = draw_episode(
      self.seed, episode, self.by_class, self.n_way, self.k_shot, self.q_queries
    )

    def clips(ids: np.ndarray) -> np.ndarray:
      out = np.empty((ids.size, self.length), np.int16)
      for row, example in enumerate(ids.reshape(-1)):
        audio = records.parse_example(self.source[int(example)])["audio"]
        # Crop key (seed, episode, example): the same clip gets a fresh crop in every episode.
        out[row] = crop_or_pad(audio, self.length, self.crop, (self.seed, episode, int(example)), self.short)
      return out

    within = np.arange(self.n_way, dtype=np.int32)
    return {
      "support": clips(support),
      "query": clips(query),
      "support_label": np.repeat(within, self.k_shot),
      "query_label": np.repeat(within, self.q_queries),
      "classes": classes.astype(np.int32),
      "episode": np.int64(episode),
    }


def _stack(episodes: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  return {k: np.stack([e[k] for e in episodes]) for k in episodes[0]}


@dataclasses.dataclass
class EpisodeLoader:
  """What `make_episode_loader` returns: iterate for batches; `iter(loader)` has `get_state()/set_state()`.

  Attributes:
    dataset: the grain `IterDataset` of stacked episodes.
    classes: the class ids episodes are drawn from.
    clip_samples: `T`, samples per row.
  """

  dataset: Any
  classes: tuple[int, ...]
  class_names: tuple[str, ...]
  clip_samples: int
  sample_rate: int
  episodes_per_batch: int

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self.dataset)


def make_episode_loader(
  data_dir: str,
  split: str,
  *,
  n_way: int,
  k_shot: int,
  q_queries: int,
  clip_seconds: float | None = None,
  classes: Sequence[int] | None = None,
  seed: int = 0,
  episodes_per_batch: int = 1,
  num_episodes: int | None = None,
  crop: str = "random",
  shard_by_process: bool = True,
  process_index: int | None = None,
  process_count: int | None = None,
  read_threads: int = 1,
  prefetch_batches: int = 2,
  short_clips: str = "pad",
) -> EpisodeLoader:
  """Builds the episode iterator over a packed split.

  Args:
    data_dir, split: the packed folder and a split expression (`"fold1+fold2"`).
    n_way, k_shot, q_queries: classes per episode, support and query clips per class.
    clip_seconds: row length (default: the pack's window length).
    classes: draw only from these class ids (e.g. the training classes, holding others out); None = every
      labelled class of the split.
    seed: the episode stream; episode `i` is a function of `(seed, i)`.
    episodes_per_batch: episodes stacked per batch on this process.
    num_episodes: episodes per process before the iterator ends; None = endless.
    crop: `random` (training), `center` or `start` for clips longer or shorter than a row.
    short_clips: how a clip shorter than a row becomes one (`audio.windows.fit_short`): "pad", "loop", "mask".
    shard_by_process: process `p` of `P` takes episodes `p, p+P, ...` (default `jax.process_index/count`).

  Returns:
    An `EpisodeLoader` yielding the batches described in the module docstring.
  """
  import grain  # lazy, as in the loader

  data = PackedDataset(data_dir)
  clip_seconds = clip_seconds or data.default_clip_seconds()
  if clip_seconds is None:
    raise ValueError(f"{data.path} holds whole clips of varying length: pass clip_seconds")
  if episodes_per_batch < 1:
    raise ValueError(f"episodes_per_batch must be >= 1, got {episodes_per_batch}")
  if shard_by_process and (process_index is None or process_count is None):
    import jax  # only to know this process's place

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not shard_by_process:
    process_index, process_count = 0, 1
  source = data.source(split)
  by_class = examples_by_class(split_labels(source), classes)
  check_episode_shape(by_class, n_way, k_shot, q_queries)
  length = round(clip_seconds * data.sample_rate)
  reader = _EpisodeReader(
    source, by_class, n_way, k_shot, q_queries, length, crop, seed, process_index, process_count, short_clips
  )
  # Endless by default; the range is lazy, so its size costs nothing.
  positions = grain.MapDataset.range(num_episodes if num_episodes is not None else sys.maxsize)
  batches = positions.map_with_index(reader).batch(episodes_per_batch, drop_remainder=True, batch_fn=_stack)
  read = grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=prefetch_batches)
  return EpisodeLoader(
    batches.to_iter_dataset(read),
    tuple(by_class),
    data.class_names,
    length,
    data.sample_rate,
    episodes_per_batch,
  )
