"""Checks of an experiment config's values, run before a trainer touches the disk or a device.

`validate(c)` refuses every value that would make a run fail late, train nothing, or run away (`train.steps=-5`
"succeeding" with nothing trained, a zero batch, a negative learning rate, a cadence of 0 steps): each with a
ValueError naming the key, the value and what is allowed. Enumerated choices are checked by the trainers
against their own tables (`supervised.resolve_config`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import ml_collections


def _check(c: ml_collections.ConfigDict, key: str, ok: Callable[[float], bool], what: str) -> None:
  section, name = key.split(".")
  if section not in c or name not in c[section]:
    return  # a section this trainer's config does not have
  value = c[section][name]
  is_number = isinstance(value, int | float) and not isinstance(value, bool)
  if not is_number or not math.isfinite(value) or not ok(value):
    raise ValueError(f"{key} must be {what}, got {value!r}")


def _integer(v) -> bool:
  return float(v).is_integer()


# key -> (test, what the message says is allowed)
_RULES: dict[str, tuple[Callable[[float], bool], str]] = {
  "data.sample_rate": (
    lambda v: _integer(v) and 1000 <= v <= 768000,
    "an integer sample rate in 1000..768000 Hz",
  ),
  "data.clip_seconds": (lambda v: v > 0, "> 0 seconds"),
  "data.window_seconds": (lambda v: v > 0, "> 0 seconds"),
  "data.cv_fold": (lambda v: _integer(v) and 0 <= v <= 5, "0 (off) or a fold 1..5"),
  "data.worker_count": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
  "train.steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "train.batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "train.lr": (lambda v: v > 0, "> 0"),
  "train.warmup_steps": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
  "train.weight_decay": (lambda v: v >= 0, ">= 0"),
  "train.grad_clip": (lambda v: v >= 0, ">= 0 (0 = off)"),
  "train.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
  "train.mixup_alpha": (lambda v: v >= 0, ">= 0 (0 = off)"),
  "train.focal_gamma": (lambda v: v >= 0, ">= 0"),
  "train.time_masks": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
  "train.time_width": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
  "train.freq_masks": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
  "train.freq_width": (lambda v: _integer(v) and v >= 0, "an integer >= 0"),
  "train.log_every": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "train.halt_after": (lambda v: _integer(v) and v >= 0, "an integer >= 0 (0 = off)"),
  "eval.every_steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "eval.batch_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "eval.early_stopping_patience": (lambda v: _integer(v) and v >= 0, "an integer >= 0 (0 = off)"),
  "checkpoint.every_steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "checkpoint.keep": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "model.width": (lambda v: v > 0, "> 0"),
  "model.depth": (lambda v: _integer(v) and v >= 0, "an integer >= 0 (0 = the size's default)"),
  "simclr.temperature": (lambda v: v > 0, "> 0"),
  "simclr.view_seconds": (lambda v: v > 0, "> 0 seconds"),
  "simclr.noise_p": (lambda v: 0 <= v <= 1, "in [0, 1]"),
  "probe.steps": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "probe.lr": (lambda v: v > 0, "> 0"),
  "protonet.n_way": (lambda v: _integer(v) and v >= 2, "an integer >= 2"),
  "protonet.k_shot": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "protonet.q_queries": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "protonet.episodes_per_step": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "protonet.eval_ways": (lambda v: _integer(v) and v >= 2, "an integer >= 2"),
  "protonet.eval_queries": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
  "protonet.eval_episodes": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
}


def validate(c: ml_collections.ConfigDict) -> None:
  """Raises ValueError for the first out-of-range numeric value of `c` (see `_RULES`)."""
  for key, (ok, what) in _RULES.items():
    _check(c, key, ok, what)
