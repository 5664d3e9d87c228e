"""Embedding throughput of `python -m animaljax.embed`: local vs `--runner beam` (DirectRunner), side by side.

  python scripts/bench_embed_beam.py [--clips 120] [--variant cnn6] [--width 1.0] [--workers 2] [--repeats 2]

1. A bundle of a random-weight model (the speed does not depend on the weights) with 5 s windows at 32 kHz,
   the length of the clips, exported under a temporary folder.
2. The first --clips real ESC-50 clips of the shared data (5 s, 44.1 kHz FLAC: each is decoded, resampled and
   one window), so 120 clips are 10 minutes of audio.
3. In fresh processes, one after another and --repeats times each (interleaved, so the shared machine's load
   falls on all of them alike): the local command; `--runner beam` with the DirectRunner in this process
   (`in_memory`, one worker); and with --workers worker processes (`--direct_num_workers=N
   --direct_running_mode=multi_processing`). Each Beam run writes a new folder (a re-run would resume and skip
   everything). Wall time includes start-up (imports, model load and compilation in every worker), as a user
   sees it; the table gives the best run, hours of audio per hour of wall time, the ratio to local, and the
   largest embedding difference from the local output (a check that the runs did the same work).
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

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = pathlib.Path(os.environ.get("ANIMALJAX_SHARED_DATA", REPO.parent / "shared" / "data"))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
SR, WINDOW_S = 32000, 5.0


def make_bundle(out: pathlib.Path, variant: str, width: float) -> pathlib.Path:
  import jax

  from animaljax.bundle import export_bundle
  from animaljax.inference import Predictor
  from animaljax.models.classifier import cnn14_config, make_model

  config = cnn14_config(10, SR, variant=variant, width=width, dropout=False)
  variables = jax.jit(make_model(config).init)(jax.random.key(0), np.zeros((1, SR), np.float32))
  predictor = Predictor(config, variables, [f"class_{i}" for i in range(10)], clip_seconds=WINDOW_S)
  export_bundle(predictor, out, overwrite=True)
  return out


def embeddings(out: pathlib.Path) -> np.ndarray:
  import pyarrow.parquet as pq

  table = pq.read_table(out)  # a file, or the folder of Beam shards
  cols = table.to_pydict()
  order = sorted(range(table.num_rows), key=lambda i: (cols["file"][i], cols["kind"][i], cols["start_s"][i]))
  return np.asarray(cols["embedding"], np.float32)[order]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clips", type=int, default=120)
  parser.add_argument("--variant", default="cnn6")
  parser.add_argument("--width", type=float, default=1.0)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=2)
  parser.add_argument("--batch-size", type=int, default=16)
  args = parser.parse_args()
  clips = sorted(str(p) for p in (SHARED / "esc50-animals" / "audio").glob("*.flac"))[: args.clips]
  if not clips:
    sys.exit(f"no ESC-50 clips under {SHARED / 'esc50-animals' / 'audio'}")
  hours = len(clips) * 5.0 / 3600
  print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average before: "
        f"{os.getloadavg()[0]:.1f}; {len(clips)} clips = {hours * 60:.1f} min of audio; "
        f"{args.variant} width {args.width} at {SR} Hz, {WINDOW_S:g} s windows, batch {args.batch_size}")  # fmt: skip
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    bundle = make_bundle(tmp / "bundle", args.variant, args.width)
    base = [sys.executable, "-m", "animaljax.embed", "--model", str(bundle), *clips, "--quiet",
            "--batch-size", str(args.batch_size)]  # fmt: skip
    multi = f"--direct_num_workers={args.workers} --direct_running_mode=multi_processing"
    runs = {
      "local": [],
      "beam, DirectRunner in_memory (1 worker)": ["--runner", "beam", "--beam_pipeline_options="],
      f"beam, DirectRunner multi_processing ({args.workers} workers)": [
        "--runner", "beam", f"--beam_pipeline_options={multi}"
      ],
    }  # fmt: skip
    best = dict.fromkeys(runs, float("inf"))
    outputs: dict[str, pathlib.Path] = {}
    for r in range(args.repeats):
      for i, (name, extra) in enumerate(runs.items()):
        out = tmp / (f"local{r}.parquet" if not extra else f"beam{i}-{r}")
        t = time.perf_counter()
        subprocess.run([*base, *extra, "--out", str(out)], cwd=REPO, env=ENV, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        wall = time.perf_counter() - t
        best[name] = min(best[name], wall)
        outputs[name] = out
        print(f"  run {r + 1}: {name}: {wall:.1f} s", flush=True)
    ref = embeddings(outputs["local"])
    print("\n| runner | best wall s | h audio / h wall | vs local | max abs diff vs local |")
    print("|---|---|---|---|---|")
    for name, wall in best.items():
      diff = float(np.abs(embeddings(outputs[name]) - ref).max())
      print(
        f"| {name} | {wall:.1f} | {hours / (wall / 3600):.0f} | {best['local'] / wall:.2f}x | {diff:.1e} |"
      )
  print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
  main()
