"""Accuracy and size of the TFLite pipelines of `animaljax.bundle.tflite.write_tflite` against the Flax model.

  python scripts/bench_tflite.py --model exported/quickstart            # a bundle, model dir or workdir
  python scripts/bench_tflite.py --random cnn14 --sample-rate 32000 --clip-seconds 10 --clips-per-class 2

Writes the TFLite files of one window into a temporary folder (timing the conversion), runs every pipeline of
the manifest entry on held-out synthetic calls (`animaljax.data.sources.synthetic`, split "test", seed 11: the
model's labels where they are synthetic call types, else every type) and prints, per pipeline, its files and
sizes, the max-abs error of logits and embedding against the Flax model, top-1 agreement and ms per window.
`--one-file-int8` adds the former single-file int8 (front end quantised too) for comparison.
Top-1 agreement means nothing on random weights; look at the logit error there.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from animaljax.bundle import tflite  # noqa: E402
from animaljax.data.sources.synthetic import CLASS_KINDS, synthesize  # noqa: E402
from animaljax.inference import Predictor, load_predictor  # noqa: E402
from animaljax.models.classifier import cnn14_config, make_model  # noqa: E402


def _predictor(args) -> Predictor:
  if args.model:
    return load_predictor(args.model)
  config = cnn14_config(args.num_classes, args.sample_rate, variant=args.random)
  n = round(args.clip_seconds * args.sample_rate)
  variables = jax.jit(make_model(config).init)(jax.random.key(0), np.zeros((1, n), np.float32))
  labels = [f"class_{i}" for i in range(args.num_classes)]
  return Predictor(config, variables, labels, clip_seconds=args.clip_seconds)


def _one_file_int8(p: Predictor, path: pathlib.Path) -> None:
  import tensorflow as tf
  from jax.experimental import jax2tf

  _, _, whole = tflite.split_forward(p)
  spec = tf.TensorSpec((1, p.clip_samples), tf.float32, name="wave")
  fn = tf.function(jax2tf.convert(whole), autograph=False, input_signature=[spec])
  converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  path.write_bytes(converter.convert())


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--model", help="bundle, model dir or training workdir")
  ap.add_argument("--random", choices=("cnn6", "cnn10", "cnn14"), help="a PANNs CNN at random weights")
  ap.add_argument("--sample-rate", type=int, default=32000)
  ap.add_argument("--clip-seconds", type=float, default=10.0)
  ap.add_argument("--num-classes", type=int, default=527)
  ap.add_argument("--clips-per-class", type=int, default=6)
  ap.add_argument("--one-file-int8", action="store_true")
  args = ap.parse_args()
  if bool(args.model) == bool(args.random):
    ap.error("give exactly one of --model and --random")

  p = _predictor(args)
  kinds = [k for k in p.labels if k in CLASS_KINDS] or list(CLASS_KINDS)
  x = np.stack([
    synthesize(k, i, "test", seed=11, sample_rate=p.sample_rate, clip_seconds=p.clip_samples / p.sample_rate)
    for k in kinds for i in range(args.clips_per_class)
  ]).astype(np.float32)  # fmt: skip
  ref_logits, ref_emb = (np.asarray(a) for a in p._run(x))

  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp)
    t0 = time.perf_counter()
    entry = tflite.write_tflite(p, out)
    convert_s = time.perf_counter() - t0
    pipelines = dict(entry["files"])
    if args.one_file_int8:
      _one_file_int8(p, out / "one_file_int8.tflite")
      pipelines["int8 (one file, old)"] = ["one_file_int8.tflite"]
    print(f"model: {args.model or args.random}, {p.sample_rate} Hz, window {p.clip_samples} samples, "
          f"{len(x)} clips (max |logit| {np.abs(ref_logits).max():.3g}); write_tflite {convert_s:.1f} s; "
          f"features {entry['features']}")  # fmt: skip
    print(
      "| pipeline | files (bytes) | logits max-abs err | embedding max-abs err | top-1 agreement | ms/window |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, files in pipelines.items():
      run = tflite.tflite_forward([out / f for f in files], p.config.num_classes)
      run(x[:1])  # warm-up
      t0 = time.perf_counter()
      logits, emb = run(x)
      ms = 1000 * (time.perf_counter() - t0) / len(x)
      sizes = " + ".join(f"{f} ({(out / f).stat().st_size:,})" for f in files)
      agree = float((logits.argmax(1) == ref_logits.argmax(1)).mean())
      print(
        f"| {kind} | {sizes} | {np.abs(logits - ref_logits).max():.3g} | {np.abs(emb - ref_emb).max():.3g} "
        f"| {agree:.1%} | {ms:.1f} |"
      )


if __name__ == "__main__":
  main()
