"""Label audio files with an exported model: per-window labels and a per-file summary as CSV, JSON or Raven.

  python -m animaljax.predict --model exported/x recordings/ clip.flac [--hop 2.5] [--format csv|json|raven]
      [--pool mean|max] [--top-k 5] [--min-score 0.1] [--output results.csv]

--model is a bundle (`python -m animaljax.export`), a converted model dir or a training workdir. Folders are
searched recursively for audio files (AUDIO_EXTENSIONS). Every file is read at the model's rate, cut into
windows of the model's clip length every --hop seconds (default: one window, no overlap; the last window is
aligned to the file's end) and each window is ranked; the file's summary ranks the mean (or, --pool max, the
maximum) of its windows' probabilities. Enrolled species of the model are ranked with its classes, and
"unknown" comes first where nothing is confident (`animaljax.fewshot.enrol.rank`).

Output (stdout, or --output):
  csv    file,kind,start_s,end_s,rank,label,score: one row per kept label, kind "window" or "file" (the
         summary row spans the whole file)
  json   one list, an object per file: {"file", "labels": [{"label", "score"}, ...] (best first),
         "windows": [{"start_s", "end_s", "labels": [...]}, ...]}
  raven  a Raven selection table of the windows (tab-separated; one row per kept label; a Begin File column
         says which file)

A file that cannot be read is named on stderr with the reason and skipped; the exit status is 1 only when no
file could be read at all (2 for a bad model or arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import pathlib
import sys
from collections.abc import Iterable, Iterator, Sequence

from animaljax.audio.io import AUDIO_EXTENSIONS, AudioError

FORMATS = ("csv", "json", "raven")
POOLS = ("mean", "max")
CSV_COLUMNS = ("file", "kind", "start_s", "end_s", "rank", "label", "score")
RAVEN_COLUMNS = (
  "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
  "Species", "Score", "Begin File",
)  # fmt: skip


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


def _keep(ranking: list[dict], min_score: float) -> list[dict]:
  return [{"label": r["label"], "score": r["score"]} for r in ranking if r["score"] >= min_score]


def summarize(
  scan,
  labels: Sequence[str],
  species: dict,
  *,
  pool: str = "mean",
  top_k: int = 5,
  min_score: float = 0.0,
  model_threshold: float = 0.5,
) -> dict:
  """A `Predictor.scan` result -> `{"file", "labels", "windows": [{"start_s", "end_s", "labels"}]}`.

  Args:
    labels, species: the model's class names and enrolled species (`SpeciesStore.load()`).
    pool: the file's probabilities are the "mean" or "max" of its windows' (its embedding: their mean).
    top_k: labels kept per window and per file (0: all); min_score: drop labels scoring below it.
    model_threshold: below this top probability the model is "unknown" (`fewshot.enrol.rank`).
  """
  from animaljax.fewshot.enrol import rank

  if pool not in POOLS:
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
  k = top_k or None

  def ranked(p, e):
    return _keep(rank(p, labels, e, species, top_k=k, model_threshold=model_threshold), min_score)

  pooled = scan.probs.mean(0) if pool == "mean" else scan.probs.max(0)
  windows = [
    {"start_s": round(float(s), 6), "end_s": round(float(e), 6), "labels": ranked(p, emb)}
    for s, e, p, emb in zip(scan.start_s, scan.end_s, scan.probs, scan.embeddings, strict=True)
  ]
  return {"file": scan.file, "labels": ranked(pooled, scan.embeddings.mean(0)), "windows": windows}


# ----------------------------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------------------------
def csv_rows(result: dict) -> Iterator[tuple]:
  """CSV_COLUMNS rows of one file's result: its windows, then its summary (kind "file")."""
  for w in result["windows"]:
    for r, entry in enumerate(w["labels"], start=1):
      yield result["file"], "window", w["start_s"], w["end_s"], r, entry["label"], entry["score"]
  end = result["windows"][-1]["end_s"] if result["windows"] else 0.0
  for r, entry in enumerate(result["labels"], start=1):
    yield result["file"], "file", 0.0, end, r, entry["label"], entry["score"]


class Writer:
  """Streams results in one format: `write(result)` per file, then `close()` (JSON's closing bracket)."""

  def __init__(self, fmt: str, out, *, sample_rate: int):
    if fmt not in FORMATS:
      raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    self.fmt, self.out, self.high = fmt, out, sample_rate / 2
    self.count = self.selection = 0
    if fmt == "csv":
      self.csv = csv.writer(out, lineterminator="\n")
      self.csv.writerow(CSV_COLUMNS)
    elif fmt == "raven":
      out.write("\t".join(RAVEN_COLUMNS) + "\n")
    else:
      out.write("[")

  def write(self, result: dict) -> None:
    if self.fmt == "csv":
      self.csv.writerows(csv_rows(result))
    elif self.fmt == "json":
      self.out.write(("," if self.count else "") + "\n" + json.dumps(result, ensure_ascii=False))
    else:
      for w in result["windows"]:
        for entry in w["labels"]:
          self.selection += 1
          row = (
            self.selection, "Spectrogram 1", 1, f"{w['start_s']:.4f}", f"{w['end_s']:.4f}", "0.0",
            f"{self.high:.1f}", _raven_text(entry["label"]), f"{entry['score']:.6f}", _raven_text(result["file"]),
          )  # fmt: skip
          self.out.write("\t".join(map(str, row)) + "\n")
    self.count += 1

  def close(self) -> None:
    if self.fmt == "json":
      self.out.write("\n]\n" if self.count else "]\n")
    self.out.flush()


