"""Export a trained or converted model as a self-contained inference bundle.

  python -m animaljax.export --workdir runs/x --out exported/x [--overwrite [--drop-species]] [--tflite]
  python -m animaljax.export --model converted/cnn14 --out exported/cnn14

What a bundle holds: `animaljax.bundle`. Load one with `animaljax.inference.load_predictor(DIR)` (or serve it
with `python demo/app.py --model DIR`); it needs no training code, no dataset and no network.

Enrolled species of the source, and of the bundle being replaced, are carried over (re-embedded from their
clips where the new model's embedding differs), and so are their background clips (the bundle's default
background set); --drop-species leaves out those that cannot be. Linear heads attached to the source
(`python -m animaljax.search attach`) are carried over when they were trained on this model's embeddings;
--drop-heads leaves out those that were not (a head cannot be re-embedded: train it again). Nothing of the
user's is replaced: --out may be a new or empty folder, or (with --overwrite) a bundle holding only what an
export and the species store wrote; any other folder is refused, named. The bundle is built in a hidden sibling
folder and renamed into place, so a killed export leaves nothing that looks complete.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from animaljax import cli
from animaljax.bundle import BundleError, read_manifest
from animaljax.inference import export_model


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.export", description=__doc__.split("\n")[0])
  src = parser.add_mutually_exclusive_group(required=True)
  src.add_argument("--workdir", help="training workdir (config.json + checkpoints; the best one is exported)")
  src.add_argument("--model", help="converted model dir (model.json + variables/) or another bundle")
  parser.add_argument("--out", required=True, help="bundle directory to create (a new or empty folder)")
  parser.add_argument(
    "--overwrite", action="store_true", help="replace --out if it is a bundle (never any other folder)"
  )
  parser.add_argument(
    "--drop-species",
    action="store_true",
    help="export without the enrolled species and background clips that cannot be carried over (their clips "
    "are missing)",
  )
  parser.add_argument(
    "--drop-heads", action="store_true",
    help="export without the attached heads that were trained on another model's embeddings",
  )  # fmt: skip
  parser.add_argument("--no-jax-export", action="store_true", help="skip infer.jax_exported")
  parser.add_argument(
    "--tflite", action="store_true", help="also write TFLite models (float32, float16, int8)"
  )
  return parser


def run(args: argparse.Namespace) -> int:
  """Exports as the parsed arguments say and prints what was written; returns the exit status."""
  source = args.workdir or args.model
  if args.workdir and not (pathlib.Path(args.workdir) / "config.json").is_file():
    raise BundleError(args.workdir, "not a training workdir (no config.json)")
  out = export_model(
    source, args.out, overwrite=args.overwrite, jax_export=not args.no_jax_export, tflite=args.tflite,
    drop_species=args.drop_species, drop_heads=args.drop_heads,
  )  # fmt: skip
  manifest = read_manifest(out, verify=False)
  total = sum(f["size"] for f in manifest["files"].values())
  inference = manifest["inference"]
  how = "none" if inference is None else f"{inference['time']} time, {'/'.join(inference['platforms'])}"
  print(
    f"exported {source} -> {out} ({len(manifest['files'])} files, {total / 1e6:.1f} MB; jax.export: {how})"
  )
  species = manifest["species"]
  if species["enrolled"]:
    reembedded = species.get("reembedded", [])
    again = f", {len(reembedded)} re-embedded from their clips" if reembedded else ""
    print(f"carried {len(species['enrolled'])} enrolled species{again}: {', '.join(species['enrolled'])}")
  for d in species.get("dropped", []):
    what = "every species of the store" if d["name"] is None else f"enrolled species {d['name']!r}"
    print(f"dropped {what} ({d['store']}): {d['reason']}")
  background = species.get("background")
  if background and background["clips"]:
    again = ", re-embedded from their clips" if background["reembedded"] else ""
    print(f"carried {background['clips']} background clips{again}")
  for d in background["dropped"] if background else []:
    print(f"dropped the background clips of {d['store']}: {d['reason']}")
  heads = manifest.get("heads") or {}
  if heads.get("attached"):
    print(f"carried {len(heads['attached'])} attached head(s): {', '.join(heads['attached'])}")
  for d in heads.get("dropped", []):
    print(f"dropped the head {d['folder']}: {d['reason']}")
  return 0


def main(argv: list[str] | None = None) -> int:
  return cli.parse_and_run(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
