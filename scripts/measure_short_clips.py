"""Which rule makes a short clip one window, measured: zero-pad (`data.short_clips=pad`) or loop (`loop`).

  python scripts/measure_short_clips.py --esc50 ../shared/data/esc50-animals --out /tmp/short_clips [--steps 300]

Builds a degraded copy of ESC-50 animals in which every clip is cut to a random length in [0.3, 5] s (seeded,
from the first sound onwards, so a cut keeps the call), keeps the ESC-50 layout (folds intact), then for each
rule trains the same small CNN on folds 1-3, picks its best state on fold 4 and scores fold 5 with
`python -m animaljax.evaluate` (predict's code path). Fold 5 is never seen by training or model selection.
Prints one JSON line per run and a last line with each rule's mean test accuracy; the figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]


def degrade(esc50: pathlib.Path, out: pathlib.Path, seed: int) -> pathlib.Path:
  """ESC-50 animals with every clip cut to a random 0.3-5 s from its first sound; returns the new root."""
  import librosa

  root = out / "esc50-short"
  if (root / "meta" / "esc50.csv").is_file():
    return root
  (root / "audio").mkdir(parents=True, exist_ok=True)
  (root / "meta").mkdir(exist_ok=True)
  rng = np.random.default_rng(seed)
  rows = list(csv.DictReader(open(esc50 / "meta" / "esc50.csv")))
  for row in rows:
    wave, sr = librosa.load(esc50 / "audio" / row["filename"], sr=None)
    start = int(np.argmax(np.abs(wave) > 0.05 * (np.abs(wave).max() + 1e-12)))
    seconds = float(rng.uniform(0.3, 5.0))
    sf.write(root / "audio" / row["filename"], wave[start : start + int(seconds * sr)], sr)
  with open(root / "meta" / "esc50.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return root


def run(rule: str, corpus: pathlib.Path, out: pathlib.Path, steps: int, seed: int) -> dict:
  workdir = out / f"run-{rule}-{steps}-{seed}"
  t0 = time.perf_counter()
  train = [
    sys.executable, "-m", "animaljax.train", "--config", "configs/cnn10_esc50.py:cpu", "--workdir", str(workdir),
    f"--config.data.root={corpus}", f"--config.data.dir={out / 'packed'}", "--config.data.clip_seconds=2.0",
    "--config.data.cv_fold=0",
    "--config.data.train_split=fold1+fold2+fold3", "--config.data.eval_split=fold4",
    f"--config.data.short_clips={rule}", f"--config.train.steps={steps}", f"--config.eval.every_steps={steps // 3}",
    f"--config.checkpoint.every_steps={steps // 3}", f"--config.train.seed={seed}",
  ]  # fmt: skip
  subprocess.run(train, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  train_s = time.perf_counter() - t0
  report = out / f"eval-{rule}-{steps}-{seed}"
  evaluate = [
    sys.executable, "-m", "animaljax.evaluate", "--model", str(workdir), "--data", str(out / "packed"),
    "--split", "fold5", "--out", str(report), "--quiet",
  ]  # fmt: skip
  subprocess.run(evaluate, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  metrics = json.loads((report / "metrics.json").read_text())
  validation = json.loads((workdir / "best" / "best.json").read_text())
  return {
    "rule": rule, "seed": seed, "steps": steps, "test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"],
    "validation_accuracy": validation["value"], "best_step": validation["step"], "train_s": round(train_s, 1),
  }  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--esc50", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "esc50-animals")
  p.add_argument("--out", type=pathlib.Path, required=True)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--rules", default="pad,loop")
  p.add_argument("--seeds", default="0", help="training seeds (comma-separated): one run per rule and seed")
  args = p.parse_args()
  corpus = degrade(args.esc50, args.out, args.seed)
  results = []
  for seed in map(int, args.seeds.split(",")):
    for rule in args.rules.split(","):
      results.append(run(rule, corpus, args.out, args.steps, seed))
      print(json.dumps(results[-1]), flush=True)
  means = {
    rule: float(np.mean([r["test_accuracy"] for r in results if r["rule"] == rule]))
    for rule in args.rules.split(",")
  }
  print(json.dumps({"mean_test_accuracy": means}))


if __name__ == "__main__":
  main()
