"""Pack a corpus into TFDS TFRecord/ArrayRecord shards: `python -m animaljax.pack --source esc50 --root ... --out DIR`.

A thin CLI over `animaljax.data.packing.pack`; source-specific flags go to `animaljax.data.sources.make_source`.
Every number is checked by argparse and every setting by `packing.validate_settings` before the corpus is
listed; a mistake (a bad number, a missing --root, an --out that may not be replaced) prints one line,
`error: ...`, and exits with status 2 (`animaljax.cli`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from animaljax import cli
from animaljax.data import packing
from animaljax.data.sources import CATEGORY_GROUPS, SOURCES, make_source
from animaljax.data.sources import source_kwargs as options_to_kwargs
from animaljax.data.sources.raven import MIN_OVERLAP_SECONDS, UNANNOTATED
from animaljax.data.sources.raven_table import LABEL_COLUMNS


def _sample_rate(text: str) -> int:
  lo, hi = packing.SAMPLE_RATE_RANGE
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer number of Hz") from None
  if not lo <= value <= hi:
    raise argparse.ArgumentTypeError(f"must be in {lo}..{hi} Hz, got {text}")
  return value


_sample_rate.__name__ = "sample rate"  # argparse names the type in its messages


def _ratios(text: str) -> tuple[float, ...]:
  """`train,validation,test` weights: exactly three finite numbers >= 0, not all zero."""
  from animaljax.data.sources.base import check_split_ratios

  try:
    return check_split_ratios(text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(
      f"must be 3 comma-separated weights >= 0, not all zero (train,validation,test: 0.8,0.1,0.1), got {text}"
    ) from None


_ratios.__name__ = "split ratios"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = cli.ArgumentParser(prog="python -m animaljax.pack", description=__doc__.splitlines()[0])
  p.add_argument("--source", required=True, choices=tuple(SOURCES))
  p.add_argument(
    "--root",
    help="corpus folder (folder, esc50, raven, audioset) or manifest file (csv: path,label[s] or BirdCLEF's "
    "train_metadata.csv); unused for synthetic",
  )
  p.add_argument("--out", required=True, help="dataset folder to create (the TFDS dataset directory itself)")
  p.add_argument("--name", default="animal_sounds", help="dataset name, the shard file prefix")
  p.add_argument("--sample-rate", type=_sample_rate, default=32000)
  groups = ", ".join(CATEGORY_GROUPS)
  p.add_argument(
    "--category",
    help=f"esc50: a group ({groups}) or comma-separated category names; audioset: an ontology node by name or "
    "id (Animal, /m/0jbk) whose whole subtree is kept; default: all",
  )
  p.add_argument(
    "--workers",
    type=cli.nonnegative_int,
    default=os.cpu_count(),
    help="decode processes (0 = in this process); unused with --runner beam (its options set the workers)",
  )
  p.add_argument(
    "--clip-mode",
    choices=packing.CLIP_MODES,
    default=None,
    help="keep whole clips or cut --window-seconds windows; default: window for raven (annotated recordings, "
    "each window labelled by the boxes it overlaps), keep for the others",
  )
  p.add_argument("--window-seconds", type=cli.positive_float, default=5.0)
  p.add_argument("--hop-seconds", type=cli.positive_float, default=None, help="default: the window length")
  p.add_argument("--file-format", choices=packing.FILE_FORMATS, default="tfrecord")
  p.add_argument("--max-seconds", type=cli.positive_float, default=3600.0, help="reject longer files")
  p.add_argument("--reject-silent", action="store_true", help="reject all-zero clips instead of warning")
  p.add_argument(
    "--seed",
    type=cli.nonnegative_int,
    default=0,
    help="split seed (folder, csv, raven, audioset) or generator seed (synthetic)",
  )
  p.add_argument(
    "--split-ratios", type=_ratios, default=None, help="train,validation,test for folder/csv/raven"
  )
  p.add_argument(
    "--group-by",
    metavar="REGEX",
    help="keep clips of one recording in one carved split: the recording is the first capture group (or the "
    "match) of REGEX in the file name without extension, e.g. '^(rec\\d+)_' for rec12_part3.wav; default: "
    "none for folder and raven, the group column for csv, src_file for esc50 (exact duplicates are always kept "
    "together)",
  )
  p.add_argument(
    "--label-column",
    metavar="COLUMN",
    help=f"raven: the selection tables' label column; default: the first of {', '.join(LABEL_COLUMNS)}",
  )
  p.add_argument(
    "--min-overlap",
    type=cli.nonnegative_float,
    metavar="SECONDS",
    help="raven: seconds a box must overlap a window to switch its class on there (a shorter box or window: "
    f"all of it); default {MIN_OVERLAP_SECONDS:g}",
  )
  p.add_argument("--classes", help="raven: comma-separated labels to keep (others ignored); default: all")
  p.add_argument(
    "--unannotated",
    choices=UNANNOTATED,
    help="raven: a recording without a selection table is rejected (default) or packed as all negatives",
  )
  p.add_argument(
    "--include-unbalanced",
    action="store_true",
    help="audioset: also pack unbalanced_train_segments.csv (the clips downloaded of it) as train",
  )
  p.add_argument("--shard-size-mb", type=cli.positive_float, default=256.0)
  p.add_argument(
    "--overwrite", action="store_true", help="replace the finished pack in --out (never any other folder)"
  )
  p.add_argument("--no-progress", action="store_true")
  cli.add_runner_arguments(p)
  args = p.parse_args(argv)
  if args.clip_mode is None:  # an annotated recording is labelled window by window
    args.clip_mode = "window" if args.source == "raven" else "keep"
  return args


def source_kwargs(args: argparse.Namespace) -> dict:
  """The `make_source` arguments for the chosen source (`animaljax.data.sources.source_kwargs`, which the
  trainer also uses); ValueError for options that do not fit the source."""
  return options_to_kwargs(
    args.source,
    root=args.root,
    category=args.category,
    seed=args.seed,
    split_ratios=args.split_ratios,
    group_by=args.group_by,
    label_column=args.label_column,
    min_overlap_seconds=args.min_overlap,
    classes=args.classes,
    unannotated=args.unannotated,
    include_unbalanced=args.include_unbalanced,
  )


def settings(args: argparse.Namespace) -> dict:
  """The `packing.pack` keyword arguments of the parsed options (besides the source and --out)."""
  return {
    "sample_rate": args.sample_rate,
    "clip_mode": args.clip_mode,
    "window_seconds": args.window_seconds,
    "hop_seconds": args.hop_seconds,
    "workers": args.workers,
    "file_format": args.file_format,
    "max_seconds": args.max_seconds,
    "silent": "reject" if args.reject_silent else "warn",
    "shard_size_mb": args.shard_size_mb,
    "name": args.name,
  }


def _pack(args: argparse.Namespace) -> None:
  beam_options = cli.beam_options(args)  # `--runner beam` without Beam installed: one line, before any work
  kwargs = settings(args)
  packing.validate_settings(**kwargs)  # before listing the corpus, which can take a while
  source = make_source(args.source, **source_kwargs(args))
  os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "3"
  )  # TFDS imports TensorFlow to write TFRecord: quiet its logs
  packing.pack(
    source, args.out, progress=not args.no_progress, overwrite=args.overwrite, runner=args.runner,
    beam_options=beam_options, **kwargs,
  )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
  args = parse_args(argv)
  return cli.run(lambda: _pack(args), argv)


if __name__ == "__main__":
  sys.exit(main())
