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
file could be read at all (2 for a bad model or arguments). Every option is checked before any work, and
--output is written under a temporary name beside it and renamed onto it only once complete: a mistake, a
failure or a run that reads no file leaves an existing results file as it was. A damaged species store is
named in one warning line and the model's own classes are ranked without it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence

from animaljax import cli
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
  """Arguments shared with `animaljax.embed` (numbers checked by argparse, before any work)."""
  parser.add_argument(
    "--model", required=True, help="exported bundle, converted model dir or training workdir"
  )
  parser.add_argument("inputs", nargs="+", help="audio files and folders (searched recursively)")
  parser.add_argument(
    "--hop", type=cli.positive_float, help="seconds between window starts (default: the window length)"
  )
  parser.add_argument("--batch-size", type=cli.positive_int, default=16, help="windows per forward pass")
  parser.add_argument(
    "--max-seconds", type=cli.positive_float, default=7200.0,
    help="longest file read (decoded whole into host RAM)",
  )  # fmt: skip
  parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.predict", description=__doc__.split("\n")[0])
  add_common_arguments(parser)
  parser.add_argument("--format", choices=FORMATS, default="csv")
  parser.add_argument("--output", help="write here instead of stdout (replaced only once complete)")
  parser.add_argument("--pool", choices=POOLS, default="mean", help="file summary: mean or max over windows")
  parser.add_argument(
    "--top-k", type=cli.nonnegative_int, default=5, help="labels per window and per file (0: all)"
  )
  parser.add_argument("--min-score", type=cli.probability, default=0.0, help="drop labels scoring below this")
  parser.add_argument(
    "--model-threshold", type=cli.probability, default=0.5,
    help="top probability below which the model says unknown",
  )  # fmt: skip
  return parser


def load_model(path: str, hop_seconds: float | None = None):
  """The Predictor for `--model` (bundle, model dir or workdir), after checking that `hop_seconds` is at
  least one sample at its rate (ValueError otherwise), so a bad --hop stops the run before any file is read."""
  from animaljax.predictor import Predictor

  predictor = Predictor.load(path)
  predictor.hop_samples(hop_seconds)
  return predictor


def enrolled_species(predictor) -> dict:
  """The predictor's enrolled species; a damaged species store is named in one warning line on stderr and
  ignored, so the model's own classes are still ranked."""
  from animaljax.fewshot.store import StoreError

  store = predictor.species_store()
  if store is None:
    return {}
  try:
    return store.load()
  except StoreError as err:
    print(
      f"warning: the species store {store.directory} is damaged: {cli.one_line(err)}; "
      "ignoring enrolled species",
      file=sys.stderr,
    )
    return {}


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
def replaced_on_success(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """A temporary file beside `path` to write the output to; renamed onto `path` when the block ends.

  Nothing is lost: if the block raises, or unlinks the temporary file to say there is nothing to write,
  `path` is left as it was (an existing file byte for byte) and the folders made for it are removed again.
  Checked on entry, before any work: `path` must not be a folder, and its folder must be writable.
  Yields:
    The temporary file's path (created empty; mode as `open` would give `path`).
  """
  target = pathlib.Path(path).absolute()
  if target.is_dir():
    raise ValueError(f"{target} is a folder: give the output a file name")
  made = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = None
  try:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = pathlib.Path(name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp's 0600 would make the results private to the user
    yield tmp
    if tmp.exists():
      os.replace(tmp, target)
  finally:
    if tmp is not None and tmp.exists():
      tmp.unlink()
    for folder in made:  # innermost first; only folders still empty (made for this output and unused)
      with contextlib.suppress(OSError):
        folder.rmdir()


def run(args: argparse.Namespace) -> int:
  """Executes parsed arguments; returns the exit status."""
  if args.output is None:
    return _predict(args, sys.stdout)
  with replaced_on_success(args.output) as tmp:
    with open(tmp, "w", encoding="utf-8", newline="") as out:
      status = _predict(args, out)
    if status:
      tmp.unlink()  # no file could be read: keep the previous results
  return status


def _predict(args: argparse.Namespace, out) -> int:
  predictor = load_model(args.model, args.hop)
  species = enrolled_species(predictor)
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
  """`run_fn(parser.parse_args(argv))` under the commands' one user-error mapping (`cli.run`): a bad option,
  model, store or input prints one `error: ...` line and gives exit status 2.

  Shared by `predict` and `embed`: their exit codes are 0 (all inputs read), 1 (none readable), 2 (failed).
  """
  args = parser.parse_args(argv)
  return cli.run(lambda: run_fn(args), argv)


def main(argv: list[str] | None = None) -> int:
  return run_cli(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
