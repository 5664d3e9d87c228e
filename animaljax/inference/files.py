"""`predict` and `embed` over audio files and folders: the library functions behind the two commands.

`predict_files(model, inputs, ...)` ranks every window and file and writes CSV, JSON or Raven;
`embed_files(model, inputs, out, ...)` writes per-window and per-file embeddings to Parquet or npz (formats:
`inference.outputs`). Both read folders recursively (`expand_inputs`), run `Predictor.scan` with a progress
bar on stderr, name each unreadable file on stderr and skip it, and write their file through
`data.atomic.replaced_on_success`: a bad option, a bad model or a run that reads no file leaves an existing file
as it was.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
from collections.abc import Iterable, Iterator

import numpy as np

from animaljax.audio.io import AUDIO_EXTENSIONS, AudioError
from animaljax.audio.windows import window_pool
from animaljax.data import atomic
from animaljax.fewshot.store import StoreError
from animaljax.inference import load, outputs
from animaljax.inference.heads import model_classes
from animaljax.inference.predictor import FileScan, Predictor


def expand_inputs(paths: Iterable[str | os.PathLike]) -> tuple[list[str], list[AudioError]]:
  """Files as given and the audio files under folders (recursive, sorted); errors for paths that do not exist."""
  files, errors = [], []
  for p in map(pathlib.Path, paths):
    if p.is_dir():
      files += sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
    elif p.exists():
      files.append(str(p))
    else:
      errors.append(AudioError(p, "no such file or directory"))
  return files, errors


def load_model(path: str | os.PathLike, hop_seconds: float | None = None) -> Predictor:
  """The Predictor at `path` (`inference.load.load_predictor`), after checking that `hop_seconds` is at least
  one sample at its rate (ValueError otherwise), so a bad hop stops the run before any file is read."""
  predictor = load.load_predictor(path)
  predictor.hop_samples(hop_seconds)
  return predictor


def enrolled_species(predictor: Predictor) -> dict:
  """The predictor's enrolled species; a damaged species store is named in one warning line on stderr and
  ignored, so the model's own classes are still ranked."""
  store = predictor.species_store()
  if store is None:
    return {}
  try:
    return store.load()
  except StoreError as err:
    print(
      f"warning: the species store {store.directory} is damaged: {' '.join(str(err).split())}; "
      "ignoring enrolled species",
      file=sys.stderr,
    )
    return {}


class _Scan:
  """`Predictor.scan` over the expanded inputs with a progress bar on stderr; unreadable files are named on
  stderr and skipped. Iterate it for the readable files' `FileScan`s; `readable` counts them.

  The bar counts files and, as a 24-hour recording is one file, also the hours of audio done and the speed
  in multiples of real time (audio seconds per wall second), refreshed as blocks are read."""

  def __init__(self, predictor: Predictor, inputs, *, desc: str, hop, batch_size, max_seconds, quiet):
    self.predictor, self.inputs, self.desc, self.quiet = predictor, inputs, desc, quiet
    self.kwargs = {"hop_seconds": hop, "batch_size": batch_size, "max_seconds": max_seconds}
    self.readable = 0

  def __iter__(self) -> Iterator[FileScan]:
    from tqdm import tqdm

    files, errors = expand_inputs(self.inputs)
    for err in errors:
      print(f"skipped {err}", file=sys.stderr)
    with tqdm(total=len(files), desc=self.desc, unit="file", file=sys.stderr, disable=self.quiet) as bar:
      audio = _AudioProgress(bar)
      for scan in self.predictor.scan(files, **self.kwargs, on_audio=None if self.quiet else audio):
        audio.show()
        bar.update()
        if scan.error is not None:
          bar.write(f"skipped {scan.error}", file=sys.stderr)
          continue
        self.readable += 1
        yield scan
    if not files and not errors:
      print("no audio files found in the inputs", file=sys.stderr)


class _AudioProgress:
  """`on_audio` for `Predictor.scan`: hours of audio done and the speed as the bar's postfix, at most twice a
  second (a bar over files alone would stand still for the hours of a long recording)."""

  def __init__(self, bar):
    self.bar, self.seconds = bar, 0.0
    self.start = self.shown = time.perf_counter()

  def __call__(self, seconds: float) -> None:
    self.seconds += seconds
    if time.perf_counter() - self.shown >= 0.5:
      self.show(refresh=True)

  def show(self, refresh: bool = False) -> None:
    self.shown = time.perf_counter()
    speed = self.seconds / max(self.shown - self.start, 1e-9)
    self.bar.set_postfix_str(f"{self.seconds / 3600:.2f} h audio, {speed:.0f}x real time", refresh=refresh)


