"""Defaults shared by every experiment; each `configs/<x>.py` calls `get_config()` and overrides fields.

`apply_smoke(config)` shrinks any config to a seconds-long run (few steps, tiny model, short clips) that
still walks the real code path: tests and `--config configs/<x>.py:smoke` use it.
"""

from __future__ import annotations

import ml_collections

from animaljax.training import config


def get_config() -> ml_collections.ConfigDict:
  """Every section at its default: `data`, `model`, `train`, `eval`, `checkpoint`, `simclr`, `probe`, `protonet`.

  The fields, their defaults and what each means are defined once, typed, in `animaljax/training/config.py`
  (`RunConfig`); the trainers read only that typed form, so a default can never differ between here and there.
  """
  return ml_collections.ConfigDict(config.defaults())


def parse_arg(arg: str | None, valid: tuple[str, ...] = ("smoke",)) -> set[str]:
  """The words of a `configs/x.py:arg` argument (comma-separated), each checked exactly against `valid`.

  `configs/cnn10_esc50.py:cpu,smoke` -> {"cpu", "smoke"}; an unknown word is a ValueError naming the valid ones
  (a misspelt `:smok` must not silently run the full-size experiment).
  """
  words = {w.strip() for w in (arg or "").split(",") if w.strip()}
  unknown = sorted(words - set(valid))
  if unknown:
    raise ValueError(f"unknown config argument {unknown[0]!r}; valid: {', '.join(valid)} (comma-separated)")
  return words


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
