"""Quickstart: the built-in synthetic calls (6 classes, 2 s at 16 kHz), packed on first use, a small CNN.

  python -m animaljax.train --config configs/quickstart.py --workdir runs/quickstart

Packs into <workdir>/../packed/synthetic (set --config.data.dir to choose), trains a CNN6 at quarter width
and evaluates on the validation split. `configs/quickstart.py:smoke` is the seconds-long test version.
"""

from __future__ import annotations

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  c.data.source = "synthetic"
  c.data.sample_rate = 16000
  c.data.clip_seconds = 2.0
  c.data.synthetic_classes = 6
  c.data.synthetic_clips_per_class = (48, 8, 8)
  c.data.synthetic_clip_seconds = 2.0
  c.model.encoder = "cnn6"
  c.model.width = 0.25
  c.model.dropout = False  # PANNs' dropouts (0.2 per block, 0.5 twice) only slow a model this small down
  c.train.batch_size = 32
  c.train.steps = 400
  c.train.lr = 2e-3
  c.train.warmup_steps = 10
  c.train.weight_decay = 1e-4
  c.train.time_width = 32
  c.eval.every_steps = 100
  c.eval.batch_size = 48
  c.checkpoint.every_steps = 100
  if "smoke" in base.parse_arg(arg):
    base.apply_smoke(c)
  return c
