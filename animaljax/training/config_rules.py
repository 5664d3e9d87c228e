"""The numeric rules of a run config: key -> (test, what the message says is allowed).

Checked by `training.config.validate` before a trainer touches the disk: `train.steps=-5` "succeeding" with
nothing trained, a zero batch or cadence, a negative rate all fail there. Data only (no import of the config),
kept apart so config.py stays one readable page.
"""

from __future__ import annotations

import typing

# Numeric rules, key -> (test, what the message says is allowed). Checked before a trainer touches the disk:
# `train.steps=-5` "succeeding" with nothing trained, a zero batch or cadence, a negative rate all fail here.
RULES: dict[str, tuple[typing.Callable[[float], bool], str]] = {
  "data.sample_rate": (lambda v: 1000 <= v <= 768000, "an integer sample rate in 1000..768000 Hz"),
  "data.clip_seconds": (lambda v: v > 0, "> 0 seconds"),
  "data.window_seconds": (lambda v: v > 0, "> 0 seconds"),
  "data.cv_fold": (lambda v: 0 <= v <= 5, "0 (off) or a fold 1..5"),
  "data.worker_count": (lambda v: v >= 0, "an integer >= 0"),
  "data.synthetic_classes": (lambda v: v >= 1, "an integer >= 1"),
  "data.synthetic_clip_seconds": (lambda v: v > 0, "> 0 seconds"),
  "data.hop_seconds": (lambda v: v >= 0, ">= 0 seconds (0 = the window)"),
  "train.steps": (lambda v: v >= 1, "an integer >= 1"),
  "train.batch_size": (lambda v: v >= 1, "an integer >= 1"),
  "train.lr": (lambda v: v >= 0, ">= 0 (0 freezes the parameters)"),
  "train.warmup_steps": (lambda v: v >= 0, "an integer >= 0"),
  "train.weight_decay": (lambda v: v >= 0, ">= 0"),
  "train.grad_clip": (lambda v: v >= 0, ">= 0 (0 = off)"),
  "train.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
  "train.mixup_alpha": (lambda v: v >= 0, ">= 0 (0 = off)"),
  "train.focal_gamma": (lambda v: v >= 0, ">= 0"),
  "train.time_masks": (lambda v: v >= 0, "an integer >= 0"),
  "train.time_width": (lambda v: v >= 0, "an integer >= 0"),
  "train.freq_masks": (lambda v: v >= 0, "an integer >= 0"),
  "train.freq_width": (lambda v: v >= 0, "an integer >= 0"),
  "train.log_every": (lambda v: v >= 1, "an integer >= 1"),
  "train.halt_after": (lambda v: v >= 0, "an integer >= 0 (0 = off)"),
  "train.noise_p": (lambda v: 0 <= v <= 1, "in [0, 1] (0 = off)"),
  "train.max_noise_clips": (lambda v: v >= 1, "an integer >= 1"),
  "train.lowpass_p": (lambda v: 0 <= v <= 1, "in [0, 1] (0 = off)"),
  "train.shorten_p": (lambda v: 0 <= v <= 1, "in [0, 1] (0 = off)"),
  "train.speed_p": (lambda v: 0 <= v <= 1, "in [0, 1] (0 = off)"),
  "train.quantize_p": (lambda v: 0 <= v <= 1, "in [0, 1] (0 = off)"),
  "train.quantize_bits": (lambda v: 2 <= v <= 24, "an integer in [2, 24]"),
  "train.ema_decay": (lambda v: 0 <= v < 1, "in [0, 1) (0 = off)"),
  "simclr.max_noise_clips": (lambda v: v >= 1, "an integer >= 1"),
  "eval.every_steps": (lambda v: v >= 1, "an integer >= 1"),
  "eval.batch_size": (lambda v: v >= 1, "an integer >= 1"),
  "eval.early_stopping_patience": (lambda v: v >= 0, "an integer >= 0 (0 = off)"),
  "eval.threshold_precision": (lambda v: 0 <= v <= 1, "in [0, 1] (0 = maximum F1)"),
  "checkpoint.every_steps": (lambda v: v >= 1, "an integer >= 1"),
  "checkpoint.keep": (lambda v: v >= 1, "an integer >= 1"),
  "model.width": (lambda v: v > 0, "> 0"),
  "model.members": (lambda v: v >= 1, "an integer >= 1 (1 = one model)"),
  "model.depth": (lambda v: v >= 0, "an integer >= 0 (0 = the size's default)"),
  "simclr.temperature": (lambda v: v > 0, "> 0"),
  "simclr.view_seconds": (lambda v: v > 0, "> 0 seconds"),
  "simclr.noise_p": (lambda v: 0 <= v <= 1, "in [0, 1]"),
  "simclr.proj_hidden": (lambda v: v >= 1, "an integer >= 1"),
  "simclr.proj_dim": (lambda v: v >= 1, "an integer >= 1"),
  "probe.steps": (lambda v: v >= 1, "an integer >= 1"),
  "probe.lr": (lambda v: v > 0, "> 0"),
  "protonet.n_way": (lambda v: v >= 2, "an integer >= 2"),
  "protonet.k_shot": (lambda v: v >= 1, "an integer >= 1"),
  "protonet.q_queries": (lambda v: v >= 1, "an integer >= 1"),
  "protonet.episodes_per_step": (lambda v: v >= 1, "an integer >= 1"),
  "protonet.eval_ways": (lambda v: v >= 2, "an integer >= 2"),
  "protonet.eval_queries": (lambda v: v >= 1, "an integer >= 1"),
  "protonet.eval_episodes": (lambda v: v >= 1, "an integer >= 1"),
}
