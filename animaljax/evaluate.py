"""Score a model on labelled audio (a packed split or a class-per-folder tree) through predict's code path.

  python -m animaljax.evaluate --model MODEL (--data PACKED --split SPLIT | --files FOLDER) [--out DIR]
      [--hop S] [--pool mean|max] [--batch-size N]

--model is a bundle, a converted model dir or a training workdir. --data/--split scores every labelled record of
a split of a pack (`python -m animaljax.pack`; "fold4+fold5" joins splits), each clip whole; --files scores a
folder of class folders (FOLDER/<class>/**/*.wav) that was never packed. Every clip is cut into the model's
windows every --hop seconds and its window probabilities pooled (--pool) exactly as `predict`'s file summary
does, so `evaluate` counts the labels `predict` gives. The data's classes must be the model's labels, by name.

Prints accuracy, macro F1, the number of clips and the worst classes. --out DIR also gets metrics.json,
per_class.csv, predictions.csv (file,true,predicted,score), confusion_matrix.png and per_class.png, each
replaced whole or not at all. Exit status: 0, or 2 with one `error: ...` line for a bad model, data, split or
option. The work is `animaljax.inference.evaluate`.
"""

from __future__ import annotations

import argparse
import sys

from animaljax import cli
from animaljax.inference import evaluate, files, outputs


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.evaluate", description=__doc__.split("\n")[0])
  parser.add_argument(
    "--model", required=True, help="exported bundle, converted model dir or training workdir"
  )
  data = parser.add_mutually_exclusive_group(required=True)
  data.add_argument("--data", help="a packed dataset folder (python -m animaljax.pack --out ...)")
  data.add_argument("--files", help="a class-per-folder tree: FOLDER/<class>/*.wav")
  parser.add_argument("--split", help="with --data: the split to score (test, validation, fold5, ...)")
  parser.add_argument("--out", help="write metrics.json, the CSVs and the charts into this folder")
  parser.add_argument(
    "--hop", type=cli.positive_float, help="seconds between window starts (default: the window)"
  )
  parser.add_argument(
    "--pool", choices=outputs.POOLS, default="mean", help="a clip's score: mean or max over its windows"
  )
  parser.add_argument("--batch-size", type=cli.positive_int, default=16, help="windows per forward pass")
  parser.add_argument(
    "--max-seconds", type=cli.positive_float, default=7200.0, help="longest file read (whole)"
  )
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  return parser


def run(args: argparse.Namespace) -> int:
  """Executes parsed arguments; returns the exit status."""
  if args.data is not None and not args.split:
    raise cli.UserError("--data needs --split (a split of the pack: test, validation, fold5, ...)")
  if args.files is not None and args.split:
    raise cli.UserError("--split goes with --data; --files scores the whole folder")
  if args.out is not None:
    evaluate.check_out_dir(args.out)  # before the model runs, not after
  kwargs = {"pool": args.pool, "hop": args.hop, "batch_size": args.batch_size, "quiet": args.quiet}
  predictor = files.load_model(args.model, args.hop)
  if args.data is not None:
    result = evaluate.evaluate_split(predictor, args.data, args.split, **kwargs)
  else:
    result = evaluate.evaluate_files(predictor, args.files, max_seconds=args.max_seconds, **kwargs)
  if args.out is not None:
    evaluate.write_outputs(result, args.out)
  print("\n".join(evaluate.summary_lines(result)))
  if args.out is not None:
    print(f"wrote {evaluate.METRICS_JSON}, the CSVs and the charts to {args.out}")
  return 0


def main(argv: list[str] | None = None) -> int:
  return cli.parse_and_run(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
