"""Decode a source's clips in worker processes, in order, for the packer; keep them on disk between two passes.

Each result carries a digest of the decoded int16 samples (at the pack's rate), computed in the worker: the
packer's exact-duplicate test, blind to file names and encodings. `DecodedCache` holds decoded clips in one
scratch file so that a packer that must see every digest before it can split (carved splits) reads them back
instead of decoding twice.

Workers are started with "spawn": the parent may already hold TensorFlow or JAX threads, which a fork would
copy in an undefined state. As with any spawn pool, a script that calls `pack` must guard its entry point with
`if __name__ == "__main__":` (the `python -m animaljax.pack` CLI does).

A worker exits on its own when the process that started it dies (SIGKILL, the OOM killer): a pool worker
blocks on a queue whose write end it holds itself, so it would otherwise wait forever, and keep
multiprocessing's resource tracker alive with it. A daemon thread in each worker compares `os.getppid()` with
the parent's pid every `PARENT_POLL_SECONDS`. (Linux's PR_SET_PDEATHSIG alone would not do: it fires when
the parent *thread* that spawned the worker exits, and the pool spawns from whichever thread submits.)
"""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, NamedTuple

import numpy as np

from animaljax.audio import io as audio_io
from animaljax.data.sources.base import Example, Source


class Result(NamedTuple):
  """One decoded clip."""

  audio: np.ndarray | None  # int16 (num_samples,), None when rejected
  reason: str  # why it was rejected, "" if not
  warnings: list[str]  # warning messages (a silent clip kept, ...)
  digest: str  # `digest(audio)`, "" when rejected


def digest(audio: np.ndarray) -> str:
  """The exact-duplicate key of int16 samples: 128-bit BLAKE2b of the bytes (~0.1 ms for 5 s at 16 kHz)."""
  return hashlib.blake2b(np.ascontiguousarray(audio, np.int16).tobytes(), digest_size=16).hexdigest()


_WORKER: dict[str, Any] = {}
PARENT_POLL_SECONDS = 0.5


def _exit_with_parent(parent_pid: int) -> None:
  """Ends this process (no clean-up: there is no one left to hand results to) once `parent_pid` is gone."""
  while os.getppid() == parent_pid:  # an orphan is re-parented (to init or a subreaper): the pid changes
    time.sleep(PARENT_POLL_SECONDS)
  os._exit(1)


def watch_parent(parent_pid: int) -> None:
  """Starts the daemon thread that ends this process when `parent_pid`, its parent, dies."""
  if os.getppid() != parent_pid:  # the parent died while this process was starting
    os._exit(1)
  threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="exit-with-parent", daemon=True).start()


def _init_worker(source: Source, sample_rate: int, validation: dict[str, Any], parent_pid: int) -> None:
  watch_parent(parent_pid)
  # The source travels once per worker, not once per clip.
  _WORKER.update(source=source, sample_rate=sample_rate, validation=validation)


