"""Peak memory and speed of `python -m animaljax.predict` on long recordings (issue 17: bounded memory).

  python scripts/bench_long_recording.py [--root /tmp/longrec] [--minutes 10] [--hours 24] [--format flac]
      [--bundle DIR] [--sample-rate 16000] [--hop S] [--batch-size 16] [--embed]

1. A bundle: --bundle, or the smoke training run exported, made once under --root with the commands a user runs:
   `python -m animaljax.train --config configs/quickstart.py:smoke --workdir ROOT/run` and
   `python -m animaljax.export --workdir ROOT/run --out ROOT/bundle`.
2. Two recordings, --minutes and --hours long, mono int16 at --sample-rate (a slow tone sweep in noise),
   written one minute at a time through `soundfile.SoundFile`, so the generator's own memory does not grow
   with the length either; kept under --root and reused by later runs. Free disk is checked first.
3. Each recording through `python -m animaljax.predict --model BUNDLE FILE --output ROOT/out.csv` in its own
   process (so does `embed` with --embed). Peak RSS comes from `os.wait4`'s rusage of that process
   (ru_maxrss), wall time from the parent; the real-time factor is wall time / audio time (start-up
   included), and "speed" the multiple of real time the progress bar reports at the end (start-up excluded).
Prints a Markdown table. Equal peaks for both lengths mean memory does not grow with the recording.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


def make_bundle(root: pathlib.Path) -> pathlib.Path:
  """The smoke training run of configs/quickstart.py, exported (once)."""
  bundle = root / "bundle"
  if (bundle / "manifest.json").is_file():
    return bundle
  run = [sys.executable, "-m", "animaljax.train", "--config", "configs/quickstart.py:smoke", "--workdir"]
  subprocess.run([*run, str(root / "run")], cwd=REPO, env=ENV, check=True, capture_output=True)
  export = [sys.executable, "-m", "animaljax.export", "--workdir", str(root / "run"), "--out", str(bundle)]
  subprocess.run(export, cwd=REPO, env=ENV, check=True, capture_output=True)
  return bundle


def write_recording(path: pathlib.Path, seconds: int, sr: int) -> None:
  """`seconds` of int16 mono at `sr`, one minute at a time (memory: one minute of audio)."""
  if path.is_file() and sf.info(str(path)).frames == seconds * sr:
    return
  tmp = path.with_name(path.stem + ".partial" + path.suffix)
  rng = np.random.default_rng(0)
  with sf.SoundFile(tmp, "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
    for minute in range(0, seconds, 60):
      t = np.arange(minute * sr, min(minute + 60, seconds) * sr) / sr
      freq = 800 + 600 * np.sin(2 * np.pi * t / 3600)  # a slow sweep, so windows differ
      block = 0.2 * np.sin(2 * np.pi * np.cumsum(freq) / sr) + 0.05 * rng.normal(size=t.size)
      f.write((block * 32767).astype(np.int16))
  tmp.rename(path)


def run_measured(cmd: list[str], log: pathlib.Path) -> tuple[float, int, int]:
  """Runs `cmd`; returns (wall seconds, exit status, peak RSS in KiB of that process)."""
  with open(log, "w") as err:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
  proc.returncode = os.waitstatus_to_exitcode(status)
  return wall, proc.returncode, usage.ru_maxrss


def last_speed(log: pathlib.Path) -> str:
  """The last "... h audio, Nx real time" the progress bar printed."""
  found = re.findall(r"([\d.]+) h audio, (\d+)x real time", log.read_text(errors="replace"))
  return f"{found[-1][1]}x" if found else "-"


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", default="/tmp/longrec", help="bundle, recordings and outputs go here")
  parser.add_argument("--minutes", type=float, default=10.0, help="the short recording")
  parser.add_argument("--hours", type=float, default=24.0, help="the long recording")
  parser.add_argument("--format", choices=("flac", "wav"), default="flac")
  parser.add_argument("--sample-rate", type=int, default=16000)
  parser.add_argument("--bundle", help="an existing bundle (default: the smoke run, exported)")
  parser.add_argument("--hop", type=float, help="predict's --hop (default: the window)")
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--embed", action="store_true", help="also measure `python -m animaljax.embed`")
  args = parser.parse_args()

  root = pathlib.Path(args.root)
  root.mkdir(parents=True, exist_ok=True)
  lengths = [round(args.minutes * 60), round(args.hours * 3600)]
  need = sum(lengths) * args.sample_rate * 2  # int16 WAV; FLAC of noise is not much smaller
  free = shutil.disk_usage(root).free
  if need * 1.2 > free:
    sys.exit(
      f"{need / 2**30:.1f} GiB of recordings need more than the {free / 2**30:.1f} GiB free under {root}"
    )
  bundle = pathlib.Path(args.bundle) if args.bundle else make_bundle(root)

  rows = []
  for seconds in lengths:
    path = root / f"rec_{seconds}s_{args.sample_rate}.{args.format}"
    start = time.perf_counter()
    write_recording(path, seconds, args.sample_rate)
    made = time.perf_counter() - start
    commands = {"predict": ["--output", str(root / "out.csv")]}
    if args.embed:
      commands["embed"] = ["--out", str(root / "out.npz")]
    for command, out in commands.items():
      cmd = [sys.executable, "-m", f"animaljax.{command}", "--model", str(bundle), str(path), *out]
      cmd += ["--batch-size", str(args.batch_size)] + (["--hop", str(args.hop)] if args.hop else [])
      log = root / f"{command}_{seconds}s.log"
      wall, rc, rss_kib = run_measured(cmd, log)
      if rc != 0:
        sys.exit(f"{' '.join(cmd)} exited {rc}; see {log}")
      rows.append((command, seconds, path.stat().st_size, made, wall, rss_kib, last_speed(log)))
      print(f"{command} {seconds / 3600:.2f} h: {wall:.1f} s, peak RSS {rss_kib / 1024:.0f} MiB", flush=True)

  print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
  print(f"bundle {bundle}; {args.format} int16 mono at {args.sample_rate} Hz; batch {args.batch_size}\n")
  print("| command | audio | file MB | generate s | wall s | peak RSS MiB | real-time factor | speed (bar) |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for command, seconds, size, made, wall, rss, speed in rows:
    audio = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
    print(
      f"| {command} | {audio} | {size / 1e6:.0f} | {made:.0f} | {wall:.1f} | {rss / 1024:.0f} | "
      f"{wall / seconds:.5f} | {speed} |"
    )


if __name__ == "__main__":
  main()
