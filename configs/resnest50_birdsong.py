"""ResNeSt-50 on log-mel, multi-label bird song (BirdCLEF's `train_metadata.csv`): the Kaggle bird-song recipe.

  python -m animaljax.train --config configs/resnest50_birdsong.py --workdir runs/birdsong \
      --config.data.root=/path/to/birdclef/train_metadata.csv
  # from ImageNet weights (timm `resnest50d`, first conv summed to one channel):
  python -m animaljax.convert imagenet --checkpoint resnest50d.safetensors --encoder resnest50 \
      --out converted/resnest50
  python -m animaljax.train --config configs/resnest50_birdsong.py:imagenet ...   # reads converted/resnest50
  python -m animaljax.evaluate --model runs/birdsong --data runs/packed/csv-32k --split test

The Kaggle bird-call recipe trains an ImageNet ResNeSt-50 on mel spectrograms of 5 s crops of each recording
(32 kHz), with a sigmoid BCE over the species and the secondary labels as extra positives. Here: the csv
source reads BirdCLEF's metadata as it is (primary + secondary labels, multi-hot), each training row is a random
5 s crop of a recording, timm's `resnest50d` layer for layer over PANNs' log-mel with `bn0` in front
(`models/imagenet_resnet.py`), sigmoid BCE, PANNs' balanced sampler (rare species are drawn as often as common
ones), mixup of log-mel and multi-hot targets, SpecAugment, AdamW with a cosine schedule, and the best state
by BirdCLEF's own metric (padded cmAP) with per-class thresholds kept for `predict`. `:imagenet` starts from
converted ImageNet weights at a 10x lower rate; `:cpu` is a quarter-width ResNeSt at 16 kHz from scratch on
2 s crops (ImageNet weights need width 1, so `cpu` and `imagenet` do not combine); `:smoke` runs the same
ResNeSt code path, 1/16 wide, on the built-in generator's multi-label recordings in seconds.
"""

from __future__ import annotations

from configs import base

IMAGENET_DIR = "converted/resnest50"  # `python -m animaljax.convert imagenet ... --out converted/resnest50`


def get_config(arg: str | None = None):
  words = base.parse_arg(arg, ("cpu", "imagenet", "smoke"))
  if {"cpu", "imagenet"} <= words:
    raise ValueError(
      "resnest50_birdsong: ImageNet weights need the full-width ResNeSt-50; use :imagenet alone"
    )
  c = base.get_config()
  c.data.source = "csv"  # BirdCLEF's train_metadata.csv: primary_label, secondary_labels, filename
  c.data.sample_rate = 32000
  c.data.clip_seconds = 5.0  # training rows are random 5 s crops of each recording
  c.model.encoder = "resnest50"
  c.model.width = 1.0
  c.model.dropout = True
  c.train.loss = "bce"
  c.train.sampling = "balanced"
  c.train.mixup_alpha = 0.5
  c.train.specaugment = True
  c.train.optimizer = "adamw"
  c.train.schedule = "cosine"
  c.train.lr = 1e-3
  c.train.weight_decay = 0.01
  c.train.warmup_steps = 500
  c.train.steps = 20_000
  c.train.batch_size = 32
  c.eval.metric = "cmAP_padded"
  c.eval.every_steps = c.checkpoint.every_steps = 1000
  if "imagenet" in words:
    c.model.init_from = IMAGENET_DIR
    c.model.keep_head = False
    c.train.lr = 1e-4
  if "cpu" in words:
    c.data.sample_rate = 16000
    c.data.clip_seconds = 2.0
    c.model.width, c.model.dropout = 0.25, False
    c.train.steps, c.train.warmup_steps = 900, 30
    c.train.lr, c.train.mixup_alpha = 3e-3, 0.0
    c.eval.every_steps = c.checkpoint.every_steps = 100
  if "smoke" in words:
    c.data.source = "synthetic"
    c.data.synthetic_multi_label = True
    base.apply_smoke(c)  # swaps in CNN6: put the ResNeSt back, tiny and from scratch
    c.model.encoder, c.model.width, c.model.init_from = "resnest50", 1 / 16, ""
    c.data.clip_mode = "window"
    c.data.window_seconds = c.data.clip_seconds
  return c
