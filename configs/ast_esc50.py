"""AST on ESC-50 animals (fold 5 held out), 16 kHz Kaldi fbank, from scratch; `ast_esc50_finetune.py` starts
from AudioSet weights.

  python -m animaljax.train --config configs/ast_esc50.py --workdir runs/ast_esc50 \
      --config.data.root=../shared/data/esc50-animals
"""

from __future__ import annotations

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  c.data.source = "esc50"
  c.data.category = "animals"
  c.data.sample_rate = 16000
  c.data.clip_seconds = 5.0
  c.data.train_split = "fold1+fold2+fold3+fold4"
  c.data.eval_split = "fold5"
  c.data.cv_fold = 5
  c.model.encoder = "ast"
  c.model.size = "base"
  c.train.batch_size = 16
  c.train.steps = 2000
  c.train.lr = 5e-5  # AST's ESC-50 recipe is fine-tuning at a small rate
  c.train.warmup_steps = 100
  c.train.weight_decay = 5e-7
  c.train.mixup_alpha = 0.0
  c.train.time_width, c.train.freq_width = 96, 24  # AST's time/freq masking on 128 bins
  c.train.time_masks = c.train.freq_masks = 1
  c.eval.batch_size = 16
  if "smoke" in base.parse_arg(arg):
    base.apply_smoke(c)
  return c
