"""Robustness curves on ESC-50 animals: the folder recipe with and without noise augmentation, scored clean and
with held-out wind at 20/10/5/0 dB (issue 17).

  python scripts/degraded_esc50.py --clean --out /tmp/clean      # Training/ (folds 1-4), Test/ (fold 5), Noise/
  python scripts/measure_robustness.py --corpus /tmp/clean --out /tmp/robust [--seed 0]

Both variants are `scripts/measure_folder_recipe.py`'s ("recipe": wind of ESC-50 folds 1-2 from `Noise/` mixed
into half the training clips at 0-20 dB; "no_noise": the same recipe without it), each trained once on
`Training/` with its best state picked on a grouped validation split carved from it. Then `python -m
animaljax.evaluate --split test --noise WIND3 --snr 20,10,5,0` scores fold 5 clean and mixed with the wind of
ESC-50 fold 3, which no run ever trained on. Prints one JSON line per variant.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import shutil
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import measure_folder_recipe  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
WIND = REPO.parent / "shared" / "data" / "noise" / "wind"


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--corpus", type=pathlib.Path, required=True)
  p.add_argument("--out", type=pathlib.Path, required=True)
  p.add_argument("--wind", type=pathlib.Path, default=WIND)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--variants", default="recipe,no_noise")
  args = p.parse_args()
  held_out = args.out / "wind-fold3"
  held_out.mkdir(parents=True, exist_ok=True)
  for clip in sorted(args.wind.glob("3-*.flac")):
    shutil.copy(clip, held_out / clip.name)
  for name in args.variants.split(","):
    trained = measure_folder_recipe.run(name, args.corpus, args.out, args.seed)
    report = args.out / f"robust-{name}-s{args.seed}"
    subprocess.run(
      [sys.executable, "-m", "animaljax.evaluate", "--model", str(args.out / f"run-{name}-s{args.seed}"),
       "--data", str(args.out / "packed"), "--split", "test", "--noise", str(held_out), "--snr", "20,10,5,0",
       "--out", str(report), "--quiet"],
      cwd=REPO, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    rows = list(csv.DictReader((report / "robustness.csv").open()))
    curve = {r["snr_db"]: float(r["accuracy"]) for r in rows}
    print(json.dumps({**trained, "accuracy_by_snr": curve}), flush=True)


if __name__ == "__main__":
  main()
