"""Defaults shared by every experiment; each `configs/<x>.py` calls `get_config()` and overrides fields.

`apply_smoke(config)` shrinks any config to a seconds-long run (few steps, tiny model, short clips) that
still walks the real code path: tests and `--config configs/<x>.py:smoke` use it.
"""

from __future__ import annotations

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.trainer = "supervised"  # supervised | simclr | protonet (animaljax.train picks it from an explicit dict)

  c.data = ml_collections.ConfigDict()
  c.data.dir = ""  # packed dataset folder; "" = <workdir>/../packed/<source> (packed on first use)
  c.data.source = "synthetic"  # folder | esc50 | csv | synthetic (animaljax.data.sources.SOURCES)
  c.data.root = ""  # corpus folder (folder, esc50) or manifest (csv) for packing on first use
  c.data.category = ""  # esc50: "animals" or comma-separated category names; "" = every class
  c.data.sample_rate = 32000
  c.data.clip_seconds = 5.0  # training row length (random crops of longer clips, zero-padding of shorter)
  c.data.train_split = "train"  # a split or "+"-joined splits
  c.data.eval_split = "validation"
  c.data.cv_fold = 0  # esc50: 1..5 holds that fold out (train on the other four); 0 = use the splits above
  c.data.pack_on_first_use = True
  c.data.file_format = "tfrecord"
  c.data.clip_mode = "keep"  # packing: keep whole clips or cut `window_seconds` windows
  c.data.window_seconds = 5.0
  c.data.synthetic_classes = 6  # synthetic source only
  c.data.synthetic_clips_per_class = (48, 8, 8)  # synthetic: (train, validation, test) clips per class
  c.data.synthetic_clip_seconds = 2.0
  c.data.worker_count = 0  # grain worker processes

  c.model = ml_collections.ConfigDict()
  c.model.encoder = "cnn14"  # cnn6 | cnn10 | cnn14 | ast
  c.model.width = 1.0  # CNN channel multiplier
  c.model.size = "base"  # AST: tiny | small | base
  c.model.depth = 0  # AST: transformer blocks (0 = the size's default)
  c.model.remat = ""  # AST: "" (off) | nothing_saveable | dots_saveable: recompute activations, save memory
  c.model.dropout = True
  c.model.dtype = "float32"  # compute dtype (float32 | bfloat16); parameters stay float32
  c.model.init_from = ""  # a converted PANNs/AST directory (`python -m animaljax.convert`)
  c.model.keep_head = False  # also take the converted head (only when the classes are the same)

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 32  # global: split over every device of every process
  c.train.steps = 2000
  c.train.lr = 1e-3
  c.train.warmup_steps = 100
  c.train.schedule = "cosine"  # cosine | constant (both after a linear warm-up)
  c.train.weight_decay = 1e-4
  c.train.optimizer = "adamw"  # adamw | adam_amsgrad (PANNs)
  c.train.grad_clip = 1.0  # global-norm clip; 0 = off
  c.train.label_smoothing = 0.0
  c.train.mixup_alpha = 0.0  # Beta(alpha, alpha) mixup of features and targets; 0 = off
  c.train.specaugment = True
  c.train.time_masks = 2
  c.train.time_width = 64  # frames
  c.train.freq_masks = 2
  c.train.freq_width = 8  # mel bins
  c.train.loss = "softmax"  # softmax | bce | focal
  c.train.focal_gamma = 2.0
  c.train.class_weights = "none"  # none | balanced (inverse training-split class frequency)
  c.train.sampling = (
    "uniform"  # uniform | balanced (draw examples with weight 1/count(class), with replacement)
  )
  c.train.on_nonfinite = "stop"  # stop | skip (keep the previous params/optimizer state for that step)
  c.train.seed = 0
  c.train.log_every = 10  # steps between host syncs (loss check, progress bar, train_log.jsonl)
  c.train.log_indices = False  # log each step's data `index` to train_log.jsonl (tests the data order)
  c.train.halt_after = 0  # > 0: stop after this step without a final save, like a crash (resume tests)

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 200
  c.eval.metric = "accuracy"  # accuracy | macro_f1 | weighted_f1 | mAP | loss: picks the best checkpoint
  c.eval.batch_size = 32
  c.eval.early_stopping_patience = 0  # stop after this many evaluations without a better eval.metric; 0 = off

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 200
  c.checkpoint.keep = 2  # last K checkpoints (the best one is kept apart in <workdir>/best)
  c.checkpoint.async_save = True  # ("async" is a Python keyword, so not a usable attribute name)

  c.smoke = False
  return c


def apply_smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks `c` in place (and returns it): a tiny CNN, short clips, a few steps, frequent evals/checkpoints."""
  c.smoke = True
  if c.model.encoder == "ast":
    c.model.size, c.model.depth = "tiny", 1
  else:
    c.model.encoder, c.model.width = "cnn6", 1 / 16
  c.data.clip_seconds = 0.5
  c.data.synthetic_classes = 3
  c.data.synthetic_clips_per_class = (8, 4, 0)
  c.data.synthetic_clip_seconds = 1.0
  c.train.batch_size = 8
  c.train.steps = 6
  c.train.warmup_steps = 1
  c.train.log_every = 1
  c.train.time_width, c.train.freq_width = 8, 4
  c.eval.every_steps = 3
  c.eval.batch_size = 8
  c.checkpoint.every_steps = 3
  return c
