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

A multi-label model (trained on a multi-label pack) is scored on a split of a multi-label pack with mAP, padded
cmAP, micro AP, ROC-AUC, d', lwlrap and precision / recall / F1 at its stored per-class thresholds (--threshold:
one for all), its windows max-pooled as predict pools them; --out gets metrics.json, per_class.csv,
predictions.csv, per_class_ap.png and pr_curves.png. --raven DIR also scores its detections event by event
against the Raven selection tables of the recordings under DIR (`animaljax.inference.evaluate_multilabel`).

--noise DIR [--snr 20,10,5,0] draws a robustness curve: the clean score, then the same clips mixed with the noise
recordings under DIR at each SNR (the same mixtures for every model: `animaljax.inference.robustness`); it prints
the table and --out gets robustness.csv, robustness.png and robustness.json besides the clean metrics.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from animaljax import cli
from animaljax.inference import evaluate, evaluate_multilabel, files, outputs, robustness


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.evaluate", description=__doc__.split("\n")[0])
  parser.add_argument(
    "--model", required=True, help="exported bundle, converted model dir or training workdir"
  )
  data = parser.add_mutually_exclusive_group(required=True)
  data.add_argument("--data", help="a packed dataset folder (python -m animaljax.pack --out ...)")
  data.add_argument("--files", help="a class-per-folder tree: FOLDER/<class>/*.wav")
  data.add_argument(
    "--raven", help="multi-label models: recordings with Raven selection tables, scored by event"
  )
  parser.add_argument("--split", help="with --data: the split to score (test, validation, fold5, ...)")
  parser.add_argument("--out", help="write metrics.json, the CSVs and the charts into this folder")
  parser.add_argument(
    "--hop", type=cli.positive_float, help="seconds between window starts (default: the window)"
  )
  parser.add_argument(
    "--pool", choices=outputs.POOLS, default=None,
    help="a clip's score: mean or max over its windows (default: the model's own: mean, max for multi-label)",
  )  # fmt: skip
  parser.add_argument(
    "--threshold", type=cli.probability, default=None,
    help="multi-label: one detection threshold for every class (default: the model's per-class thresholds)",
  )  # fmt: skip
  parser.add_argument(
    "--min-overlap", type=cli.positive_float, default=0.5,
    help="--raven: seconds a detection and a reference box must overlap to match (or the shorter one whole)",
  )  # fmt: skip
  parser.add_argument(
    "--noise", help="a folder of held-out noise recordings: also score the data mixed with them at each --snr",
  )  # fmt: skip
  parser.add_argument("--snr", default="20,10,5,0", help="with --noise: SNRs in dB, comma-separated")
  parser.add_argument(
    "--noise-seed", type=cli.nonnegative_int, default=0, help="with --noise: which noise where"
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
  snrs = robustness.parse_snrs(args.snr) if args.noise is not None else ()
  if args.noise is not None and args.raven is not None:
    raise cli.UserError("--noise scores clips (--data or --files), not Raven events")
  predictor = files.load_model(args.model, args.hop)
  if args.noise is not None:
    return _run_robustness(args, predictor, snrs)
  if (
    predictor.multi_label
    or args.raven is not None
    or (args.data is not None and _multi_label_pack(args.data))
  ):
    return _run_multilabel(args, predictor)
  if args.threshold is not None:
    raise cli.UserError(f"--threshold applies to multi-label models and packs; {args.model} is single-label")
  kwargs = {"pool": args.pool or "mean", "hop": args.hop, "batch_size": args.batch_size, "quiet": args.quiet}
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


def _run_robustness(args: argparse.Namespace, predictor, snrs: tuple[float, ...]) -> int:
  """The clean score and the score at each SNR of the data mixed with `--noise` (`inference.robustness`)."""
  noise = robustness.noise_recordings(args.noise, predictor.sample_rate)
  multi = predictor.multi_label or (args.data is not None and _multi_label_pack(args.data))
  common = {"hop": args.hop, "batch_size": args.batch_size, "quiet": True}
  results = []

  def run(transform):
    if multi:
      if args.data is None:
        raise cli.UserError("a multi-label robustness curve needs --data (a multi-label pack)")
      result = evaluate_multilabel.evaluate_split_multilabel(
        predictor, args.data, args.split, pool=args.pool or ("max" if predictor.multi_label else "mean"),
        threshold=args.threshold, transform=transform, **common,
      )  # fmt: skip
    elif args.data is not None:
      result = evaluate.evaluate_split(predictor, args.data, args.split, pool=args.pool or "mean",
                                       transform=transform, **common)  # fmt: skip
    else:
      result = evaluate.evaluate_files(predictor, args.files, pool=args.pool or "mean", transform=transform,
                                       max_seconds=args.max_seconds, **common)  # fmt: skip
    results.append(result)
    return result

  metrics = ("mAP", "f1") if multi else ("accuracy", "macro_f1")
  rows = robustness.curve(run, noise, snrs, seed=args.noise_seed, metrics=metrics)
  width = max(len(m) for m in metrics) + 2
  print(f"{len(noise)} noise recording(s) from {args.noise}; {rows[0]['num_examples']} clips")
  print("snr_db".ljust(8) + "".join(m.rjust(width) for m in metrics))
  for r in rows:
    name = "clean" if r["snr_db"] is None else f"{r['snr_db']:g}"
    print(name.ljust(8) + "".join(("n/a" if r[m] is None else f"{r[m]:.4f}").rjust(width) for m in metrics))
  if args.out is not None:
    import json  # noqa: PLC0415

    from animaljax.data import atomic  # noqa: PLC0415

    out = pathlib.Path(args.out)
    if multi:
      evaluate_multilabel.write_outputs_multilabel(results[0], out)
    else:
      evaluate.write_outputs(results[0], out)  # the clean score, as without --noise
    atomic.write_text(out / robustness.CURVE_CSV, robustness.curve_csv(rows, metrics))
    atomic.write_bytes(out / robustness.CURVE_PNG, robustness.curve_png(rows, metrics[0]))
    record = {"model": str(predictor.path), "data": args.data or args.files, "split": args.split,
              "noise": str(pathlib.Path(args.noise).absolute()), "noise_seed": args.noise_seed, "curve": rows}  # fmt: skip
    atomic.write_text(out / robustness.CURVE_JSON, json.dumps(record, indent=2) + "\n")
    print(f"wrote {robustness.CURVE_CSV}, {robustness.CURVE_PNG} and the clean metrics to {args.out}")
  return 0


def _multi_label_pack(path: str) -> bool:
  summary = pathlib.Path(path) / "summary.json"
  if not summary.is_file():
    return False  # evaluate_split names what is wrong with the folder
  import json  # noqa: PLC0415

  return bool(json.loads(summary.read_text()).get("multi_label", False))


def _run_multilabel(args: argparse.Namespace, predictor) -> int:
  ml = evaluate_multilabel
  if args.files is not None:
    raise cli.UserError(
      "a multi-label model is scored on a multi-label pack (--data) or Raven tables (--raven)"
    )
  if args.raven is not None:
    from animaljax.data.sources.raven import read_annotated_recordings  # noqa: PLC0415

    recordings, rejected = read_annotated_recordings(args.raven)
    for path, reason in rejected:
      print(f"skipped {path}: {reason}", file=sys.stderr)
    result = ml.evaluate_events(
      predictor, recordings, hop=args.hop, threshold=args.threshold, min_overlap_s=args.min_overlap,
      batch_size=args.batch_size, max_seconds=args.max_seconds, quiet=args.quiet,
    )  # fmt: skip
    result.update(model=str(predictor.path), data=str(args.raven))
    if args.out is not None:
      evaluate.check_out_dir(args.out)
      import json  # noqa: PLC0415

      from animaljax.data import atomic  # noqa: PLC0415

      atomic.write_text(pathlib.Path(args.out) / "events.json", json.dumps(result, indent=2) + "\n")
  else:
    result = ml.evaluate_split_multilabel(
      predictor, args.data, args.split, pool=args.pool or ("max" if predictor.multi_label else "mean"), hop=args.hop, batch_size=args.batch_size,
      threshold=args.threshold, quiet=args.quiet,
    )  # fmt: skip
    if args.out is not None:
      ml.write_outputs_multilabel(result, args.out)
  print("\n".join(ml.summary_lines_multilabel(result)))
  if args.out is not None:
    print(f"wrote the metrics, CSVs and charts to {args.out}")
  return 0


def main(argv: list[str] | None = None) -> int:
  return cli.parse_and_run(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
