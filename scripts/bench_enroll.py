"""Time enrolling one species from 5 clips of 5 s with a full CNN14 (random weights), excluding model load.

  python scripts/bench_enroll.py [--runs 3]

Prints the first enrolment (includes XLA compilation, paid once per process) and the warm ones.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import soundfile as sf

from animaljax.fewshot import enrol
from animaljax.models.classifier import cnn14_config, make_model
from animaljax.models.pretrained import save_converted
from animaljax.predictor import Predictor


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--runs", type=int, default=3)
  args = parser.parse_args()
  sr = 32000
  config = cnn14_config(527, sr)
  with tempfile.TemporaryDirectory() as tmp:
    variables = make_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, sr)), train=False)
    save_converted(f"{tmp}/cnn14", config, variables)
    t = time.perf_counter()
    predictor = Predictor.load(f"{tmp}/cnn14")
    print(
      f"model load: {time.perf_counter() - t:.2f} s  ({config.encoder.variant}, embed {predictor.embed_dim})"
    )
    rng = np.random.default_rng(0)
    files = []
    for i in range(5):
      files.append(f"{tmp}/clip{i}.wav")
      sf.write(files[-1], (0.1 * rng.normal(size=5 * sr)).astype(np.float32), sr)
    for run in range(args.runs + 1):
      t = time.perf_counter()
      enrol.enroll(predictor, f"species {run}", files)
      label = "first (with compile)" if run == 0 else f"warm run {run}"
      print(f"enrol 5 x 5 s clips, {label}: {time.perf_counter() - t:.3f} s")


if __name__ == "__main__":
  main()
