"""A small, messy corpus shaped like a field worker's folder, built from ESC-50 animals and real wind.

  python scripts/degraded_esc50.py --esc50 ../shared/data/esc50-animals --wind ../shared/data/noise/wind \
      --out /tmp/degraded [--seed 0]

Writes `OUT/Training/<class>/` (ESC-50 folds 1-4), `OUT/Test/<class>/` (fold 5) and `OUT/Noise/wind/` (the wind
recordings of folds 1-2 only; fold 3 is kept out, for testing under noise). Every animal clip is degraded the
way issue 15's corpus is messy: cut to a random length uniform in 0.3-5 s from its first sound, resampled to a
random native rate among 8, 11.025, 16 and 22.05 kHz, scaled by a random gain of -20..0 dB, and written as
8-bit WAV one time in five (16-bit otherwise). File names keep the ESC-50 source id, so `--group-by` can keep a
recording's clips together. Seeded: the same seed gives the same corpus. `--clean` writes the same layout with
the clips as they are (whole 5 s, 44.1 kHz, 16-bit): the clean reference the recipe must not lose on.
`--select` writes the corpus a recipe is chosen on, which never contains fold 5: `Training/` is folds 1-3 and
`Test/` fold 4 (`--test-fold K`: fold K of 1-4 tests, the other three train, for a 4-fold selection) (the same degraded clips as the full corpus, same seed), so a lever is judged on 80 held-out clips
and fold 5 stays for the one final score.
"""

from __future__ import annotations

import argparse
import csv
import pathlib

import numpy as np
import soundfile as sf

RATES = (8000, 11025, 16000, 22050)


def build(
  esc50: pathlib.Path,
  wind: pathlib.Path,
  out: pathlib.Path,
  seed: int,
  clean: bool = False,
  select: bool = False,
  test_fold: int = 4,
) -> dict:
  import librosa

  rng = np.random.default_rng(seed)
  counts = {"Training": 0, "Test": 0, "Noise": 0}
  for row in csv.DictReader(open(esc50 / "meta" / "esc50.csv")):
    split = "Test" if row["fold"] == (str(test_fold) if select else "5") else "Training"
    wave, sr = librosa.load(esc50 / "audio" / row["filename"], sr=None)
    if clean:
      folder = out / split / row["category"]
      folder.mkdir(parents=True, exist_ok=True)
      sf.write(folder / row["filename"].replace(".flac", ".wav"), wave, sr, subtype="PCM_16")
      counts[split] += 1
      continue
    start = int(np.argmax(np.abs(wave) > 0.05 * (np.abs(wave).max() + 1e-12)))
    wave = wave[start : start + int(rng.uniform(0.3, 5.0) * sr)]
    rate = int(rng.choice(RATES))
    wave = librosa.resample(wave, orig_sr=sr, target_sr=rate, res_type="soxr_hq")
    wave = np.clip(wave * 10 ** (rng.uniform(-20.0, 0.0) / 20), -1.0, 1.0)
    subtype = "PCM_U8" if rng.uniform() < 0.2 else "PCM_16"
    if select and row["fold"] == "5":  # drawn all the same, so every other clip matches the full corpus
      continue
    folder = out / split / row["category"]
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / row["filename"].replace(".flac", ".wav"), wave, rate, subtype=subtype)
    counts[split] += 1
  (out / "Noise" / "wind").mkdir(parents=True, exist_ok=True)
  for path in sorted(wind.glob("*.flac")):
    if path.name.split("-", 1)[0] in ("1", "2"):  # folds 1-2 train the noise mixing; fold 3 stays unseen
      wave, sr = sf.read(path)
      sf.write(out / "Noise" / "wind" / path.name.replace(".flac", ".wav"), wave, sr, subtype="PCM_16")
      counts["Noise"] += 1
  return counts


def main() -> None:
  repo = pathlib.Path(__file__).resolve().parents[1]
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--esc50", type=pathlib.Path, default=repo.parent / "shared" / "data" / "esc50-animals")
  p.add_argument("--wind", type=pathlib.Path, default=repo.parent / "shared" / "data" / "noise" / "wind")
  p.add_argument("--out", type=pathlib.Path, required=True)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--clean", action="store_true", help="no degradation: the clips as they are, same layout")
  p.add_argument("--select", action="store_true", help="the selection corpus: train folds 1-3, test fold 4")
  p.add_argument(
    "--test-fold", type=int, default=4, choices=(1, 2, 3, 4),
    help="--select: the fold of 1-4 that is Test/ (the other three train): four corpora give 4x the test clips",
  )  # fmt: skip
  args = p.parse_args()
  if args.out.exists() and any(args.out.iterdir()):
    raise SystemExit(f"error: {args.out} is not empty; give a new folder")
  if args.test_fold != 4 and not args.select:
    p.error("--test-fold applies to --select (fold 5 is the full corpus's test fold)")
  print(
    build(
      args.esc50,
      args.wind,
      args.out,
      args.seed,
      clean=args.clean,
      select=args.select,
      test_fold=args.test_fold,
    )
  )


if __name__ == "__main__":
  main()
