"""Multi-label training on soundscapes against a single-label model trained on the same clips (issue 16).

  python scripts/measure_soundscapes.py --out /tmp/soundscapes [--seed 0]

1. `scripts/make_soundscapes.py`: ESC-50 animal clips mixed over real wind into 30 s soundscapes with exact Raven
   tables; `Training/` only from folds 1-4, `Test/` only from fold 5, disjoint wind recordings.
2. `python -m animaljax.pack --source raven`: 2 s windows every 1 s at 16 kHz; validation carved from
   `Training/` by whole soundscape.
3. The multi-label model: `configs/soundscape.py:cpu` (CNN6 w0.25, BCE, balanced sampler, best state by
   validation mAP, per-class thresholds of maximum validation F1).
4. The single-label model: the same network on the same ESC-50 clips as single-label examples
   (`configs/cnn10_esc50.py:cpu` settings with 2 s looped rows: folds 1-3 train, fold 4 validates).
5. Both scored the same way on the `Test/` soundscapes, never used before: `python -m animaljax.evaluate --split
   test` (window mAP, per-class AP, F1 at the thresholds; the single-label model's softmax stands for its class
   scores, thresholds 0.5) and `--raven Test/` (event-level precision / recall / F1, overlap >= 0.5 s).
Prints one JSON line per model; the table goes to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def sh(*cmd: str) -> float:
  t0 = time.perf_counter()
  subprocess.run(
    [sys.executable, *cmd], cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  return round(time.perf_counter() - t0, 1)


def score(model: pathlib.Path, out: pathlib.Path, name: str) -> dict:
  ev, events = out / f"eval-{name}", out / f"events-{name}"
  sh("-m", "animaljax.evaluate", "--model", str(model), "--data", str(out / "packed"), "--split", "test",
     "--out", str(ev), "--quiet")  # fmt: skip
  sh("-m", "animaljax.evaluate", "--model", str(model), "--raven", str(out / "sc" / "Test"), "--out", str(events),
     "--quiet")  # fmt: skip
  m = json.loads((ev / "metrics.json").read_text())
  e = json.loads((events / "events.json").read_text())
  return {
    "model": name, "test_mAP": m["mAP"], "test_cmAP_padded": m["cmAP_padded"], "test_f1": m["f1"],
    "test_macro_f1": m["macro_f1"], "per_class_AP": {k: v["AP"] for k, v in m["per_class"].items()},
    "event_precision": e["event_micro"]["precision"], "event_recall": e["event_micro"]["recall"],
    "event_f1": e["event_micro"]["f1"], "event_macro_f1": e["event_macro_f1"],
  }  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", type=pathlib.Path, required=True)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()
  out = args.out
  sh("scripts/make_soundscapes.py", "--esc50", str(DATA / "esc50-animals"), "--noise", str(DATA / "noise" / "wind"),
     "--out", str(out / "sc"), "--seed", str(args.seed))  # fmt: skip
  sh("-m", "animaljax.pack", "--source", "raven", "--root", str(out / "sc"), "--out", str(out / "packed"),
     "--sample-rate", "16000", "--window-seconds", "2", "--hop-seconds", "1", "--seed", str(args.seed))  # fmt: skip
  t_ml = sh("-m", "animaljax.train", "--config", "configs/soundscape.py:cpu", "--workdir", str(out / "run-multi"),
            f"--config.data.dir={out / 'packed'}", f"--config.data.root={out / 'sc'}",
            f"--config.train.seed={args.seed}")  # fmt: skip
  t_sl = sh("-m", "animaljax.train", "--config", "configs/cnn10_esc50.py:cpu", "--workdir", str(out / "run-single"),
            f"--config.data.root={DATA / 'esc50-animals'}", f"--config.data.dir={out / 'packed-esc50'}",
            "--config.data.cv_fold=0", "--config.data.train_split=fold1+fold2+fold3", "--config.data.eval_split=fold4",
            "--config.data.clip_seconds=2.0", "--config.data.short_clips=loop", "--config.train.steps=900",
            f"--config.train.seed={args.seed}")  # fmt: skip
  for name, run, wall in (("multi-label (soundscapes)", out / "run-multi", t_ml),
                          ("single-label (ESC-50 clips)", out / "run-single", t_sl)):  # fmt: skip
    print(json.dumps({**score(run, out, name.split()[0]), "train_s": wall}), flush=True)


if __name__ == "__main__":
  main()