def predict_files(
  model: str | os.PathLike,
  inputs: Iterable[str | os.PathLike],
  *,
  output: str | os.PathLike | None = None,
  format: str = "csv",  # noqa: A002 - the command's option name
  pool: str | None = None,
  top_k: int = 5,
  min_score: float = 0.0,
  model_threshold: float = 0.5,
  hop: float | None = None,
  batch_size: int = 16,
  max_seconds: float | None = None,
  quiet: bool = False,
  threshold: float | None = None,
) -> int:
  """Ranked labels of every window and file of `inputs`, written to `output` (None: stdout) as `format`.

  Args:
    model: a bundle, converted model dir or training workdir (`inference.load.load_predictor`).
    pool, top_k, min_score, model_threshold: as `outputs.summarize` (pool None: the model's own,
      `audio.windows.window_pool`); hop, batch_size, max_seconds: as `Predictor.scan` (`hop` in seconds;
      files are streamed, so max_seconds defaults to None: no limit); quiet: no progress bar.
    threshold: a multi-label model's detection threshold for every class (None: its stored per-class ones;
      the classes of attached heads, `inference.heads`, are scored after the model's own and detected at 0.5).
  Returns:
    The number of files read; when 0, an existing `output` is left as it was.
  Raises:
    ValueError / OSError (a bad option, model or output path) before any file is read.
  """

  def run(out) -> int:
    predictor = load_model(model, hop)
    species = enrolled_species(predictor)
    if threshold is not None and not predictor.multi_label:
      raise ValueError(
        "--threshold applies to multi-label models; a single-label model ranks (see --min-score)"
      )
    own = None if threshold is None else np.full(len(predictor.labels), float(threshold))
    classes = model_classes(predictor, own)  # the model's classes, then its attached heads'
    writer = outputs.Writer(format, out, sample_rate=predictor.sample_rate, detections=predictor.multi_label)
    scans = _Scan(predictor, inputs, desc="predict", hop=hop, batch_size=batch_size, max_seconds=max_seconds,
                  quiet=quiet)  # fmt: skip
    for scan in classes.scans(scans):
      writer.write(
        outputs.summarize(
          scan, classes.labels, species, pool=pool or window_pool(predictor.multi_label), top_k=top_k,
          min_score=min_score, model_threshold=model_threshold, thresholds=classes.thresholds,
        )
      )  # fmt: skip
    writer.close()
    return scans.readable

  if output is None:
    return run(sys.stdout)
  with atomic.replaced_on_success(output) as tmp:
    with open(tmp, "w", encoding="utf-8", newline="") as out:
      read = run(out)
    if not read:
      tmp.unlink()  # no file could be read: keep the previous results
  return read


def embed_files(
  model: str | os.PathLike,
  inputs: Iterable[str | os.PathLike],
  out: str | os.PathLike,
  *,
  format: str | None = None,  # noqa: A002 - the command's option name
  hop: float | None = None,
  batch_size: int = 16,
  max_seconds: float | None = None,
  quiet: bool = False,
) -> int:
  """Per-window and per-file embeddings of `inputs` written to `out` (`outputs.EMBED_FORMATS`).

  Args:
    format: "parquet" or "npz"; None: npz if `out` ends in .npz, else parquet. The rest: as `predict_files`.
  Returns:
    The number of files read; when 0, nothing is written and an existing `out` is left as it was.
  """
  fmt = format or ("npz" if str(out).lower().endswith(".npz") else "parquet")
  if fmt not in outputs.EMBED_FORMATS:
    raise ValueError(f"format must be one of {outputs.EMBED_FORMATS}, got {fmt!r}")
  with atomic.replaced_on_success(out) as tmp:  # checks `out` before the model is even loaded
    predictor = load_model(model, hop)
    scans = _Scan(predictor, inputs, desc="embed", hop=hop, batch_size=batch_size, max_seconds=max_seconds,
                  quiet=quiet)  # fmt: skip
    cols = outputs.embedding_columns(scans)
    if not scans.readable:
      tmp.unlink()  # nothing to write: an existing `out` stays as it was
      return 0
    if fmt == "npz":
      outputs.write_npz(tmp, cols)
    else:
      meta = {"embed_dim": str(predictor.embed_dim), "sample_rate": str(predictor.sample_rate),
              "fingerprint": predictor.fingerprint, "model": str(predictor.path)}  # fmt: skip
      outputs.write_parquet(tmp, cols, meta)
  return scans.readable
