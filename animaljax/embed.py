"""Per-window (timestamp) and per-file (scene) embeddings of audio files, written to Parquet or npz.

  python -m animaljax.embed --model exported/x --out embeddings.parquet recordings/ clip.flac [--hop 0.5]
  python -m animaljax.embed --model exported/x --out embeddings.npz --format npz FILES...

Windows are those of `animaljax.predict` (the model's clip length, every --hop seconds, the last one aligned to
the file's end; files of any length are streamed block by block, --max-seconds skips longer ones, default no
limit). As in HEAR's timestamp and scene embeddings, each file gives one row per window (kind
"window") and one for the whole file (kind "file": the mean of its window embeddings); the columns of both
formats are described in `animaljax.inference.outputs`, and the work is `animaljax.inference.files.embed_files`.

With `--runner beam` (the optional extra, `pip install -e ".[beam]"`) the same rows come from an Apache Beam
pipeline, one work unit per file and --block-seconds of audio, into the folder --out: sharded Parquet files
`embeddings-SSSSS-of-NNNNN.parquet` with the same columns, and `_units/` that let a re-run skip finished work
(`animaljax.inference.beam_embed`; --beam_pipeline_options="--runner=FlinkRunner ..." picks a cluster).

Unreadable files are named on stderr and skipped. Exit status: 0 when at least one file was read, 1 when none
could be (nothing written), 2 for a bad model, option or output path. Options are checked before any work, and
--out is written under a temporary name beside it and renamed onto it only once complete: a mistake or a
failure leaves an existing file as it was.
"""

from __future__ import annotations

import argparse
import sys

from animaljax import cli
from animaljax.inference import files, outputs


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.embed", description=__doc__.split("\n")[0])
  cli.add_model_input_arguments(parser)
  parser.add_argument(
    "--out", required=True, help="output file (.parquet or .npz); a folder with --runner beam"
  )
  parser.add_argument(
    "--format", choices=outputs.EMBED_FORMATS, help="default: from --out's extension, else parquet"
  )
  cli.add_runner_arguments(parser)
  parser.add_argument(
    "--block-seconds", type=cli.positive_float, default=600.0,
    help="--runner beam: seconds of audio per work unit (default 600)",
  )  # fmt: skip
  return parser


def run(args: argparse.Namespace) -> int:
  """Executes parsed arguments; returns the exit status (1: no file could be read, nothing written)."""
  beam_options = cli.beam_options(args)  # `--runner beam` without Beam installed: one line, before any work
  if args.runner == "beam":
    if args.format == "npz":
      raise ValueError(
        "--runner beam writes Parquet shards into the folder --out; --format npz is local only"
      )
    from animaljax.inference import beam_embed

    read = beam_embed.embed_files(
      args.model, args.inputs, args.out, beam_options=beam_options, block_seconds=args.block_seconds,
      hop=args.hop, batch_size=args.batch_size, max_seconds=args.max_seconds, quiet=args.quiet,
    )  # fmt: skip
    return 0 if read else 1
  read = files.embed_files(
    args.model, args.inputs, args.out, format=args.format, hop=args.hop, batch_size=args.batch_size,
    max_seconds=args.max_seconds, quiet=args.quiet,
  )  # fmt: skip
  return 0 if read else 1


def main(argv: list[str] | None = None) -> int:
  return cli.parse_and_run(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
