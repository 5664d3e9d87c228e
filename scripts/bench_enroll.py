"""Time enrolling one species from 5 clips of 5 s with an exported full CNN14 (random weights), excluding load.

  python scripts/bench_enroll.py [--runs 5] [--sample-rate 32000]

The model is a full CNN14 (80 M parameters) exported to a bundle (`animaljax.export`) and loaded with
`animaljax.inference.load_bundle`, as the CLI and the demo load it (serialised `jax.export` forward). Prints the first
enrolment (it pays the XLA compilation, once per process) and the warm ones, each split into decoding the
clips, the model's forward pass and the rest (leave-one-out threshold, atomic store write), and finally one
JSON line with the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import soundfile as sf

from animaljax.fewshot import enrol
from animaljax.inference import export_model, load_bundle
from animaljax.models.classifier import cnn14_config, make_model
from animaljax.models.pretrained import save_converted


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=5)
  parser.add_argument("--sample-rate", type=int, default=32000)
  args = parser.parse_args()
  sr = args.sample_rate
  config = cnn14_config(527, sr)
  with tempfile.TemporaryDirectory() as tmp:
    variables = make_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, sr)), train=False)
    save_converted(f"{tmp}/cnn14", config, variables)
    export_model(f"{tmp}/cnn14", f"{tmp}/bundle")
    t = time.perf_counter()
    predictor = load_bundle(f"{tmp}/bundle")
    print(
      f"bundle load: {time.perf_counter() - t:.2f} s  (CNN14 at {sr} Hz, embedding {predictor.embed_dim})"
    )
    rng = np.random.default_rng(0)
    files = []
    for i in range(5):
      files.append(f"{tmp}/clip{i}.wav")
      sf.write(files[-1], (0.1 * rng.normal(size=5 * sr)).astype(np.float32), sr)
    # Time the parts by wrapping the predictor's own methods (the enrolment code itself is unchanged).
    parts: dict[str, float] = {}

    def timed(name, fn):
      def wrapper(*a, **k):
        t0 = time.perf_counter()
        try:
          return fn(*a, **k)
        finally:
          parts[name] = parts.get(name, 0.0) + time.perf_counter() - t0

      return wrapper

    predictor.load_file = timed("decode", predictor.load_file)
    predictor.analyse = timed("model", predictor.analyse)
    warm = []
    for run in range(args.runs + 1):
      parts.clear()
      t = time.perf_counter()
      enrol.enroll(predictor, f"species {run}", files)
      total = time.perf_counter() - t
      label = "first (with compile)" if run == 0 else f"warm run {run}"
      rest = total - sum(parts.values())
      print(
        f"enrol 5 x 5 s clips, {label}: {total:.3f} s  (decode {parts['decode']:.3f}, model "
        f"{parts['model']:.3f}, threshold + store {rest:.3f})"
      )
      if run:
        warm.append((total, parts["decode"], parts["model"], rest))
    med = [statistics.median(col) for col in zip(*warm, strict=True)]
    print(json.dumps({
      "enrol_warm_median_s": round(med[0], 3), "decode_s": round(med[1], 3), "model_s": round(med[2], 3),
      "store_s": round(med[3], 3), "runs": args.runs, "sample_rate": sr, "device": str(jax.devices()[0]),
    }))  # fmt: skip


if __name__ == "__main__":
  main()
