"""Label audio files with an exported model: per-window labels and a per-file summary as CSV, JSON or Raven.

  python -m animaljax.predict --model exported/x recordings/ clip.flac [--hop 2.5] [--format csv|json|raven]
      [--pool mean|max] [--top-k 5] [--min-score 0.1] [--output results.csv]

--model is a bundle (`python -m animaljax.export`), a converted model dir or a training workdir. Folders are
searched recursively for audio files (AUDIO_EXTENSIONS). Every file is read at the model's rate, cut into
windows of the model's clip length every --hop seconds (default: one window, no overlap; the last window is
aligned to the file's end) and each window is ranked; the file's summary ranks the mean (or, --pool max, the
maximum) of its windows' probabilities. A multi-label model scores every class independently (sigmoid), pools
a file's windows by their maximum, and marks each class "detected" where its score reaches its threshold
(--threshold, default the per-class thresholds chosen on the validation split); `--format raven` then writes
only detections, one selection per run of consecutive windows. Enrolled species of the model are ranked with its classes, and
"unknown" comes first where nothing is confident (`animaljax.fewshot.enrol.rank`). The formats are described in
`animaljax.inference.outputs`; the work is `animaljax.inference.files.predict_files`.

Files of any length are streamed (decoded, resampled and windowed block by block: memory does not grow with
the length); --max-seconds skips longer files (default: no limit). The progress bar on stderr counts files,
hours of audio and the speed in multiples of real time.

With `--runner beam` (the optional extra, `pip install -e ".[beam]"`) the windows are scored by the Apache
Beam pipeline of `embed --runner beam`, one work unit per file and --block-seconds of audio, kept in
NAME.units/ beside --output NAME.EXT (required) so that a re-run skips finished units; --output is then
written by the local path's code: the same file for the same inputs and flags, scores to float rounding
(`animaljax.inference.beam_predict`; --beam_pipeline_options="--runner=FlinkRunner ..." picks a cluster).
--framewise stays local.

Output goes to stdout, or --output. A file that cannot be read is named on stderr with the reason and skipped.
Exit status: 0 when at least one file was read, 1 when none could be, 2 for a bad model, option or output
path (one `error: ...` line). Every option is checked before any work, and --output is written under a
temporary name beside it and renamed onto it only once complete: a mistake, a failure or a run that reads no
file leaves an existing results file as it was. A damaged species store is named in one warning line and the
model's own classes are ranked without it.
"""

from __future__ import annotations

import argparse
import sys

from animaljax import cli
from animaljax.inference import files, framewise_predict, outputs


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.predict", description=__doc__.split("\n")[0])
  cli.add_model_input_arguments(parser)
  parser.add_argument("--format", choices=outputs.FORMATS, default="csv")
  parser.add_argument("--output", help="write here instead of stdout (replaced only once complete)")
  parser.add_argument(
    "--pool", choices=outputs.POOLS, default=None,
    help="file summary: mean or max over windows (default: the model's own: mean, max for multi-label)",
  )  # fmt: skip
  parser.add_argument(
    "--threshold", type=cli.probability, default=None,
    help="multi-label models: detect a class when its probability reaches this (default: the per-class "
    "thresholds chosen on the validation split and stored with the model)",
  )  # fmt: skip
  parser.add_argument(
    "--top-k", type=cli.nonnegative_int, default=5, help="labels per window and per file (0: all)"
  )
  parser.add_argument("--min-score", type=cli.probability, default=0.0, help="drop labels scoring below this")
  parser.add_argument(
    "--framewise", action="store_true",
    help="decision-level models: sound events (file,onset_s,offset_s,label,peak) from the framewise output "
    "over each whole recording (`inference.framewise_predict`); --threshold overrides every class's threshold",
  )  # fmt: skip
  parser.add_argument(
    "--min-duration", type=cli.nonnegative_float, default=0.0, help="--framewise: drop shorter events (s)"
  )
  parser.add_argument(
    "--merge-gap",
    type=cli.nonnegative_float,
    default=0.0,
    help="--framewise: join events closer than this (s)",
  )
  parser.add_argument(
    "--model-threshold", type=cli.probability, default=0.5,
    help="top probability below which the model says unknown",
  )  # fmt: skip
  cli.add_runner_arguments(parser)
  parser.add_argument(
    "--block-seconds", type=cli.positive_float, default=600.0,
    help="--runner beam: seconds of audio per work unit (default 600)",
  )  # fmt: skip
  return parser


def run(args: argparse.Namespace) -> int:
  """Executes parsed arguments; returns the exit status (1: no file could be read)."""
  if args.runner == "beam" and args.framewise:
    raise ValueError("--framewise scores whole recordings and runs locally only; drop --runner beam")
  if args.runner == "beam" and args.output is None:
    raise ValueError(
      "--runner beam needs --output FILE (its work units are kept beside it, in a .units folder)"
    )
  beam_options = cli.beam_options(args)  # `--runner beam` without Beam installed: one line, before any work
  if args.runner == "beam":
    from animaljax.inference import beam_predict

    read = beam_predict.predict_files(
      args.model, args.inputs, output=args.output, format=args.format, pool=args.pool, top_k=args.top_k,
      min_score=args.min_score, model_threshold=args.model_threshold, hop=args.hop,
      batch_size=args.batch_size, max_seconds=args.max_seconds, quiet=args.quiet, threshold=args.threshold,
      beam_options=beam_options, block_seconds=args.block_seconds,
    )  # fmt: skip
    return 0 if read else 1
  if args.framewise:
    read = framewise_predict.predict_framewise_files(
      args.model, args.inputs, output=args.output, format=args.format, hop=args.hop, batch_size=args.batch_size,
      max_seconds=args.max_seconds, quiet=args.quiet, threshold=args.threshold, min_duration_s=args.min_duration,
      merge_gap_s=args.merge_gap,
    )  # fmt: skip
    return 0 if read else 1
  read = files.predict_files(
    args.model, args.inputs, output=args.output, format=args.format, pool=args.pool, top_k=args.top_k,
    min_score=args.min_score, model_threshold=args.model_threshold, hop=args.hop, batch_size=args.batch_size,
    max_seconds=args.max_seconds, quiet=args.quiet, threshold=args.threshold,
  )  # fmt: skip
  return 0 if read else 1


def main(argv: list[str] | None = None) -> int:
  return cli.parse_and_run(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
