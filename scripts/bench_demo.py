"""Latency of the web demo's `/classify` endpoint over HTTP, as a `gradio_client` user sees it.

  python scripts/bench_demo.py                       # random-weight CNN14 (32 kHz) and tiny CNN6 bundles
  python scripts/bench_demo.py --model exported/x    # an existing bundle instead

For each bundle: starts `python demo/app.py --model BUNDLE` as a separate process (what a user runs), sends a
5 s clip (a real ESC-50 clip from ../shared/data when present, else 5 s of a synthetic call), warms up, then
times `--requests` sequential requests and a concurrent round (`--clients` threads, each its own client, each
sending `--requests / --clients` requests), and the same clip through `Predictor.classify` in-process (the
model's share of the latency). Prints a Markdown table (p50/p95 in ms); `--out F` also writes every sample as
JSON.

Bundles made here have random weights (latency does not depend on the weights): a full-size CNN14 (10-class
head, 32 kHz, 5 s window) and a CNN6 at 1/8 width (16 kHz, 2 s window), each exported with
`animaljax.bundle.export_bundle`.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SHARED_CLIP = REPO.parent / "shared" / "data" / "esc50-animals" / "audio" / "5-9032-A-0.flac"


def make_bundle(
  out: pathlib.Path, variant: str, width: float, sample_rate: int, clip_seconds: float
) -> pathlib.Path:
  """A random-weight classifier (10 classes) exported as a bundle at `out`."""
  import jax

  from animaljax.bundle import export_bundle
  from animaljax.inference import Predictor
  from animaljax.models.classifier import cnn14_config, make_model

  config = cnn14_config(10, sample_rate, width, variant=variant, dropout=False)
  wave = np.zeros((1, int(clip_seconds * sample_rate)), np.float32)
  variables = make_model(config).init(jax.random.key(0), wave, train=False)
  labels = [f"class_{i}" for i in range(10)]
  predictor = Predictor(config, dict(variables), labels, clip_seconds=clip_seconds)
  return export_bundle(predictor, out, overwrite=True)


def clip_file(tmp: pathlib.Path) -> tuple[str, str]:
  """(path, description) of a 5 s clip."""
  if SHARED_CLIP.is_file():
    return str(SHARED_CLIP), f"ESC-50 {SHARED_CLIP.name} (5 s, 44.1 kHz FLAC, resampled by the server)"
  import soundfile as sf

  from animaljax.data.sources.synthetic import synthesize

  path = tmp / "clip.wav"
  sf.write(path, synthesize("harmonic_up", 0, "test", seed=0, sample_rate=32000, clip_seconds=5.0), 32000)
  return str(path), "synthetic harmonic_up call (5 s, 32 kHz WAV)"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def percentiles(ms: list[float]) -> dict:
  a = np.asarray(ms)
  return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
          "mean_ms": float(a.mean())}  # fmt: skip


def bench_bundle(bundle: pathlib.Path, clip: str, args) -> dict:
  """Starts the demo on `bundle`, measures, stops it."""
  from gradio_client import Client, handle_file

  from animaljax.inference import load_bundle

  port = free_port()
  cmd = [sys.executable, str(REPO / "demo" / "app.py"), "--model", str(bundle), "--port", str(port),
         "--concurrency", str(args.concurrency)]  # fmt: skip
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    url, client, start = f"http://127.0.0.1:{port}/", None, time.time()
    while client is None:
      if server.poll() is not None or time.time() - start > 300:
        raise RuntimeError(f"the demo did not start: {' '.join(cmd)}")
      try:
        client = Client(url, verbose=False)
      except Exception:
        time.sleep(0.5)
    startup_s = time.time() - start

    def ask(c) -> float:
      t = time.perf_counter()
      c.predict(handle_file(clip), api_name="/classify")
      return (time.perf_counter() - t) * 1e3

    for _ in range(args.warmup):
      ask(client)
    sequential = [ask(client) for _ in range(args.requests)]

    per_client = max(1, args.requests // args.clients)
    clients = [Client(url, verbose=False) for _ in range(args.clients)]
    for c in clients:
      ask(c)  # each client's first request opens its connection
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
      runs = list(pool.map(lambda c: [ask(c) for _ in range(per_client)], clients))
    wall = time.perf_counter() - t0
    concurrent_ms = [x for r in runs for x in r]
  finally:
    server.terminate()
    server.wait(timeout=60)

  predictor = load_bundle(bundle)
  for _ in range(args.warmup):
    predictor.classify(clip)
  in_process = []
  for _ in range(args.requests):
    t = time.perf_counter()
    predictor.classify(clip)
    in_process.append((time.perf_counter() - t) * 1e3)
  return {
    "bundle": str(bundle),
    "model": f"{predictor.config.encoder.variant} width {predictor.config.encoder.width:g}",
    "sample_rate": predictor.sample_rate,
    "window_s": predictor.clip_samples / predictor.sample_rate,
    "startup_s": startup_s,
    "sequential": {**percentiles(sequential), "samples_ms": sequential},
    "concurrent": {
      **percentiles(concurrent_ms),
      "clients": args.clients,
      "requests_per_s": len(concurrent_ms) / wall,
      "samples_ms": concurrent_ms,
    },  # fmt: skip
    "in_process": {**percentiles(in_process), "samples_ms": in_process},
  }


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--model", action="append", help="bundle(s) to measure (default: make CNN14 and tiny CNN6)")
  p.add_argument("--requests", type=int, default=50)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--clients", type=int, default=8, help="threads in the concurrent round")
  p.add_argument("--concurrency", type=int, default=2, help="the server's --concurrency")
  p.add_argument("--out", help="also write every sample as JSON here")
  args = p.parse_args()

  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    if args.model:
      bundles = [pathlib.Path(m) for m in args.model]
    else:
      t = time.time()
      bundles = [make_bundle(tmp / "cnn14", "cnn14", 1.0, 32000, 5.0)]
      print(f"exported the random CNN14 bundle in {time.time() - t:.1f} s", flush=True)
      bundles.append(make_bundle(tmp / "cnn6_8", "cnn6", 1 / 8, 16000, 2.0))
    clip, what = clip_file(tmp)
    results = []
    for b in bundles:
      print(f"measuring {b} ...", flush=True)
      results.append(bench_bundle(b, clip, args))

  print(f"\nclip: {what}; {args.requests} sequential requests after {args.warmup} warm-up; concurrent: "
        f"{args.clients} clients x {max(1, args.requests // args.clients)}, server --concurrency {args.concurrency}\n")  # fmt: skip
  print("| model | window | startup s | HTTP sequential p50 / p95 ms | HTTP concurrent p50 / p95 ms | "
        "concurrent req/s | in-process p50 / p95 ms |")  # fmt: skip
  print("|---|---:|---:|---:|---:|---:|---:|")
  for r in results:
    s, c, i = r["sequential"], r["concurrent"], r["in_process"]
    print(f"| {r['model']}, {r['sample_rate'] // 1000} kHz | {r['window_s']:g} s | {r['startup_s']:.1f} | "
          f"{s['p50_ms']:.0f} / {s['p95_ms']:.0f} | {c['p50_ms']:.0f} / {c['p95_ms']:.0f} | "
          f"{c['requests_per_s']:.1f} | {i['p50_ms']:.0f} / {i['p95_ms']:.0f} |")  # fmt: skip
  if args.out:
    pathlib.Path(args.out).write_text(
      json.dumps({"clip": what, "args": vars(args), "results": results}, indent=1)
    )
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
  main()