def decode_one(example: Example, source: Source, sample_rate: int, validation: dict[str, Any]) -> Result:
  """Decodes one clip to int16 at `sample_rate`, with its digest; never raises (a failure is a reason)."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
      wav = source.load(example, sample_rate, **validation)
      out, reason = audio_io.to_int16(wav), ""
    except audio_io.AudioError as err:
      out, reason = None, err.reason
    except Exception as err:  # noqa: BLE001 - one bad file must not stop the job; the reason is recorded
      out, reason = None, f"{type(err).__name__}: {err}"
  return Result(out, reason, [str(w.message) for w in caught], "" if out is None else digest(out))


def _decode_chunk(chunk: Sequence[Example]) -> list[Result]:
  return [decode_one(e, _WORKER["source"], _WORKER["sample_rate"], _WORKER["validation"]) for e in chunk]


class OrderedDecoder:
  """A pool of `workers` spawned processes that decodes lists of clips and yields results in input order.

  `workers <= 0` decodes in this process (debugging, tiny jobs). Use as a context manager, or call `close`.
  """

  def __init__(self, source: Source, sample_rate: int, validation: dict[str, Any], workers: int):
    self._args = (source, sample_rate, validation)
    self._workers = workers
    self._pool = self._new_pool() if workers > 0 else None

  def _new_pool(self) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(self._workers, context, _init_worker, (*self._args, os.getpid()))

  def _restart(self) -> None:
    self._kill()
    self._pool = self._new_pool()

  def _kill(self) -> None:
    """Kills the workers, then shuts the pool down.

    Python 3.11's pool marks itself broken and SIGTERMs the workers it knows, but one spawned by a `submit`
    racing with that stays blocked on a dead queue, and `shutdown` then waits on it forever (seen in the
    crash test); killing every worker first makes the shutdown return.
    """
    for process in list((getattr(self._pool, "_processes", None) or {}).values()):
      process.kill()
    self._pool.shutdown(wait=True, cancel_futures=True)

  def _isolated(self, example: Example) -> Result:
    """Decodes one clip alone in the pool; the clip that kills its worker is rejected."""
    try:
      return self._pool.submit(_decode_chunk, [example]).result()[0]
    except BrokenProcessPool:
      self._restart()
      return Result(None, "the decoder crashed its worker process", [], "")

  def imap(self, examples: Sequence[Example]) -> Iterator[tuple[Example, Result]]:
    """Yields `(example, result)` for `examples`, in order.

    At most `4 * workers` chunks are in flight, so decoded audio never piles up faster than it is consumed.
    A worker that dies (a decoder segfault, the OOM killer) breaks the pool: the pool is restarted and every
    clip that was in flight is decoded again one at a time, so only the clip that kills a worker again is
    rejected, then pipelining resumes.
    """
    if self._pool is None:
      for example in examples:
        yield example, decode_one(example, *self._args)
      return
    chunksize = max(1, min(16, len(examples) // (self._workers * 8)))
    chunks = [examples[i : i + chunksize] for i in range(0, len(examples), chunksize)]
    pending: collections.deque = collections.deque()
    next_chunk = 0
    while next_chunk < len(chunks) or pending:
      while next_chunk < len(chunks) and len(pending) < 4 * self._workers:
        try:
          pending.append((next_chunk, self._pool.submit(_decode_chunk, chunks[next_chunk])))
        except BrokenProcessPool:  # a worker died already; the head future below reports it
          break
        next_chunk += 1
      if not pending:  # broke before anything was queued
        self._restart()
        continue
      index, future = pending.popleft()
      try:
        yield from zip(chunks[index], future.result(), strict=True)
      except BrokenProcessPool:
        self._restart()
        in_flight = [index] + [i for i, _ in pending]
        pending.clear()
        for i in in_flight:
          for example in chunks[i]:
            yield example, self._isolated(example)

  def close(self, kill: bool = False) -> None:
    """Stops the workers: waits for idle ones to exit, or kills them (`kill=True`, after an error)."""
    if self._pool is not None:
      if kill:
        self._kill()
      else:
        self._pool.shutdown(wait=True, cancel_futures=True)

  def __enter__(self) -> OrderedDecoder:
    return self

  def __exit__(self, exc_type, *exc) -> None:
    self.close(kill=exc_type is not None)


class DecodedCache:
  """Decoded clips in one scratch file, read back in any order with `imap` (the interface of `OrderedDecoder`).

  The packer fills it in its first pass when it carves splits: every digest must be known before any clip's
  split is, and reading 2 bytes a sample back is far cheaper than decoding again (FLAC, MP3, resampling). It
  takes as much disk as the pack's audio, in the pack's scratch folder, until `close`.
  """

  def __init__(self, path: os.PathLike | str):
    self._path = os.fspath(path)
    self._file = open(self._path, "w+b")  # noqa: SIM115 - held until close()
    self._index: dict[
      str, tuple[int, int, Result]
    ] = {}  # Example.key -> (byte offset, samples, result sans audio)

  @classmethod
  def fill(
    cls,
    decoder: OrderedDecoder,
    examples: Sequence[Example],
    path: os.PathLike | str,
    progress: bool,
    name: str,
  ) -> DecodedCache:
    """A cache at `path` holding every clip of `examples` decoded by `decoder` (a tqdm bar unless `progress`
    is False); on an error the file is deleted."""
    from tqdm.auto import tqdm

    cache = cls(path)
    try:
      with tqdm(
        total=len(examples), unit="clip", desc=f"decoding {name}", disable=not progress, file=sys.stderr
      ) as bar:
        for example, result in decoder.imap(examples):
          cache.add(example, result)
          bar.update(1)
    except BaseException:
      cache.close()
      raise
    return cache

  @property
  def digests(self) -> dict[str, str]:
    """`Example.key` (the path, or `path@start-end` for a segment) -> digest of every clip stored ("" for a
    clip that failed to decode)."""
    return {key: result.digest for key, (_, _, result) in self._index.items()}

  def add(self, example: Example, result: Result) -> None:
    """Stores one decoded clip (its audio appended to the file, the rest in memory)."""
    offset, samples = self._file.seek(0, os.SEEK_END), 0
    if result.audio is not None:
      samples = result.audio.shape[0]
      self._file.write(np.ascontiguousarray(result.audio, np.int16).tobytes())
    self._index[example.key] = (offset, samples, result._replace(audio=None))

  def imap(self, examples: Sequence[Example]) -> Iterator[tuple[Example, Result]]:
    """Yields `(example, result)` for `examples` (each stored before), in order."""
    for example in examples:
      offset, samples, result = self._index[example.key]
      if result.reason:
        yield example, result
        continue
      audio = np.empty(samples, np.int16)
      self._file.seek(offset)
      if self._file.readinto(memoryview(audio).cast("B")) != audio.nbytes:
        raise OSError(f"{self._path}: the decoded-clip cache is shorter than written (disk full?)")
      yield example, result._replace(audio=audio)

  def close(self, kill: bool = False) -> None:
    """Closes and deletes the file (`kill` is accepted for `OrderedDecoder.close`'s signature)."""
    del kill
    self._file.close()
    if os.path.exists(self._path):
      os.unlink(self._path)
