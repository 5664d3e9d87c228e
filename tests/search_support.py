"""Shared by the search tests (a plain module: conftest names clash): tiny untrained CNN6 model dirs, tone
recordings, and a linear head trained on one model's embeddings of labelled windows of them."""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np


def tiny_models(root: pathlib.Path, seeds=(0, 1)) -> dict:
  """CNN6 model dirs at 1/8 width (16 kHz, 1 s windows, classes a/b/c), one per seed (same architecture,
  different weights), and three 3 s tone recordings under `root/audio`."""
  import jax
  import jax.numpy as jnp
  import soundfile as sf

  from animaljax.models.classifier import cnn14_config, make_model
  from animaljax.models.pretrained import save_converted

  cfg = cnn14_config(3, 16000, width=0.125, variant="cnn6", dropout=False)
  model = make_model(cfg)
  paths = []
  for seed in seeds:
    variables = model.init({"params": jax.random.key(seed)}, jnp.zeros((1, 16000)), train=False)
    path = save_converted(
      root / f"m{seed}", cfg, jax.tree.map(np.asarray, dict(variables)), labels=["a", "b", "c"]
    )
    meta = json.loads((path / "model.json").read_text())
    (path / "model.json").write_text(json.dumps({**meta, "clip_seconds": 1.0, "short_clips": "pad"}))
    paths.append(path)
  t = np.arange(48000) / 16000
  audio = root / "audio"
  audio.mkdir()
  for i, f in enumerate((440, 1500, 3000)):
    sf.write(audio / f"tone{i}.wav", 0.3 * np.sin(2 * np.pi * f * t) * (1 + (t > 1)), 16000)
  return {"root": root, "models": paths, "audio": audio}


def labels_csv(path: pathlib.Path, rows) -> pathlib.Path:
  """A labels CSV `file,start_s,end_s,label` of `rows`."""
  with path.open("w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file", "start_s", "end_s", "label"])
    w.writerows(rows)
  return path


def whistle_labels(path: pathlib.Path) -> pathlib.Path:
  """tone1's three 1 s windows are "whistle", tone0's and tone2's "negative"."""
  rows = [
    (f"tone{i}.wav", s, s + 1.0, "whistle" if i == 1 else "negative") for i in range(3) for s in range(3)
  ]
  return labels_csv(path, rows)
