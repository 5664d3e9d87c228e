"""`embed --runner beam`: window and file embeddings of a corpus on any Apache Beam runner, resumable.

The work is `inference.beam_units.Units`, shared with `predict --runner beam`: one unit per (file, block of
`block_seconds`), the model loaded once per worker, each unit's windows written atomically to `OUT/_units/`
under an id that a re-run finds, so finished units are skipped and only the missing ones recomputed.

Then, per file, the units are checked (a file that fails in any unit is skipped, named on stderr, as the local
path skips it) and read back as its `FileScan`, whose rows (windows, then the file row: the mean of its window
embeddings) are `outputs.embedding_columns`, the local path's own. Files are spread over
`ceil(files / FILES_PER_SHARD)` Parquet shards by a hash of their path, `OUT/embeddings-SSSSS-of-NNNNN
.parquet`, each written atomically with the local path's columns, types, row order (files sorted, windows then
the file row) and schema metadata (`inference.outputs.write_parquet`); shards of an earlier run with another
shard count are deleted once the new ones are all written. A file named twice is embedded once.

Embeddings equal the local path's to float rounding (`inference.beam_units`). Beam is imported only by the
`beam_*` modules (the optional extra, `pip install -e ".[beam]"`).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import re
import sys
from collections.abc import Iterable, Sequence

import apache_beam as beam

from animaljax.data import atomic
from animaljax.inference import beam_units, outputs

FILES_PER_SHARD = 1000
# Unit outputs: `_` keeps them out of readers of the folder (pyarrow's dataset skips `_` paths;
# `python -m animaljax.search index --embeddings OUT` reads *.parquet), which see only the shards.
UNITS = "_units"
SHARD_PATTERN = re.compile(r"embeddings-(\d{5})-of-(\d{5})\.parquet")


def _bucket(item, shards: int):
  """`(file, unit paths)` -> `(shard, (file, unit paths))`; a skipped file's `(SKIPPED, reason)` as it is."""
  path, units = item
  if path == beam_units.SKIPPED:
    return item
  return int(hashlib.sha256(path.encode()).hexdigest(), 16) % shards, (path, units)


class _WriteShard(beam.DoFn):
  def __init__(self, out: str, shards: int, meta: dict[str, str], sample_rate: int):
    self.out, self.shards, self.meta, self.sample_rate = out, shards, meta, sample_rate

  def process(self, item):
    bucket, members = item
    scans = (beam_units.file_scan(path, units, self.sample_rate) for path, units in sorted(members))
    cols = outputs.embedding_columns(scans)
    target = pathlib.Path(self.out, f"embeddings-{bucket:05d}-of-{self.shards:05d}.parquet")
    with atomic.replaced_on_success(target) as tmp:
      outputs.write_parquet(tmp, cols, self.meta)
    yield from (f"ok\t{p}" for p, _ in members)


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
  out = pathlib.Path(os.path.abspath(out))
  if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / UNITS).is_dir())):
    raise FileExistsError(
      f"{out} exists and is not an embeddings folder of `embed --runner beam`; choose another --out"
    )
  predictor, hop_samples, block, paths = beam_units.prepare(model, inputs, hop, block_seconds)
  paths = list(dict.fromkeys(paths))  # a file named twice (and inside a folder given) is one file's units
  if not paths:
    return 0
  (out / UNITS).mkdir(parents=True, exist_ok=True)
  shards = max(1, -(-len(paths) // FILES_PER_SHARD))
  meta = {"embed_dim": str(predictor.embed_dim), "sample_rate": str(predictor.sample_rate),
          "fingerprint": predictor.fingerprint, "model": str(predictor.path)}  # fmt: skip
  if not quiet:
    print(
      f"embedding {len(paths)} file(s) with Beam in units of {block_seconds:g} s -> {out}", file=sys.stderr
    )
  units = beam_units.Units(
    str(model), predictor, hop_samples, block, batch_size, max_seconds, str(out / UNITS)
  )

  def build(p):
    gathered = p | "Files" >> beam.Create(paths) | "Units" >> units | "Shard" >> beam.Map(_bucket, shards)
    written = (
      gathered
      | "Kept" >> beam.Filter(lambda kv: kv[0] != beam_units.SKIPPED)
      | "ByShard" >> beam.GroupByKey()
      | "Write" >> beam.ParDo(_WriteShard(str(out), shards, meta, predictor.sample_rate))
    )
    skipped = (
      gathered
      | "Skipped" >> beam.Filter(lambda kv: kv[0] == beam_units.SKIPPED)
      | beam.Map(lambda kv: f"skipped\t{kv[1][1]}")
    )
    return (written, skipped) | beam.Flatten()

  lines = beam_units.run_pipeline(beam_options, build, out / ".report")
  read = sum(line.startswith("ok\t") for line in lines)
  for line in sorted(line for line in lines if line.startswith("skipped\t")):
    print(f"skipped {line.split(chr(9), 1)[1]}", file=sys.stderr)
  if read:  # the new shards are all written: an earlier run's with another count go
    for f in out.iterdir():
      m = SHARD_PATTERN.fullmatch(f.name)
      if m and int(m.group(2)) != shards:
        f.unlink()
  return read
