"""`embed --runner beam`: window and file embeddings of a corpus on any Apache Beam runner, resumable.

The work unit is one block of `block_seconds` of one file: the unit owns the windows that start in its block
(the windows of `audio.windows.cover_window_starts` over the whole file, as `Predictor.scan` cuts them), reads
only the audio they need (`audio.io.read_segment`: a seek, then the block plus one window), runs them through
the model (loaded once per worker, `DoFn.setup`) and writes their rows to `OUT/_units/<id>.pq` (Parquet), atomically
(`data.atomic`). The id hashes the file (path, size, modification time), the model's fingerprint, the hop and
the block, so a re-run skips every unit whose file exists and recomputes only the missing ones (a killed or
failed run resumes; a changed file or model gets new units). The last unit of a file reads to its end, so it
learns the file's length and owns the window aligned to the end.

Then, per file, the units are checked (a file that fails in any unit is skipped, named on stderr, as the local
path skips it) and its rows gathered with its file row (the mean of its window embeddings). Files are spread
over `ceil(files / FILES_PER_SHARD)` Parquet shards by a hash of their path, `OUT/embeddings-SSSSS-of-NNNNN
.parquet`, each written atomically with the local path's columns, types, row order (files sorted, windows then
the file row) and schema metadata (`inference.outputs.write_parquet`); shards of an earlier run with another
shard count are deleted once the new ones are all written.

Embeddings equal the local path's to float rounding: the windows and samples are the same (exactly at the
model's rate; resampled segments to ~2e-7), only the batches differ. Beam is imported only here (the optional
extra, `pip install -e ".[beam]"`). `predict` is not ported: its outputs (ranked labels, Raven tables,
detection runs) are per file; `python -m animaljax.predict` stays local.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import re
import sys
from collections.abc import Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from animaljax.audio.io import AudioError, audio_info, read_segment
from animaljax.audio.windows import cover_window_starts
from animaljax.data import atomic
from animaljax.inference import files as inference_files
from animaljax.inference import outputs

FILES_PER_SHARD = 1000
# A unit or its error text: Beam must not infer a fixed tuple coder from one of the two kinds of value.
_KV = beam.typehints.KV[str, beam.typehints.Any]
# Unit outputs: `_` and `.pq` keep them out of readers of the folder (pyarrow's dataset skips `_` paths;
# `python -m animaljax.search index --embeddings OUT` reads *.parquet), which see only the shards.
UNITS = "_units"
SHARD_PATTERN = re.compile(r"embeddings-(\d{5})-of-(\d{5})\.parquet")


# ---------------------------------------------------------------------------------------------------- units
def unit_id(path: str, fingerprint: str, hop: int, block: int, index: int, count: int) -> str:
  """The name of a unit's output: changes with the file's content stamp, the model, the hop or the block."""
  st = os.stat(path)
  key = [os.path.abspath(path), st.st_size, st.st_mtime_ns, fingerprint, hop, block, index, count]
  return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:32]


def unit_starts(total: int | None, lo: int, hi: int | None, window: int, hop: int) -> list[int]:
  """The window starts a unit owns, those in `[lo, hi)` (hi None: to the end), of a file of `total` samples
  (None: not known, as the unit's read ended before the file did; then only regular starts can fall in it)."""
  if total is not None:
    return [int(s) for s in cover_window_starts(total, window, hop) if s >= lo and (hi is None or s < hi)]
  return list(range(-(-lo // hop) * hop, hi, hop))


def embed_unit(predictor, path: str, lo: int, hi: int | None, hop: int, batch_size: int, max_seconds):
  """`(starts, ends, (n, D) embeddings, total samples or None)` of the windows a unit owns."""
  w = predictor.clip_samples
  audio, total = read_segment(
    path, predictor.sample_rate, lo, None if hi is None else hi + w, max_seconds=max_seconds
  )
  starts = unit_starts(total, lo, hi, w, hop)
  embs, full = [], []
  for s in starts:
    x = audio[s - lo : s - lo + w]
    if x.shape[0] < w:  # a file shorter than the window: its one row, fitted as `Predictor.scan` fits it
      x = predictor.pad_short(x)
      if x.shape[0] != w:
        embs.append((s, predictor.run_windows(x[None])[1]))
        continue
    full.append((s, x))
  for i in range(0, len(full), batch_size):
    chunk = full[i : i + batch_size]
    embs.append((chunk[0][0], predictor.run_windows(np.stack([x for _, x in chunk]))[1]))
  emb = (
    np.concatenate([e for _, e in sorted(embs, key=lambda t: t[0])]) if embs else np.zeros((0, 0), np.float32)
  )
  n = total if total is not None else None
  ends = [min(s + w, n) if n is not None else s + w for s in starts]
  return starts, ends, emb.astype(np.float32), total


class _Plan(beam.DoFn):
  """A file -> its units `(file, (index, count, lo, hi, id))`, or `(file, AudioError text)` if unreadable."""

  def __init__(self, sample_rate: int, fingerprint: str, hop: int, block: int):
    self.sample_rate, self.fingerprint, self.hop, self.block = sample_rate, fingerprint, hop, block

  def process(self, path):
    try:
      sr, frames, _ = audio_info(path)
    except AudioError as err:
      yield path, str(err)
      return
    estimate = round(frames * self.sample_rate / sr)
    count = max(1, -(-estimate // self.block))
    for i in range(count):
      hi = None if i == count - 1 else (i + 1) * self.block  # the last unit reads to the end
      yield (
        path,
        (i, count, i * self.block, hi, unit_id(path, self.fingerprint, self.hop, self.block, i, count)),
      )


class _EmbedUnit(beam.DoFn):
  """A unit -> `(file, (index, count, output path))` once its rows are on disk, or `(file, error text)`."""

  def __init__(self, model: str, hop: int, batch_size: int, max_seconds, out: str):
    self.model, self.hop, self.batch_size, self.max_seconds, self.out = (
      model,
      hop,
      batch_size,
      max_seconds,
      out,
    )

  def setup(self):
    self.predictor = None  # loaded on the first unit that is not done already: a resumed run loads nothing

  def process(self, item):
    path, unit = item
    if isinstance(unit, str):
      yield path, unit
      return
    index, count, lo, hi, uid = unit
    target = pathlib.Path(self.out, UNITS, f"{uid}.pq")
    if not target.exists():
      if self.predictor is None:
        self.predictor = inference_files.load_model(self.model)
      try:
        starts, ends, emb, total = embed_unit(
          self.predictor, path, lo, hi, self.hop, self.batch_size, self.max_seconds
        )
      except AudioError as err:
        yield path, str(err)
        return
      sr = self.predictor.sample_rate
      cols = {"file": [path] * len(starts), "kind": ["window"] * len(starts), "start_s": [s / sr for s in starts],
              "end_s": [e / sr for e in ends], "embedding": list(emb)}  # fmt: skip
      meta = {"total_samples": "" if total is None else str(total), "sample_rate": str(sr),
              "embed_dim": str(self.predictor.embed_dim)}  # fmt: skip
      with atomic.replaced_on_success(target) as tmp:
        outputs.write_parquet(tmp, cols, meta)
    yield path, (index, count, str(target))


def _gather(item, shards: int):
  """`(file, unit results)` -> `(shard, (file, unit paths in order))`, or `("skipped", "file: reason")`."""
  path, results = item
  errors = sorted({r for r in results if isinstance(r, str)})
  if errors:
    return "skipped", errors[0]
  done = sorted(results)
  if [i for i, _, _ in done] != list(range(done[0][1])):
    return "skipped", f"{path}: units missing ({len(done)} of {done[0][1]})"
  bucket = int(hashlib.sha256(path.encode()).hexdigest(), 16) % shards
  return bucket, (path, [p for _, _, p in done])


def file_columns(path: str, unit_paths: Sequence[str]) -> dict[str, list]:
  """One file's rows as `outputs.embedding_columns` gives them: its windows, then its file row."""
  import pyarrow.parquet as pq

  tables = [pq.read_table(p) for p in unit_paths]
  cols = {
    k: [v for t in tables for v in t.column(k).to_pylist()] for k in ("file", "kind", "start_s", "end_s")
  }
  dim = int(tables[-1].schema.metadata[b"embed_dim"])  # a unit may own no window (its rows: none)
  emb = np.concatenate(
    [np.asarray(t.column("embedding").to_pylist(), np.float32).reshape(t.num_rows, dim) for t in tables]
  )
  cols["embedding"] = list(emb)
  total = int(tables[-1].schema.metadata[b"total_samples"])
  sr = int(tables[-1].schema.metadata[b"sample_rate"])
  for k, v in (
    ("file", path),
    ("kind", "file"),
    ("start_s", 0.0),
    ("end_s", total / sr),
    ("embedding", emb.mean(0)),
  ):
    cols[k].append(v)
  return cols


class _WriteShard(beam.DoFn):
  def __init__(self, out: str, shards: int, meta: dict[str, str]):
    self.out, self.shards, self.meta = out, shards, meta

  def process(self, item):
    bucket, members = item
    cols: dict[str, list] = {"file": [], "kind": [], "start_s": [], "end_s": [], "embedding": []}
    for path, unit_paths in sorted(members):
      for k, v in file_columns(path, unit_paths).items():
        cols[k] += v
    target = pathlib.Path(self.out, f"embeddings-{bucket:05d}-of-{self.shards:05d}.parquet")
    with atomic.replaced_on_success(target) as tmp:
      outputs.write_parquet(tmp, cols, self.meta)
    yield from (f"ok\t{p}" for p, _ in members)


# ---------------------------------------------------------------------------------------------------- run
def embed_files(
  model: str | os.PathLike,
  inputs: Iterable[str | os.PathLike],
  out: str | os.PathLike,
  *,
  beam_options: Sequence[str] = (),
  block_seconds: float = 600.0,
  hop: float | None = None,
  batch_size: int = 16,
  max_seconds: float | None = None,
  quiet: bool = False,
) -> int:
  """`inference.files.embed_files` on Beam, into the folder `out` (module docstring); returns the files read.

  Args:
    beam_options: Beam pipeline options (`--runner=...`); none: the DirectRunner in this process.
    block_seconds: audio per work unit (> 0); the rest as `inference.files.embed_files`.
  Raises:
    ValueError / OSError (a bad option, model or output folder) before any file is read.
  """
  if not block_seconds > 0 or not math.isfinite(block_seconds):
    raise ValueError(f"block_seconds must be a number > 0, got {block_seconds}")
  out = pathlib.Path(os.path.abspath(out))
  if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / UNITS).is_dir())):
    raise FileExistsError(
      f"{out} exists and is not an embeddings folder of `embed --runner beam`; choose another --out"
    )
  predictor = inference_files.load_model(model, hop)
  hop_samples = predictor.hop_samples(hop)
  block = max(1, round(block_seconds * predictor.sample_rate))
  paths, errors = inference_files.expand_inputs(inputs)
  paths = list(dict.fromkeys(paths))  # a file named twice (and inside a folder given) is one file's units
  for err in errors:
    print(f"skipped {err}", file=sys.stderr)
  if not paths:
    print("no audio files found in the inputs", file=sys.stderr)
    return 0
  (out / UNITS).mkdir(parents=True, exist_ok=True)
  shards = max(1, math.ceil(len(paths) / FILES_PER_SHARD))
  meta = {"embed_dim": str(predictor.embed_dim), "sample_rate": str(predictor.sample_rate),
          "fingerprint": predictor.fingerprint, "model": str(predictor.path)}  # fmt: skip
  report = out / ".report"
  if not quiet:
    print(
      f"embedding {len(paths)} file(s) with Beam in units of {block_seconds:g} s -> {out}", file=sys.stderr
    )
  with beam.Pipeline(options=PipelineOptions(list(beam_options))) as p:
    gathered = (
      p
      | "Files" >> beam.Create(paths)
      | "Plan"
      >> beam.ParDo(
        _Plan(predictor.sample_rate, predictor.fingerprint, hop_samples, block)
      ).with_output_types(_KV)
      | "Spread" >> beam.Reshuffle()  # units of one long file go to many workers
      | "Embed"
      >> beam.ParDo(_EmbedUnit(str(model), hop_samples, batch_size, max_seconds, str(out))).with_output_types(
        _KV
      )
      | "ByFile" >> beam.GroupByKey()
      | "Gather" >> beam.Map(_gather, shards)
    )
    written = (
      gathered
      | "Kept" >> beam.Filter(lambda kv: kv[0] != "skipped")
      | "ByShard" >> beam.GroupByKey()
      | "Write" >> beam.ParDo(_WriteShard(str(out), shards, meta))
    )
    skipped = (
      gathered
      | "Skipped" >> beam.Filter(lambda kv: kv[0] == "skipped")
      | beam.Map(lambda kv: f"skipped\t{kv[1]}")
    )
    _ = (written, skipped) | beam.Flatten() | "Report" >> beam.io.WriteToText(str(report / "part"))
  lines = [line for f in sorted(report.glob("part*")) for line in f.read_text().splitlines()]
  for f in report.glob("part*"):
    f.unlink()
  report.rmdir()
  read = sum(line.startswith("ok\t") for line in lines)
  for line in sorted(line for line in lines if line.startswith("skipped\t")):
    print(f"skipped {line.split(chr(9), 1)[1]}", file=sys.stderr)
  if read:  # the new shards are all written: an earlier run's with another count go
    for f in out.iterdir():
      m = SHARD_PATTERN.fullmatch(f.name)
      if m and int(m.group(2)) != shards:
        f.unlink()
  return read
