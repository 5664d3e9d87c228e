"""The work units of `embed --runner beam` and `predict --runner beam`: (file, block) -> window outputs.

The work unit is one block of `block_seconds` of one file: the unit owns the windows that start in its block
(the windows of `audio.windows.cover_window_starts` over the whole file, as `Predictor.scan` cuts them), reads
only the audio they need (`audio.io.read_segment`: a seek, then the block plus one window), runs them through
the model (loaded once per worker, `DoFn.setup`, and only by a worker that has a unit left to compute) and
writes their start and end samples, class probabilities and embeddings, both from the same forward pass, to
`UNITS_DIR/<id>.npz` atomically (`data.atomic`; read back with `allow_pickle=False`). The id hashes the file
(path, size, modification time), the model's fingerprint, the hop, the block and `UNIT_FORMAT`, so a re-run
skips every unit whose file exists and recomputes only the missing ones (a killed or failed run resumes; a
changed file or model gets new units). The last unit of a file reads to its end, so it learns the file's
length and owns the window aligned to the end.

`Units` (a PTransform) plans, spreads and runs the units of a PCollection of files and gathers them per file:
`(file, [unit paths in order])`, or `(SKIPPED, [file, "file: reason"])` for a file that failed in any unit
(named on stderr by the caller, skipped as the local path skips it). `file_scan` reads a file's units back as
the `FileScan` that `Predictor.scan` gives for it, so the commands' outputs are written by the local path's
own code (`outputs.embedding_columns`, `outputs.summarize`): the windows and samples are the same (exactly at
the model's rate; resampled segments to ~2e-7), only the batches differ, so scores and embeddings agree to
float rounding. Beam is imported only by the `beam_*` modules (the optional extra: `pip install -e ".[beam]"`
or the `dev` extra).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from animaljax.audio.io import AudioError, audio_info, read_segment
from animaljax.audio.windows import cover_window_starts
from animaljax.data import atomic
from animaljax.inference import files as inference_files
from animaljax.inference.predictor import Predictor
from animaljax.inference.streaming import FileScan

UNIT_FORMAT = 2  # 1: Parquet rows of embeddings only; 2: npz of starts, ends, probs and embeddings
SKIPPED = "skipped"
# A unit or its error text: Beam must not infer a fixed tuple coder from one of the two kinds of value.
_KV = beam.typehints.KV[str, beam.typehints.Any]


# ---------------------------------------------------------------------------------------------------- a unit
def unit_id(path: str, fingerprint: str, hop: int, block: int, index: int, count: int) -> str:
  """The name of a unit's output: changes with the file's content stamp, the model, the hop or the block."""
  st = os.stat(path)
  key = [os.path.abspath(path), st.st_size, st.st_mtime_ns, fingerprint, hop, block, index, count]
  key.append(UNIT_FORMAT)
  return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]


def unit_starts(total: int | None, lo: int, hi: int | None, window: int, hop: int) -> list[int]:
  """The window starts a unit owns, those in `[lo, hi)` (hi None: to the end), of a file of `total` samples
  (None: not known, as the unit's read ended before the file did; then only regular starts can fall in it)."""
  if total is not None:
    return [int(s) for s in cover_window_starts(total, window, hop) if s >= lo and (hi is None or s < hi)]
  return list(range(-(-lo // hop) * hop, hi, hop))


def run_unit(predictor, path: str, lo: int, hi: int | None, hop: int, batch_size: int, max_seconds) -> dict:
  """The windows a unit owns through the model: `{"starts", "ends"}` (n,) int64 samples, `"probs"` (n, C) and
  `"embeddings"` (n, D) float32, `"total"` the file's samples (-1: the read ended before the file)."""
  w = predictor.clip_samples
  audio, total = read_segment(
    path, predictor.sample_rate, lo, None if hi is None else hi + w, max_seconds=max_seconds
  )
  starts = unit_starts(total, lo, hi, w, hop)
  outs, full = [], []
  for s in starts:
    x = audio[s - lo : s - lo + w]
    if x.shape[0] < w:  # a file shorter than the window: its one row, fitted as `Predictor.scan` fits it
      x = predictor.pad_short(x)
      if x.shape[0] != w:
        outs.append((s, predictor.run_windows(x[None])))
        continue
    full.append((s, x))
  for i in range(0, len(full), batch_size):
    chunk = full[i : i + batch_size]
    outs.append((chunk[0][0], predictor.run_windows(np.stack([x for _, x in chunk]))))
  outs.sort(key=lambda t: t[0])
  dims = (len(predictor.labels), predictor.embed_dim)
  probs, embs = (
    np.concatenate([o[k] for _, o in outs]) if outs else np.zeros((0, dims[k]), np.float32) for k in (0, 1)
  )
  ends = [min(s + w, total) if total is not None else s + w for s in starts]
  return {"starts": np.asarray(starts, np.int64), "ends": np.asarray(ends, np.int64),
          "probs": probs.astype(np.float32), "embeddings": embs.astype(np.float32),
          "total": np.int64(-1 if total is None else total)}  # fmt: skip


def file_scan(path: str, unit_paths: Sequence[str], sample_rate: int) -> FileScan:
  """A file's units, read back (in order) as the `FileScan` that `Predictor.scan` gives for the file."""
  units = []
  for p in unit_paths:
    with np.load(p, allow_pickle=False) as z:
      units.append({k: z[k] for k in z.files})
  cat = {k: np.concatenate([u[k] for u in units]) for k in ("starts", "ends", "probs", "embeddings")}
  total = int(units[-1]["total"])  # the last unit reads to the end of the file
  sr = sample_rate
  return FileScan(path, total / sr, cat["starts"] / sr, cat["ends"] / sr, cat["probs"], cat["embeddings"])


# ---------------------------------------------------------------------------------------------------- steps
class _Plan(beam.DoFn):
  """A file -> its units `(file, (index, count, lo, hi, id))`, or `(file, AudioError text)` if unreadable."""

  def __init__(self, sample_rate: int, fingerprint: str, hop: int, block: int, max_seconds):
    self.sample_rate, self.fingerprint, self.hop, self.block = sample_rate, fingerprint, hop, block
    self.max_seconds = max_seconds

  def process(self, path):
    try:
      sr, frames, _ = audio_info(path)
    except AudioError as err:
      yield path, str(err)
      return
    if self.max_seconds is not None and frames / sr > self.max_seconds:  # units done by a run without it
      yield path, str(AudioError(path, f"too long: {frames / sr:.1f} s > max {self.max_seconds:g} s"))
      return
    estimate = round(frames * self.sample_rate / sr)
    count = max(1, -(-estimate // self.block))
    for i in range(count):
      hi = None if i == count - 1 else (i + 1) * self.block  # the last unit reads to the end
      uid = unit_id(path, self.fingerprint, self.hop, self.block, i, count)
      yield path, (i, count, i * self.block, hi, uid)


class _RunUnit(beam.DoFn):
  """A unit -> `(file, (index, count, output path))` once its outputs are on disk, or `(file, error text)`."""

  def __init__(self, model: str, hop: int, batch_size: int, max_seconds, units_dir: str):
    self.model, self.hop, self.batch_size = model, hop, batch_size
    self.max_seconds, self.units_dir = max_seconds, units_dir

  def setup(self):
    self.predictor = None  # loaded on the first unit that is not done already: a resumed run loads nothing

  def process(self, item):
    path, unit = item
    if isinstance(unit, str):
      yield path, unit
      return
    index, count, lo, hi, uid = unit
    target = pathlib.Path(self.units_dir, f"{uid}.npz")
    if not target.exists():
      if self.predictor is None:
        self.predictor = inference_files.load_model(self.model)
      try:
        arrays = run_unit(self.predictor, path, lo, hi, self.hop, self.batch_size, self.max_seconds)
      except AudioError as err:
        yield path, str(err)
        return
      with atomic.replaced_on_success(target) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    yield path, (index, count, str(target))


def _gather(item) -> tuple[str, list]:
  """`(file, unit results)` -> `(file, unit paths in order)`, or `(SKIPPED, [file, "file: reason"])`."""
  path, results = item
  errors = sorted({r for r in results if isinstance(r, str)})
  if errors:
    return SKIPPED, [path, errors[0]]
  done = sorted(results)
  if [i for i, _, _ in done] != list(range(done[0][1])):
    return SKIPPED, [path, f"{path}: units missing ({len(done)} of {done[0][1]})"]
  return path, [p for _, _, p in done]


class Units(beam.PTransform):
  """Files -> `(file, [unit output paths in order])` or `(SKIPPED, [file, reason])`, one per file (module
  docstring). Args: the model's path and its loaded `Predictor` (rate, fingerprint), the hop and block in
  samples, windows per forward pass, `max_seconds` (as `Predictor.scan`) and the folder of the unit
  outputs."""

  def __init__(self, model: str, predictor: Predictor, hop: int, block: int, batch_size: int, max_seconds,
               units_dir: str):  # fmt: skip
    super().__init__()
    self.plan = _Plan(predictor.sample_rate, predictor.fingerprint, hop, block, max_seconds)
    self.run = _RunUnit(model, hop, batch_size, max_seconds, units_dir)

  def expand(self, files):
    return (
      files
      | "Plan" >> beam.ParDo(self.plan).with_output_types(_KV)
      | "Spread" >> beam.Reshuffle()  # units of one long file go to many workers
      | "Run" >> beam.ParDo(self.run).with_output_types(_KV)
      | "ByFile" >> beam.GroupByKey()
      | "Gather" >> beam.Map(_gather)
    )


# ---------------------------------------------------------------------------------------------------- runs
def prepare(
  model, inputs: Iterable, hop: float | None, block_seconds: float
) -> tuple[Predictor, int, int, list]:
  """Checks and loads what a Beam run needs before any file is read: `(predictor, hop samples, block samples,
  files)`; files in the local path's order (`files.expand_inputs`, duplicates kept), missing ones named on
  stderr. ValueError / OSError for a bad block, hop or model."""
  if not block_seconds > 0 or not math.isfinite(block_seconds):
    raise ValueError(f"block_seconds must be a number > 0, got {block_seconds}")
  predictor = inference_files.load_model(model, hop)
  block = max(1, round(block_seconds * predictor.sample_rate))
  paths, errors = inference_files.expand_inputs(inputs)
  for err in errors:
    print(f"skipped {err}", file=sys.stderr)
  if not paths:
    print("no audio files found in the inputs", file=sys.stderr)
  return predictor, predictor.hop_samples(hop), block, paths


def run_pipeline(beam_options: Sequence[str], build: Callable, report: pathlib.Path) -> list[str]:
  """Runs the pipeline `build(pipeline)` describes (it returns a PCollection of one-line strings) and returns
  those lines, written through `report/part*` (removed again) so that any runner can hand them back."""
  with beam.Pipeline(options=PipelineOptions(list(beam_options))) as p:
    _ = build(p) | "Report" >> beam.io.WriteToText(str(report / "part"))
  lines = [line for f in sorted(report.glob("part*")) for line in f.read_text().splitlines()]
  for f in report.glob("part*"):
    f.unlink()
  report.rmdir()
  return lines
