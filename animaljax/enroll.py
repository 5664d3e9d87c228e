"""Teach a trained model new species from a few clips, without retraining.

  python -m animaljax.enroll add --model DIR --name "Red fox" a.wav b.wav c.wav [--merge] [--threshold 0.4]
  python -m animaljax.enroll list --model DIR
  python -m animaljax.enroll remove --model DIR --name "Red fox"
  python -m animaljax.enroll classify --model DIR clip.wav [more.wav ...] [--top-k 5]
  python -m animaljax.enroll background add --model DIR wind1.wav rain.flac ...
  python -m animaljax.enroll background list --model DIR
  python -m animaljax.enroll background remove --model DIR wind1.wav [...] | --all

DIR is an exported bundle (`python -m animaljax.export`), a converted model dir (`model.json` + `variables/`) or
a training workdir; the species live in DIR/species/ (`animaljax.fewshot`). Background clips are recordings of
what no species is (wind, rain, the site's hum): no species claims a clip nearer to them than to its
prototype, and the species' thresholds are recalibrated against them (`animaljax.fewshot.enrol`). `--json`
prints machine-readable output. Exit status 2 on a usage or data error (bad file, bad name, ...).
"""

from __future__ import annotations

import argparse
import json
import sys

from animaljax import cli
from animaljax.fewshot import background, enrol
from animaljax.inference import load_predictor


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.enroll", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)

  def command(name: str, help: str, parent=sub) -> argparse.ArgumentParser:
    p = parent.add_parser(name, help=help)
    p.add_argument("--model", required=True, help="exported bundle, model dir or training workdir")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p

  add = command("add", "enrol a species from audio clips")
  add.add_argument("--name", required=True, help='species name, e.g. "Red fox" (Unicode allowed)')
  add.add_argument("files", nargs="+", help="support clips (any format load_audio reads)")
  add.add_argument("--merge", action="store_true", help="add the clips to an already-enrolled species")
  add.add_argument(
    "--threshold", type=cli.positive_float, help="fixed distance threshold (default: leave-one-out)"
  )
  add.add_argument(
    "--margin", type=cli.positive_float, default=enrol.MARGIN, help="leave-one-out threshold multiplier"
  )
  command("list", "list the enrolled species")
  rm = command("remove", "remove an enrolled species")
  rm.add_argument("--name", required=True)
  cl = command("classify", "rank the model's classes and the enrolled species for clips")
  cl.add_argument("files", nargs="+")
  cl.add_argument("--top-k", type=cli.nonnegative_int, default=5, help="entries per clip (0: all)")
  cl.add_argument(
    "--model-threshold", type=cli.probability, default=0.5, help="model probability below which it is unsure"
  )
  bg = sub.add_parser("background", help="background clips: what no species is (wind, rain, ...)")
  bg_sub = bg.add_subparsers(dest="background", required=True)
  bg_add = command("add", "add background clips (every window is kept)", bg_sub)
  bg_add.add_argument("files", nargs="+", help="clips of background sound (any format load_audio reads)")
  command("list", "list the background clips", bg_sub)
  bg_rm = command("remove", "remove background clips", bg_sub)
  bg_rm.add_argument("files", nargs="*", help="clips to remove, by path or file name")
  bg_rm.add_argument("--all", action="store_true", help="remove every background clip")
  return parser


def run(args: argparse.Namespace) -> object:
  """Executes a parsed command; returns what it prints (as JSON-able data)."""
  predictor = load_predictor(args.model)
  if args.command == "background":
    if args.background == "add":
      stored, added = background.add_background(predictor, args.files)
      return {"background_added": added, "background_clips": stored.num_clips,
              "species": enrol.list_species(predictor)}  # fmt: skip
    if args.background == "remove":
      removed = background.remove_background(predictor, args.files, everything=args.all)
      return {"background_removed": removed, "species": enrol.list_species(predictor)}
    return {"background": background.list_background(predictor)}
  if args.command == "add":
    s = enrol.enroll(
      predictor, args.name, args.files, merge=args.merge, threshold=args.threshold, margin=args.margin
    )
    return {"enrolled": enrol.summary(s)}
  if args.command == "list":
    return {"species": enrol.list_species(predictor)}
  if args.command == "remove":
    return {"removed": enrol.remove_species(predictor, args.name).name}
  results = [
    predictor.classify(f, top_k=args.top_k or None, model_threshold=args.model_threshold) for f in args.files
  ]
  return {"results": [{"file": f, "ranking": r} for f, r in zip(args.files, results, strict=True)]}


def _calibration(s: dict) -> str:
  return s["threshold_source"] + (", capped by background" if s.get("capped_by_background") else "")


def _print(out: dict) -> None:
  if "background" in out:
    if not out["background"]:
      print("no background clips")
    for c in out["background"]:
      print(f"{c['file']}\t{c['windows']} windows\t{c['added']}")
  elif "background_added" in out or "background_removed" in out:
    if "background_added" in out:
      print(f"added {len(out['background_added'])} background clips ({out['background_clips']} in all)")
    else:
      print(f"removed {len(out['background_removed'])} background clips")
    for s in out["species"]:
      print(f"  {s['name']}: threshold {s['threshold']:.3f} ({_calibration(s)})")
  elif "enrolled" in out:
    s = out["enrolled"]
    print(f"enrolled {s['name']!r}: {s['clips']} clips, threshold {s['threshold']:.3f} ({_calibration(s)})")
    if s["threshold_source"] == "default":
      print("  one clip gives no leave-one-out calibration: add more clips (--merge) or set --threshold")
  elif "species" in out:
    if not out["species"]:
      print("no species enrolled")
    for s in out["species"]:
      print(
        f"{s['name']}\t{s['clips']} clips\tthreshold {s['threshold']:.3f} ({_calibration(s)})\t{s['updated']}"
      )
  elif "removed" in out:
    print(f"removed {out['removed']!r}")
  else:
    for r in out["results"]:
      top = ", ".join(f"{e['label']} {e['score']:.3f} ({e['source']})" for e in r["ranking"])
      print(f"{r['file']}: {top}")


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)

  def go() -> int:
    out = run(args)
    if args.json:
      print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
      _print(out)
    return 0

  return cli.run(go, argv)


if __name__ == "__main__":
  sys.exit(main())
