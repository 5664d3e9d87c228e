"""TFLite pipelines of one window (optional; needs TensorFlow): written into a bundle, and run back.

`write_tflite(model, directory)` writes `model.tflite` (float32), `model_fp16.tflite` (float16 weights) and
`frontend.tflite` + `model_int8.tflite` (a float front end, then the network with int8 weights), and returns
the manifest's "tflite" entry; `tflite_forward(files, num_classes)` runs one pipeline.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.bundle.format import TFLITE, TFLITE_FP16, TFLITE_FRONTEND, TFLITE_INT8, Model
from animaljax.models.classifier import Classifier, inference_forward, make_model


def split_forward(model: Model):
  """The model's inference forward as (front end `wave -> features`, network `features -> concat(logits,
  embedding)`, whole `wave -> concat`), all with the parameters baked in and one model: the network is the
  whole forward with the classifier's front-end step (`Classifier._features`) intercepted to return the given
  features, so no part of the model is written twice."""
  import flax.linen as nn

  forward, variables, n = inference_forward(model.config), model.variables, model.clip_samples

  def whole(wave):
    return jnp.concatenate(forward(variables, wave), axis=-1)

  def front(wave):  # the classifier's own evaluation front end (dither off)
    return make_model(model.config).apply(variables, wave, False, method="_features")

  def network(features):
    hits = []

    def swap(next_fun, args, kwargs, context):
      if isinstance(context.module, Classifier) and context.method_name == "_features":
        hits.append(context.method_name)
        return features
      return next_fun(*args, **kwargs)

    with nn.intercept_methods(swap):
      y = whole(jnp.zeros((1, n), jnp.float32))  # the wave never reaches a computation: it is swapped out
    if not hits:  # a renamed front-end step would otherwise silently give a network of a silent wave
      raise RuntimeError("Classifier._features was not called; cannot split the front end from the network")
    return y

  return front, network, whole


def write_tflite(model: Model, directory: pathlib.Path) -> dict:
  """TFLite models of one window in `directory`; returns their manifest entry.

  Three pipelines, each a list of files applied in order (`tflite_forward` chains them), all
  `wave (1, clip_samples) float32 -> (1, C + D)`: the logits and the embedding concatenated into one output so
  no output-name guessing is needed (`tflite_forward` splits them).
    float32: `model.tflite`.
    float16: `model_fp16.tflite` (float16 weights).
    int8:    `frontend.tflite` (float32, `wave -> features (1, frames, bins)`) then `model_int8.tflite`
             (`features -> (1, C + D)`, dynamic-range quantisation: int8 weights, float activations).
  The front end stays in float because dynamic-range quantisation also turns its constant DFT / mel matrices
  into int8: converted in one file, the log-mel was off by up to 79.5 dB (median 0.72 dB) and int8 kept only
  62.5% of the top-1 labels of the tests' tiny CNN6. Full-integer quantisation (int8 activations, which needs
  a representative dataset) is not offered: tried once on the tiny CNN6 calibrated on 32 synthetic training
  clips it kept 95.8% of the labels, below the 100% of dynamic range here.

  Measured against the Flax model (2026-11-22, 2-core shared CPU, TF 2.21.0, jax 0.10.2;
  `scripts/bench_tflite.py`, numbers in BENCHMARKS.md):
    tests' tiny CNN6 (1/8 width, 16 kHz, 1 s window, 24 held-out synthetic calls, max |logit| 17.2): top-1
      agreement float32 / float16 / int8 100% / 100% / 100% (one-file int8: 62.5%), logits max-abs error
      3.8e-6 / 9.1e-3 / 0.085; files 373 KB / 200 KB / 74 KB front end + 87 KB network (the float32 network
      alone, 298 KB, is 3.4x the int8 one).
    CNN14 at random weights (32 kHz, 10 s window, 527 classes, 8 synthetic calls, max |logit| 0.114): logits
      max-abs error 2.3e-7 / 7.3e-5 / 1.6e-3 (one-file int8: 0.081); files 323.1 MB / 161.6 MB / 0.14 MB front
      end + 80.9 MB network (4.0x smaller than float32); 62 ms a window in int8 vs 278 ms in float32;
      `write_tflite` takes 132 s.

  Route: `jax2tf.convert` of the Flax forward with the parameters baked in -> `tf.function` ->
  `tf.lite.TFLiteConverter`. A symbolic batch does not convert: the front end's framing lowers to a dynamic
  gather that the TFLite converter rejects ("'vhlo.dynamic_gather_v1' op is not part of the vhlo support
  yet").
  """
  import tensorflow as tf
  from jax.experimental import jax2tf

  front, network, whole = split_forward(model)
  wave_shape = (1, model.clip_samples)
  feature_shape = tuple(jax.eval_shape(front, jax.ShapeDtypeStruct(wave_shape, jnp.float32)).shape)

  def convert(fn, shape, name: str, kind: str) -> bytes:
    spec = tf.TensorSpec(shape, tf.float32, name=name)
    tf_fn = tf.function(jax2tf.convert(fn), autograph=False, input_signature=[spec])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([tf_fn.get_concrete_function()], tf_fn)
    if kind != "float32":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]  # no dataset: dynamic-range quantisation
    if kind == "float16":
      converter.target_spec.supported_types = [tf.float16]
    return converter.convert()

  (directory / TFLITE).write_bytes(convert(whole, wave_shape, "wave", "float32"))
  (directory / TFLITE_FP16).write_bytes(convert(whole, wave_shape, "wave", "float16"))
  (directory / TFLITE_FRONTEND).write_bytes(convert(front, wave_shape, "wave", "float32"))
  (directory / TFLITE_INT8).write_bytes(convert(network, feature_shape, "features", "int8"))
  return {
    "files": {"float32": [TFLITE], "float16": [TFLITE_FP16], "int8": [TFLITE_FRONTEND, TFLITE_INT8]},
    "input": list(wave_shape), "features": list(feature_shape), "output": "concat(logits[C], embedding[D])",
    "num_classes": model.config.num_classes, "embed_dim": model.embed_dim,
  }  # fmt: skip


def tflite_forward(path: str | os.PathLike | Sequence[str | os.PathLike], num_classes: int):
  """A TFLite pipeline of `write_tflite` as `waves (n, clip_samples) float32 -> (logits (n, C), embedding (n,
  D))`, one window per call. `path` is one file or the manifest's list of files for one kind (e.g. int8:
  `frontend.tflite`, `model_int8.tflite`), run in order, each one's output feeding the next one's input.
  Uses `ai_edge_litert` when installed, else TensorFlow's interpreter."""
  try:
    from ai_edge_litert.interpreter import Interpreter
  except ImportError:
    import tensorflow as tf

    Interpreter = tf.lite.Interpreter  # noqa: N806
  paths = [path] if isinstance(path, str | os.PathLike) else list(path)
  if not paths:
    raise ValueError("tflite_forward needs at least one .tflite file")
  stages = []
  for p in paths:
    with warnings.catch_warnings():  # TensorFlow's interpreter warns it is deprecated in favour of LiteRT
      warnings.simplefilter("ignore")
      interpreter = Interpreter(model_path=os.fspath(p))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    stages.append((interpreter, inp["index"], out["index"]))

  def run(waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = []
    for w in np.asarray(waves, np.float32):
      x = w[None]
      for interpreter, inp, out in stages:
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        x = interpreter.get_tensor(out)
      rows.append(x[0])
    y = np.stack(rows)
    return y[:, :num_classes], y[:, num_classes:]

  return run
