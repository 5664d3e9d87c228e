"""The inference bundle: a self-contained folder that serves a trained or converted model without training code.

  manifest.json        format/format_version, animaljax and jax versions, export date, source, labels, rates,
                       the metrics summary, how `infer.jax_exported` may be called, and the size + sha256 of every
                       file below (except species/ and heads/), so a missing or truncated file is caught before use
  model.json           the saved-model record (`models.serialize`: ClassifierConfig + labels + clip_seconds), the
                       same file a converted model dir has
  params.safetensors   params and BatchNorm statistics, flat keys "params/encoder/conv_block1/conv1/kernel"
  infer.jax_exported   `jax.export` serialisation of `(variables, wave (batch, time) f32) -> (logits, embedding)`
                       (symbolic batch; symbolic time in multiples of the STFT hop where the model allows it)
  model.tflite, model_fp16.tflite, frontend.tflite + model_int8.tflite   optional: float32, float16-weight and
                       int8 (float front end, then the network with dynamic-range int8 weights) TFLite pipelines
                       of one window, `(1, clip_samples) -> (1, C + D)` logits then embedding (`bundle.tflite`)
  metrics.json, confusion_matrix.png, per_class.png, confusion_matrix.csv   copied from a training workdir
  species/             the species store (`animaljax.fewshot`): the enrolled species of the source and, when
                       replacing a bundle, of the bundle replaced; it stays editable
                       (`python -m animaljax.enroll add --model BUNDLE ...`), so it is not in the checksums
  heads/<name>/        linear heads attached by `python -m animaljax.search attach` (`fewshot.heads`): extra
                       classes scored from the model's embeddings; editable, so not in the checksums either

Nothing is pickled: safetensors, JSON, PNG, StableHLO bytes and the store's `allow_pickle=False` npz. A bundle is
built in a hidden sibling folder and renamed into place, so a killed export leaves nothing that looks complete.

  format.py    file names, the manifest, checksums, flat parameter names, `BundleError`
  exported.py  the inference forward and its `jax.export` serialisation (`ExportedForward`)
  tflite.py    the TFLite pipelines (needs TensorFlow)
  write.py     `export_bundle(model, out)`: the bundle of a model object, enrolled species carried over
  read.py      `read_manifest`, `read_bundle` -> config, weights, labels and the deserialised forward

This package reads and writes the saved-model record, never a Predictor: `animaljax.inference.load` turns a
bundle into one, and exports a model given by its path. It imports nothing from inference or training.
"""

from animaljax.bundle.format import BundleError
from animaljax.bundle.read import Bundle, read_bundle, read_manifest
from animaljax.bundle.write import export_bundle

__all__ = ["Bundle", "BundleError", "export_bundle", "read_bundle", "read_manifest"]
