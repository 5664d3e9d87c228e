"""The CPU recipe for a small, messy folder (`configs/cnn14_folder.py:cpu`) against the untuned one, and its levers.

  python scripts/degraded_esc50.py --out /tmp/degraded
  python scripts/measure_folder_recipe.py --corpus /tmp/degraded --out /tmp/recipe [--variants recipe,untuned]

Each variant trains on `Training/` (a validation split carved from it, clips of one ESC-50 source recording kept
together with `--group-by`), keeps its best state by validation accuracy, and is then scored once on `Test/` with
`python -m animaljax.evaluate` (predict's code path). The test split decides nothing. Prints a JSON line per
variant; the table goes to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
GROUP_BY = r"^\d+-(\d+)-"  # ESC-50 names: {fold}-{source id}-{take}-{target}

# name -> overrides of configs/cnn14_folder.py:cpu
VARIANTS = {
  "recipe": [],
  "no_noise": ["--config.train.noise_p=0.0"],
  "pad": ["--config.data.short_clips=pad"],
  # The other levers issue 15 names, one change each against the recipe.
  "ema": ["--config.train.ema_decay=0.99"],
  "clip_norm": ["--config.model.clip_norm=True"],
  "width_0.5": ["--config.model.width=0.5"],
  "cnn10": ["--config.model.encoder=cnn10"],
  "cnn6": ["--config.model.encoder=cnn6"],  # the recipe until CNN10 won the selection corpus
  "mixup": ["--config.train.mixup_alpha=0.5"],
  "specaug_wide": ["--config.train.time_width=64", "--config.train.freq_width=16"],
  "no_specaug": ["--config.train.specaugment=False"],
  "no_class_weights": ["--config.train.class_weights=none"],
  "balanced_sampling": ["--config.train.class_weights=none", "--config.train.sampling=balanced"],
  "lowpass": ["--config.train.lowpass_p=0.5"],
  "cnn14": ["--config.model.encoder=cnn14"],
  "cnn10_w0.5": ["--config.model.encoder=cnn10", "--config.model.width=0.5"],
  # Aimed at the two weakest groups of the recipe's test clips (shorter than the 2 s window; 8-bit).
  "shorten": ["--config.train.shorten_p=0.5"],
  "quantize": ["--config.train.quantize_p=0.2"],
  "shorten_quantize": ["--config.train.shorten_p=0.5", "--config.train.quantize_p=0.2"],
  "speed": ["--config.train.speed_p=0.5"],  # speed perturbation, factors 0.85-1.18
  "no_speed": ["--config.train.speed_p=0.0"],  # the recipe (speed_p=0 there): its name while speed was in it
  "ensemble3": ["--config.model.members=3"],  # three members side by side, mean logits (models.ensemble)
  "speed_ensemble3": ["--config.train.speed_p=0.5", "--config.model.members=3"],
  # The third input rule issue 15 names: zero-pad short clips, pool only over their own frames (pool_mask).
  "mask": ["--config.data.short_clips=mask"],
  "window_1s": ["--config.data.clip_seconds=1.0"],  # half the window: short clips less looped, more crops
  "window_3s": ["--config.data.clip_seconds=3.0"],
  "steps_1800": ["--config.train.steps=1800", "--config.eval.every_steps=150", "--config.checkpoint.every_steps=150"],
  # What the project recommended before: cnn10_esc50.py:cpu's settings (5 s rows, zero-padding, 600 steps,
  # no noise, no class weights), on this folder.
  "untuned": [
    "--config.data.short_clips=pad", "--config.data.clip_seconds=5.0", "--config.train.noise_p=0.0",
    "--config.train.steps=600", "--config.train.class_weights=none",
  ],
}  # fmt: skip


def run(name: str, corpus: pathlib.Path, out: pathlib.Path, seed: int) -> dict:
  workdir = out / f"run-{name}-s{seed}"
  train = [
    sys.executable, "-m", "animaljax.train", "--config", "configs/cnn14_folder.py:cpu", "--workdir", str(workdir),
    f"--config.data.root={corpus}", f"--config.data.dir={out / 'packed'}", f"--config.data.group_by={GROUP_BY}",
    f"--config.train.seed={seed}", *VARIANTS[name],
  ]  # fmt: skip
  t0 = time.perf_counter()
  subprocess.run(train, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  train_s = time.perf_counter() - t0
  report = out / f"eval-{name}-s{seed}"
  evaluate = [
    sys.executable, "-m", "animaljax.evaluate", "--model", str(workdir), "--data", str(out / "packed"),
    "--split", "test", "--out", str(report), "--quiet",
  ]  # fmt: skip
  subprocess.run(evaluate, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
  test = json.loads((report / "metrics.json").read_text())
  best = json.loads((workdir / "best" / "best.json").read_text())
  return {
    "variant": name, "seed": seed, "test_accuracy": test["accuracy"], "test_macro_f1": test["macro_f1"],
    "validation_accuracy": best["value"], "best_step": best["step"], "train_s": round(train_s, 1),
  }  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    "--corpus", type=pathlib.Path, required=True, help="Training/ Test/ Noise/ (degraded_esc50.py)"
  )
  p.add_argument("--out", type=pathlib.Path, required=True)
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--seeds", default="0", help="comma-separated train.seed values, each variant once per seed")
  args = p.parse_args()
  unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
  if unknown:
    p.error(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
  for seed in map(int, args.seeds.split(",")):
    for name in args.variants.split(","):
      print(json.dumps(run(name, args.corpus, args.out, seed)), flush=True)


if __name__ == "__main__":
  main()
