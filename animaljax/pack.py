"""Pack a corpus into TFDS TFRecord/ArrayRecord shards: `python -m animaljax.pack --source esc50 --root ... --out DIR`.

A thin CLI over `animaljax.data.packing.pack`; source-specific flags go to `animaljax.data.sources.make_source`.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from animaljax.data import packing


def _ratios(text: str) -> tuple[float, ...]:
  return tuple(float(x) for x in text.split(","))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m animaljax.pack", description=__doc__.splitlines()[0])
  p.add_argument("--source", required=True, choices=("folder", "esc50", "csv", "synthetic"))
  p.add_argument("--root", help="corpus folder (folder, esc50) or manifest file (csv); unused for synthetic")
  p.add_argument("--out", required=True, help="dataset folder to create (the TFDS dataset directory itself)")
  p.add_argument("--name", default="animal_sounds", help="dataset name, the shard file prefix")
  p.add_argument("--sample-rate", type=int, default=32000)
  p.add_argument("--category", help="esc50: 'animals' or comma-separated category names")
  p.add_argument("--workers", type=int, default=os.cpu_count(), help="decode processes (0 = in this process)")
  p.add_argument("--clip-mode", choices=packing.CLIP_MODES, default="keep")
  p.add_argument("--window-seconds", type=float, default=5.0)
  p.add_argument("--hop-seconds", type=float, default=None, help="default: the window length")
  p.add_argument("--file-format", choices=packing.FILE_FORMATS, default="tfrecord")
  p.add_argument("--max-seconds", type=float, default=3600.0, help="reject longer files")
  p.add_argument("--reject-silent", action="store_true", help="reject all-zero clips instead of warning")
  p.add_argument("--seed", type=int, default=0, help="split seed (folder, csv) or generator seed (synthetic)")
  p.add_argument("--split-ratios", type=_ratios, default=None, help="train,validation,test for folder/csv")
  p.add_argument("--shard-size-mb", type=float, default=256.0)
  p.add_argument("--overwrite", action="store_true", help="rebuild even if --out already holds this pack")
  p.add_argument("--no-progress", action="store_true")
  return p.parse_args(argv)


def source_kwargs(args: argparse.Namespace) -> dict:
  """The `make_source` arguments for the chosen source."""
  if args.source != "synthetic" and not args.root:
    raise SystemExit(f"--root is required for --source {args.source}")
  kwargs: dict = {}
  if args.source == "esc50":
    kwargs["root"] = args.root
    if args.category:
      kwargs["category"] = args.category if args.category == "animals" else args.category.split(",")
  else:
    if args.source == "csv":
      kwargs["manifest"] = args.root
    elif args.source == "folder":
      kwargs["root"] = args.root
    kwargs["seed"] = args.seed
    if args.split_ratios is not None and args.source != "synthetic":
      kwargs["split_ratios"] = args.split_ratios
  return kwargs


def main(argv: Sequence[str] | None = None) -> None:
  from animaljax.data.sources import make_source

  args = parse_args(argv)
  os.environ.setdefault(
    "TF_CPP_MIN_LOG_LEVEL", "3"
  )  # TFDS imports TensorFlow to write TFRecord: quiet its logs
  packing.pack(
    make_source(args.source, **source_kwargs(args)),
    args.out,
    sample_rate=args.sample_rate,
    clip_mode=args.clip_mode,
    window_seconds=args.window_seconds,
    hop_seconds=args.hop_seconds,
    workers=args.workers,
    file_format=args.file_format,
    max_seconds=args.max_seconds,
    silent="reject" if args.reject_silent else "warn",
    shard_size_mb=args.shard_size_mb,
    name=args.name,
    progress=not args.no_progress,
    overwrite=args.overwrite,
  )


if __name__ == "__main__":
  main()
