"""Prediction throughput and start-up time of exported bundles on this machine.

  python scripts/bench_predict.py [--minutes 10] [--models cnn14,cnn6] [--batch-size 16]

For each model (random weights: the speed does not depend on them), exports a bundle with 10 s windows at
32 kHz and measures:
  * decode + resample: `load_audio` of a synthetic mono FLAC of --minutes at 44.1 kHz to 32 kHz (host only);
  * model: every window of that recording through the bundle's Predictor (`run_windows`, batches of
    --batch-size, compiled beforehand), i.e. what `python -m animaljax.predict` adds on top of decoding;
  * end to end: `Predictor.scan` of the file (decoding the next file overlaps the model in a thread, but with
    one file there is nothing to overlap), compilation excluded;
  * start-up, in fresh processes with no compilation cache: import + `load_bundle` + first prediction of one
    window, through the serialised `jax.export` function and through the Flax model.
Throughput figures are the best of --repeats runs, start-up figures the median of --repeats processes.
Prints a Markdown table (hours of audio per minute = audio hours / wall minutes).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from animaljax.audio.io import load_audio  # noqa: E402
from animaljax.bundle import export_bundle  # noqa: E402
from animaljax.inference import Predictor, load_bundle  # noqa: E402
from animaljax.models.classifier import cnn14_config, make_model  # noqa: E402

SR = 32000
WINDOW_S = 10.0
MODELS = {
  "cnn14": dict(variant="cnn14", width=1.0),
  "cnn6": dict(variant="cnn6", width=1.0),
  "cnn6-w0.25": dict(variant="cnn6", width=0.25),
}
STARTUP = """
import time; t0 = time.perf_counter()
import numpy as np
from animaljax.inference import load_bundle
p = load_bundle({path!r}, use_exported={exported})
t1 = time.perf_counter()
x = np.random.default_rng(0).normal(0, 0.1, (1, p.clip_samples)).astype(np.float32)
np.asarray(p.logits(x))
t2 = time.perf_counter()
print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}} {{t2 - t0:.2f}}")
"""


def synthetic_recording(path: pathlib.Path, minutes: float, sr: int = 44100) -> None:
  """Tones, chirps and noise (so FLAC cannot shrink it to nothing), written in 60 s blocks."""
  rng = np.random.default_rng(0)
  with sf.SoundFile(path, "w", sr, 1, format="FLAC", subtype="PCM_16") as f:
    for block in range(int(np.ceil(minutes))):
      t = np.arange(int(60 * sr)) / sr
      wave = 0.2 * np.sin(2 * np.pi * (500 + 3000 * (t % 1.7)) * t) + 0.05 * rng.normal(size=t.size)
      f.write(wave[: int(min(60, (minutes - block) * 60) * sr)].astype(np.float32))


def make_bundle(name: str, out: pathlib.Path) -> tuple[pathlib.Path, int, float]:
  """Random-weight model -> bundle; returns (path, parameter count, export seconds)."""
  config = cnn14_config(10, SR, **{**MODELS[name], "dropout": False})
  variables = jax.jit(make_model(config).init)(jax.random.key(0), np.zeros((1, SR), np.float32))
  predictor = Predictor(config, variables, [f"class_{i}" for i in range(10)], clip_seconds=WINDOW_S)
  params = sum(x.size for x in jax.tree.leaves(variables["params"]))
  t = time.perf_counter()
  export_bundle(predictor, out, overwrite=True)
  return out, params, time.perf_counter() - t


def startup(path: pathlib.Path, exported: bool) -> tuple[float, float, float]:
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO), "JAX_COMPILATION_CACHE_DIR": ""}
  code = STARTUP.format(path=str(path), exported=exported)
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
  return tuple(float(v) for v in proc.stdout.split()[-3:])


def median(runs: list[tuple[float, ...]]) -> tuple[float, ...]:
  """The run with the median total (last field)."""
  return sorted(runs, key=lambda r: r[-1])[len(runs) // 2]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--minutes", type=float, default=10.0)
  parser.add_argument("--models", default="cnn14,cnn6")
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument(
    "--repeats", type=int, default=3, help="timed runs: best for throughput, median start-up"
  )
  args = parser.parse_args()
  print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__}, "
        f"load average before: {os.getloadavg()[0]:.1f}")  # fmt: skip
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    audio = tmp / "long.flac"
    synthetic_recording(audio, args.minutes)
    hours = args.minutes / 60
    t = time.perf_counter()
    wave = load_audio(audio, SR, max_seconds=None)
    decode_s = time.perf_counter() - t
    print(f"decode + resample 44.1 -> 32 kHz of {args.minutes:g} min: {decode_s:.2f} s "
          f"({hours / (decode_s / 60):.1f} h of audio per minute)")  # fmt: skip
    rows = []
    for name in args.models.split(","):
      bundle, params, export_s = make_bundle(name, tmp / name)
      p = load_bundle(bundle)
      windows = p.windows(wave)
      p.run_windows(windows[: args.batch_size])  # compile the full batch and the padded tail's shape
      p.run_windows(windows[: len(windows) % args.batch_size or args.batch_size])
      model_s = scan_s = float("inf")
      for _ in range(args.repeats):  # the best of a few: other jobs share this CPU
        t = time.perf_counter()
        for i in range(0, len(windows), args.batch_size):
          p.run_windows(windows[i : i + args.batch_size])
        model_s = min(model_s, time.perf_counter() - t)
        t = time.perf_counter()
        (scan,) = p.scan([audio], batch_size=args.batch_size, max_seconds=None)
        scan_s = min(scan_s, time.perf_counter() - t)
        assert scan.probs.shape[0] == len(windows)
      fast = median([startup(bundle, True) for _ in range(args.repeats)])
      flax = median([startup(bundle, False) for _ in range(args.repeats)])
      rows.append((name, params, len(windows), export_s, model_s, scan_s, fast, flax))
      print(
        f"{name}: model {model_s:.1f} s, end to end {scan_s:.1f} s, start-up exported {fast}, flax {flax}"
      )
  print(f"\n{args.minutes:g} min of audio at 32 kHz (from 44.1 kHz FLAC), {WINDOW_S:g} s windows, hop = window, "
        f"batch {args.batch_size}; decode + resample {decode_s:.2f} s. Load average after: {os.getloadavg()[0]:.1f}\n")  # fmt: skip
  print(
    "| model | params | windows | model s | model h/min | end-to-end s | end-to-end h/min | "
    "start-up jax.export s (load + first) | start-up Flax s (load + first) | export s |"
  )
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for name, params, n, export_s, model_s, scan_s, fast, flax in rows:
    print(f"| {name} | {params / 1e6:.1f} M | {n} | {model_s:.1f} | {hours / (model_s / 60):.2f} | {scan_s:.1f} | "
          f"{hours / (scan_s / 60):.2f} | {fast[2]:.1f} ({fast[0]:.1f} + {fast[1]:.1f}) | "
          f"{flax[2]:.1f} ({flax[0]:.1f} + {flax[1]:.1f}) | {export_s:.1f} |")  # fmt: skip


if __name__ == "__main__":
  main()
