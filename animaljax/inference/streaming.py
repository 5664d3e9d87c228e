"""Every window of every file through the model, in memory bounded by a block of audio, whatever the length.

The one scanning loop behind `Predictor.scan` (files streamed from disk: `predict`, `embed`, `evaluate` of
class folders) and `Predictor.scan_waves` (clips already in memory: `evaluate` of a packed split). It reads a
flat stream of events, `(name, block)` for the next samples of a file, `(name, END)` when it has ended and
`(name, AudioError)` when it cannot be read (before or after some blocks), and:

  * cuts windows with `audio.windows.CoverWindows` as blocks arrive (the windows of `cover_window_starts` of
    the whole file; a clip shorter than the window becomes one row by `Predictor.pad_short`);
  * batches windows across files, `batch_size` per forward pass, so only one batch is in flight;
  * keeps each file's window probabilities and embeddings (W x C and W x D floats: 17,280 rows for 24 h at one
    window per 5 s), never its audio, and yields its `FileScan` once its last window is through the model.

What lives in memory at once is the block being cut, at most one window of audio carried to the next block,
the windows of the batch being filled (views into at most a few blocks) and, with `read_ahead`, the next block
being decoded in a thread while the model runs.
"""

from __future__ import annotations

import array
import concurrent.futures
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from animaljax.audio.io import AudioError
from animaljax.audio.windows import CoverWindows

END = None  # the event payload that ends a file
Event = tuple[str, "np.ndarray | AudioError | None"]


class Model(Protocol):
  """What the loop needs of a `Predictor` (a Protocol, so that this module does not import the predictor)."""

  clip_samples: int
  sample_rate: int
  embed_dim: int
  labels: Sequence[str]

  def pad_short(self, wave: np.ndarray) -> np.ndarray: ...

  def run_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


@dataclasses.dataclass
class FileScan:
  """One file's windows through the model (`Predictor.scan`).

  Attributes:
    file: the path as given; duration_s: its length at the model's rate.
    start_s, end_s: (W,) window bounds in seconds (a clip shorter than the window: one window [0, duration]).
    probs: (W, C) probabilities (`Predictor.probabilities`: softmax, or a multi-label model's sigmoids);
      embeddings: (W, D).
    error: the AudioError when the file could not be read (the arrays are then empty).
  """

  file: str
  duration_s: float
  start_s: np.ndarray
  end_s: np.ndarray
  probs: np.ndarray
  embeddings: np.ndarray
  error: AudioError | None = None

  @classmethod
  def failed(cls, file: str, error: AudioError) -> FileScan:
    empty = np.zeros(0)
    return cls(file, 0.0, empty, empty, np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), error)


class _File:
  """A file being scanned: its windower, the starts of its windows and their outputs, in start order.

  About (8 + 4 (C + D)) bytes per window and no Python object per window (starts in an int64 array, outputs
  one array per batch), so a 24-hour recording's tens of thousands of windows stay small; the audio is not
  kept at all."""

  def __init__(self, name: str, window: int, hop: int, dims: tuple[int, int]):
    self.name, self.windows, self.dims = name, CoverWindows(window, hop), dims
    self.starts = array.array("q")
    self.probs: list[np.ndarray] = []  # (rows, C) per batch
    self.embeddings: list[np.ndarray] = []  # (rows, D) per batch
    self.pending = 0  # windows queued for the model, not yet through it
    self.ended = False
    self.error: AudioError | None = None

  def outputs(self, probs: np.ndarray, embeddings: np.ndarray) -> None:
    """The outputs of its next windows (the model runs a file's windows in start order); copies, so that no
    batch or device buffer stays alive."""
    self.probs.append(np.array(probs, np.float32))
    self.embeddings.append(np.array(embeddings, np.float32))

  def result(self, window: int, sample_rate: int) -> FileScan:
    if self.error is not None:
      return FileScan.failed(self.name, self.error)
    n = self.windows.num_samples
    starts = np.array(self.starts, np.int64)
    return FileScan(
      self.name, n / sample_rate, starts / sample_rate, np.minimum(starts + window, n) / sample_rate,
      _rows(self.probs, self.dims[0]), _rows(self.embeddings, self.dims[1]),
    )  # fmt: skip


def _rows(chunks: list[np.ndarray], dim: int) -> np.ndarray:
  """(rows, dim) arrays -> (n, dim) float32 (n may be 0)."""
  return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)