def _raven_text(s: str) -> str:
  """Tabs and newlines would break the table's columns."""
  return " ".join(str(s).split())


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def add_common_arguments(parser: argparse.ArgumentParser) -> None:
  """Arguments shared with `animaljax.embed`."""
  parser.add_argument(
    "--model", required=True, help="exported bundle, converted model dir or training workdir"
  )
  parser.add_argument("inputs", nargs="+", help="audio files and folders (searched recursively)")
  parser.add_argument("--hop", type=float, help="seconds between window starts (default: the window length)")
  parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
  parser.add_argument(
    "--max-seconds", type=float, default=7200.0, help="longest file read (decoded whole into host RAM)"
  )
  parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m animaljax.predict", description=__doc__.split("\n")[0])
  add_common_arguments(parser)
  parser.add_argument("--format", choices=FORMATS, default="csv")
  parser.add_argument("--output", help="write here instead of stdout")
  parser.add_argument("--pool", choices=POOLS, default="mean", help="file summary: mean or max over windows")
  parser.add_argument("--top-k", type=int, default=5, help="labels per window and per file (0: all)")
  parser.add_argument("--min-score", type=float, default=0.0, help="drop labels scoring below this")
  parser.add_argument(
    "--model-threshold", type=float, default=0.5, help="top probability below which the model says unknown"
  )
  return parser


def load_model(path: str):
  """The Predictor for `--model` (bundle, model dir or workdir)."""
  from animaljax.predictor import Predictor

  return Predictor.load(path)


def scan_inputs(args, predictor, *, progress_desc: str) -> Iterator:
  """`Predictor.scan` over the expanded inputs with a progress bar on stderr; unreadable files are reported on
  stderr and skipped. Sets `args.readable` to the number of files read."""
  from tqdm import tqdm

  files, errors = expand_inputs(args.inputs)
  for err in errors:
    print(f"skipped {err}", file=sys.stderr)
  args.readable = 0
  with tqdm(total=len(files), desc=progress_desc, unit="file", file=sys.stderr, disable=args.quiet) as bar:
    for scan in predictor.scan(
      files, hop_seconds=args.hop, batch_size=args.batch_size, max_seconds=args.max_seconds
    ):
      bar.update()
      if scan.error is not None:
        bar.write(f"skipped {scan.error}", file=sys.stderr)
        continue
      args.readable += 1
      yield scan
  if not files and not errors:
    print("no audio files found in the inputs", file=sys.stderr)


@contextlib.contextmanager
def open_output(path: str | None, binary: bool = False):
  """The --output file (created with its folder) or stdout."""
  if path is None:
    yield sys.stdout.buffer if binary else sys.stdout
    return
  pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
  with open(path, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as f:
    yield f


def run(args: argparse.Namespace) -> int:
  """Executes parsed arguments; returns the exit status."""
  if args.top_k < 0:
    raise ValueError(f"--top-k must be >= 0, got {args.top_k}")
  predictor = load_model(args.model)
  store = predictor.species_store()
  species = store.load() if store is not None else {}
  with open_output(args.output) as out:
    writer = Writer(args.format, out, sample_rate=predictor.sample_rate)
    for scan in scan_inputs(args, predictor, progress_desc="predict"):
      writer.write(
        summarize(
          scan, predictor.labels, species, pool=args.pool, top_k=args.top_k, min_score=args.min_score,
          model_threshold=args.model_threshold,
        )
      )  # fmt: skip
    writer.close()
  return 0 if args.readable else 1


def run_cli(parser: argparse.ArgumentParser, run_fn, argv: list[str] | None) -> int:
  """`run_fn(parser.parse_args(argv))`; a bad model, store or input prints `error: ...` and returns 2.

  Shared by `predict` and `embed`: their exit codes are 0 (all inputs read), 1 (some unreadable), 2 (failed).
  """
  from animaljax.export import ExportError
  from animaljax.fewshot.store import StoreError

  args = parser.parse_args(argv)
  try:
    return run_fn(args)
  except (ExportError, StoreError, AudioError, FileNotFoundError, ValueError, OSError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
  return run_cli(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
