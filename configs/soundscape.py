"""Multi-label detection on annotated field recordings: recordings + Raven selection tables (`--source raven`).

  python -m animaljax.train --config configs/soundscape.py --workdir runs/sites --config.data.root=/path/to/recs
  python -m animaljax.train --config configs/soundscape.py:cpu ...     # the CPU recipe (measured in BENCHMARKS.md)
  python -m animaljax.evaluate --model runs/sites --data runs/packed/raven-32k --split test
  python -m animaljax.evaluate --model runs/sites --raven /path/to/Test        # event-level, against the tables

The recordings are cut into `data.window_seconds` windows every `data.hop_seconds`; a class is on in a window
when one of its boxes overlaps it by `data.min_overlap_seconds` (default 0.5 s, or the whole box when shorter),
windows with no box are negatives. Whole recordings stay in one split (`Training/`, `Test/` folders are
honoured). Training: sigmoid BCE on the multi-hot targets, PANNs' balanced sampler (a class drawn uniformly,
then a window that has it; negatives count as one more class), mixup of the multi-hot targets, the best state by
validation mAP, and per-class thresholds of maximum F1 on validation kept with it for `predict` and the demo.
`:smoke` runs the same code on the built-in generator's annotated recordings in seconds.
"""

from __future__ import annotations

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  words = base.parse_arg(arg, ("cpu", "smoke"))
  c.data.source = "raven"
  c.data.sample_rate = 32000
  c.data.clip_mode = "window"
  c.data.window_seconds = c.data.clip_seconds = 5.0
  c.data.hop_seconds = 2.5
  c.model.encoder = "cnn14"
  c.train.loss = "bce"
  c.train.sampling = "balanced"
  c.train.mixup_alpha = 0.5
  c.train.steps = 5000
  c.train.batch_size = 32
  c.eval.metric = "mAP"
  c.eval.every_steps = c.checkpoint.every_steps = 250
  if "cpu" in words:
    c.data.sample_rate = 16000
    c.data.window_seconds = c.data.clip_seconds = 2.0
    c.data.hop_seconds = 1.0
    c.model.encoder, c.model.width, c.model.dropout = "cnn6", 0.25, False
    c.train.steps, c.train.warmup_steps = 900, 30
    c.train.lr, c.train.weight_decay, c.train.mixup_alpha = 3e-3, 0.01, 0.0
    c.train.label_smoothing = 0.0
    c.train.time_width = 32
    c.eval.every_steps = c.checkpoint.every_steps = 100
  if "smoke" in words:
    c.data.source = "synthetic"
    c.data.synthetic_multi_label = True
    base.apply_smoke(c)
    c.data.window_seconds = c.data.clip_seconds
    c.data.hop_seconds = 0.0
  return c
