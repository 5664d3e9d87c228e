"""`predict --runner beam`: ranked labels of a corpus on any Apache Beam runner, resumable; the local outputs.

The work is `inference.beam_units.Units`, the pipeline of `embed --runner beam`: one unit per (file, block of
`block_seconds`), the model loaded once per worker, each unit's window probabilities and embeddings (one
forward pass) written atomically to the folder `NAME.units/` beside `--output NAME.EXT`, under an id that a
re-run finds: finished units are skipped, only missing ones are recomputed. The id depends on the file, the
model, the hop and the block only, so a re-run with another --format, --pool, --top-k, --min-score or
--threshold reads the same units and computes nothing.

The gather runs in the launching process, as one writer (Raven numbers its selections across files; JSON is
one list): for every file, in the local path's order (`files.expand_inputs`; a file named twice is written
twice and computed once), its units are read back as the `FileScan` that `Predictor.scan` gives
(`beam_units.file_scan`: small arrays, no audio) and written by the local path's own code: attached heads'
classes (`inference.heads`), `outputs.summarize` with the same pooling of windows into the file's summary, and
`outputs.Writer`, through `data.atomic.replaced_on_success` onto --output. So the output is the local
`predict`'s for the same inputs and flags, with scores equal to float rounding (only the batches differ). A
file that fails in any unit is named on stderr and left out, as the local path skips it; no file read leaves
an existing --output as it was. --framewise is not offered: it runs whole recordings through a framewise head.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
from collections.abc import Iterable, Sequence

import apache_beam as beam
import numpy as np

from animaljax.audio.windows import window_pool
from animaljax.data import atomic
from animaljax.inference import beam_units, files, outputs
from animaljax.inference.heads import model_classes


def units_dir(output: str | os.PathLike) -> pathlib.Path:
  """Where the units of a run writing `output` live: `NAME.units/` beside `NAME.EXT`, the extension replaced
  (`results.csv` and `results.json` share `results.units/`: another format reads the same units)."""
  output = pathlib.Path(os.path.abspath(output))
  where = output.with_name(output.stem + ".units")
  if where == output:
    raise ValueError(
      f"{output}: an output named *.units would be its own units folder; choose another --output"
    )
  return where


def _unit_lists(beam_options, model, predictor, paths, hop, block, batch_size, max_seconds, where) -> dict:
  """Runs the units of `paths` (each once); `{file: [unit paths] | "reason it was skipped"}`."""
  units = beam_units.Units(str(model), predictor, hop, block, batch_size, max_seconds, str(where))

  def build(p):
    return (
      p
      | "Files" >> beam.Create(sorted(set(paths)))
      | "Units" >> units
      | "Lines" >> beam.Map(lambda kv: json.dumps(list(kv)))
    )

  found = {}
  for line in beam_units.run_pipeline(beam_options, build, where / ".report"):
    key, value = json.loads(line)
    if key == beam_units.SKIPPED:
      found[value[0]] = value[1]  # the reason, a line naming the file
    else:
      found[key] = value
  return found


def predict_files(
  model: str | os.PathLike,
  inputs: Iterable[str | os.PathLike],
  *,
  output: str | os.PathLike | None,
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
  beam_options: Sequence[str] = (),
  block_seconds: float = 600.0,
) -> int:
  """`inference.files.predict_files` on Beam (module docstring); returns the files read (0: `output` kept).

  Args:
    output: the results file (required: its units are kept beside it, `units_dir`).
    beam_options: Beam pipeline options (`--runner=...`); none: the DirectRunner in this process.
    block_seconds: audio per work unit (> 0); the rest as `inference.files.predict_files`.
  Raises:
    ValueError / OSError (a bad option, model or output path) before any file is read.
  """
  if output is None:
    raise ValueError(
      "--runner beam needs --output FILE (its work units are kept beside it, in a .units folder)"
    )
  if format not in outputs.FORMATS:
    raise ValueError(f"format must be one of {outputs.FORMATS}, got {format!r}")
  where = units_dir(output)
  if where.exists() and not where.is_dir():
    raise FileExistsError(
      f"{where} exists and is not a folder of work units; move it or choose another --output"
    )
  with atomic.replaced_on_success(output) as tmp:  # checks `output` before the model is even loaded
    predictor, hop_samples, block, paths = beam_units.prepare(model, inputs, hop, block_seconds)
    species = files.enrolled_species(predictor)
    if threshold is not None and not predictor.multi_label:
      raise ValueError(
        "--threshold applies to multi-label models; a single-label model ranks (see --min-score)"
      )
    own = None if threshold is None else np.full(len(predictor.labels), float(threshold))
    classes = model_classes(predictor, own)  # the model's classes, then its attached heads'
    if not paths:
      tmp.unlink()
      return 0
    where.mkdir(parents=True, exist_ok=True)
    if not quiet:
      print(f"predicting {len(paths)} file(s) with Beam in units of {block_seconds:g} s -> {output}",
            file=sys.stderr)  # fmt: skip
    found = _unit_lists(
      beam_options, model, predictor, paths, hop_samples, block, batch_size, max_seconds, where
    )
    for reason in sorted({v for v in found.values() if isinstance(v, str)}):
      print(f"skipped {reason}", file=sys.stderr)
    read = 0
    with open(tmp, "w", encoding="utf-8", newline="") as out:
      writer = outputs.Writer(
        format, out, sample_rate=predictor.sample_rate, detections=predictor.multi_label
      )
      for path in paths:
        if isinstance(found.get(path), list):
          scan = classes.scan(beam_units.file_scan(path, found[path], predictor.sample_rate))
          writer.write(
            outputs.summarize(
              scan, classes.labels, species, pool=pool or window_pool(predictor.multi_label), top_k=top_k,
              min_score=min_score, model_threshold=model_threshold, thresholds=classes.thresholds,
            )
          )  # fmt: skip
          read += 1
      writer.close()
    if not read:
      tmp.unlink()  # no file could be read: keep the previous results
  return read
