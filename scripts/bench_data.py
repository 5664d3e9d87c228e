"""Data throughput on this machine: packing clips/s and loader clips/s (the grain pipeline over TFRecord shards).

    python scripts/bench_data.py                   # ESC-50 animals if ../shared/data/esc50-animals exists
    python scripts/bench_data.py --synthetic 400   # else synthetic 5 s clips
    python scripts/bench_data.py --packed DIR      # loader only, over an existing pack

Packs at 32 kHz with `--workers 2`, then reads the training split as the trainer does (global shuffle, random
crop of 5 s, batch 64, drop remainder) with worker_count 0 and 2. Prints a markdown table and a final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
ESC50 = (
  pathlib.Path(os.environ.get("ANIMALJAX_SHARED_DATA", REPO.parent / "shared" / "data")) / "esc50-animals"
)


def bench_pack(out: pathlib.Path, synthetic: int, sample_rate: int, workers: int) -> dict:
  from animaljax.data.packing import pack
  from animaljax.data.sources import Esc50Source, SyntheticSource

  if not synthetic and (ESC50 / "meta" / "esc50.csv").is_file():
    source, what = Esc50Source(ESC50, category="animals"), f"ESC-50 animals ({ESC50})"
  else:
    per_class = max(1, (synthetic or 400) // 6)
    source = SyntheticSource(
      num_classes=6, clips_per_class=(per_class, 0, 0), clip_seconds=5.0, noise_clips=0
    )
    what = f"synthetic 5 s clips x {6 * per_class}"
  start = time.perf_counter()
  summary = pack(source, out, sample_rate=sample_rate, workers=workers, progress=False, overwrite=True)
  seconds = time.perf_counter() - start
  clips = sum(s["num_examples"] for s in summary["splits"].values())
  return {"what": what, "clips": clips, "seconds": seconds, "clips_per_s": clips / seconds}


def _cpu_seconds() -> float:
  """User + system CPU seconds of this process and its live children (grain workers), from /proc."""
  t = os.times()
  total = t.user + t.system
  tick = os.sysconf("SC_CLK_TCK")
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[1]) == os.getpid():  # ppid; utime and stime are fields 14 and 15 of the stat line
      total += (int(fields[11]) + int(fields[12])) / tick
  return total


def bench_loader(data_dir: pathlib.Path, worker_count: int, batch_size: int, clip_seconds: float,
                 batches: int) -> dict:  # fmt: skip
  from animaljax.data import loader

  data = loader.PackedDataset(data_dir)
  split = "+".join(data.splits)  # every split: ESC-50 folds or synthetic train
  ld = loader.make_loader(data_dir, split, batch_size=batch_size, train=True, clip_seconds=clip_seconds,
                          shard_by_process=False, worker_count=worker_count)  # fmt: skip
  start = time.perf_counter()
  it = iter(ld)
  next(it)  # the first batch includes worker start-up; timed separately
  first = time.perf_counter() - start
  for _ in range(2 * worker_count):  # let every worker deliver once before timing
    next(it)
  start, cpu = time.perf_counter(), _cpu_seconds()
  rows = 0
  for _ in range(batches):
    rows += int(next(it)["mask"].sum())
  seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
  if worker_count:
    it.close()
  return {"workers": worker_count, "clips": rows, "seconds": seconds, "clips_per_s": rows / seconds,
          "clips_per_cpu_s": rows / cpu, "first_batch_s": first,
          "mb_per_s": rows * ld.clip_samples * 2 / seconds / 2**20}  # fmt: skip


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--packed", type=pathlib.Path, help="skip packing; read this packed folder")
  p.add_argument(
    "--synthetic", type=int, default=0, help="pack this many synthetic 5 s clips instead of ESC-50"
  )
  p.add_argument("--sample-rate", type=int, default=32000)
  p.add_argument("--pack-workers", type=int, default=2)
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--clip-seconds", type=float, default=5.0)
  p.add_argument("--batches", type=int, default=40, help="timed batches per loader configuration")
  p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader worker counts to time")
  args = p.parse_args()

  from absl import flags

  flags.FLAGS.mark_as_parsed()  # grain workers read absl flags
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  with tempfile.TemporaryDirectory() as tmp:
    packed = args.packed
    result: dict = {"cpus": os.cpu_count()}
    if packed is None:
      packed = pathlib.Path(tmp) / "packed"
      result["pack"] = bench_pack(packed, args.synthetic, args.sample_rate, args.pack_workers)
    result["loader"] = [
      bench_loader(packed, w, args.batch_size, args.clip_seconds, args.batches) for w in args.workers
    ]

  print(f"\n### Data throughput ({result['cpus']} CPUs)\n")
  print("| stage | setting | clips | seconds | clips/s | clips per CPU-second |")
  print("| --- | --- | ---: | ---: | ---: | ---: |")
  if "pack" in result:
    r = result["pack"]
    print(f"| pack | {r['what']}, {args.sample_rate} Hz, {args.pack_workers} workers | {r['clips']} | "
          f"{r['seconds']:.1f} | {r['clips_per_s']:.0f} | |")  # fmt: skip
  for r in result["loader"]:
    print(f"| load | train, {args.clip_seconds:g} s crops, batch {args.batch_size}, worker_count {r['workers']} "
          f"({r['mb_per_s']:.0f} MiB/s; first batch {r['first_batch_s']:.1f} s) | {r['clips']} | "
          f"{r['seconds']:.2f} | {r['clips_per_s']:.0f} | {r['clips_per_cpu_s']:.0f} |")  # fmt: skip
  print(f"\nload average while measuring: {os.getloadavg()[0]:.1f} on {result['cpus']} CPUs")
  print(json.dumps(result))


if __name__ == "__main__":
  main()