def scan_events(
  predictor: Model,
  events: Iterable[Event],
  *,
  hop: int,
  batch_size: int,
  on_audio: Callable[[float], Any] | None = None,
) -> Iterator[FileScan]:
  """Events of files (module docstring) -> one `FileScan` per file, in order.

  Args:
    predictor: the model (its `clip_samples`, `pad_short`, `run_windows`).
    events: `(name, block (n,) float32 at the model's rate | END | AudioError)`; a file's events are
      consecutive and end with END or an AudioError (which drops whatever was read of that file). Consumed
      lazily: one event at a time, and a file's FileScan is yielded before events after its batch are read.
    hop: samples between window starts (>= 1).
    batch_size: windows per forward pass (>= 1).
    on_audio: called with the seconds of audio of each block once it is cut into windows (progress).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  w, sr = predictor.clip_samples, predictor.sample_rate
  dims = (len(predictor.labels), predictor.embed_dim)
  files: list[_File] = []  # not yet yielded, in order
  queue: list[tuple[_File, np.ndarray]] = []  # (file, samples): views into blocks, not copies
  current: _File | None = None

  def flush() -> None:
    if queue:
      probs, embs = predictor.run_windows(np.stack([x for _, x in queue]))
      a = 0
      while a < len(queue):  # a file's windows are consecutive in the queue
        f, b = queue[a][0], a + 1
        while b < len(queue) and queue[b][0] is f:
          b += 1
        f.outputs(probs[a:b], embs[a:b])
        f.pending -= b - a
        a = b
      queue.clear()

  def add(f: _File, start: int, x: np.ndarray) -> None:
    f.starts.append(start)
    if x.shape[0] < w:
      x = predictor.pad_short(x)
      if x.shape[0] != w:  # "native": a clip scored at its own length, in a batch of one (its only window)
        f.outputs(*predictor.run_windows(x[None]))
        return
    queue.append((f, x))
    f.pending += 1
    if len(queue) == batch_size:
      flush()

  for name, item in events:
    if current is None:
      current = _File(name, w, hop, dims)
      files.append(current)
    if isinstance(item, AudioError):
      current.error, current.ended = item, True
      queue[:] = [q for q in queue if q[0] is not current]  # what was read of it is not scored
      current.pending, current = 0, None
    elif item is END:
      for start, x in current.windows.finish():
        add(current, start, x)
      current.ended, current = True, None
    else:
      for start, x in current.windows.push(item):
        add(current, start, x)
      if on_audio is not None:
        on_audio(item.shape[0] / sr)
    while files and files[0].ended and not files[0].pending:
      yield files.pop(0).result(w, sr)
  flush()
  while files and files[0].ended:
    yield files.pop(0).result(w, sr)
  if current is not None:
    raise ValueError(f"the events of {current.name} stopped before its END")


def wave_events(waves: Iterable[tuple[str, np.ndarray | AudioError]]) -> Iterator[Event]:
  """`(name, whole clip | AudioError)` pairs -> events: each clip one block, then END."""
  for name, wave in waves:
    if isinstance(wave, AudioError):
      yield name, wave
    else:
      yield name, np.asarray(wave)
      yield name, END


def file_events(files: Iterable[str], read: Callable[[str], Iterable[np.ndarray]]) -> Iterator[Event]:
  """Events of files read in blocks by `read(path)` (e.g. `audio.io.stream_audio`); whatever error it raises
  while a file is read ends that file with an AudioError naming it."""
  for path in files:
    try:
      for block in read(path):
        yield path, block
    except AudioError as err:
      yield path, err
      continue
    except Exception as err:  # anything else the decoder or resampler throws still names the file
      yield path, AudioError(path, f"cannot read: {type(err).__name__}: {err}")
      continue
    yield path, END


_DONE = object()


def read_ahead(items: Iterator) -> Iterator:
  """The items of `items` in order, computing the next one in a thread while the caller works on this one
  (decoding and resampling the next block while the model runs on this one's windows)."""
  with concurrent.futures.ThreadPoolExecutor(1) as pool:
    ahead = pool.submit(next, items, _DONE)
    while True:
      item = ahead.result()
      if item is _DONE:
        return
      ahead = pool.submit(next, items, _DONE)
      yield item
