"""AST fine-tuned from AudioSet weights on ESC-50 animals (fold 5 held out), 16 kHz Kaldi fbank.

  python -m animaljax.convert ast --checkpoint audioset_10_10_0.4593.pth --out converted/ast \
      --input-frames 498 --no-keep-head
  python -m animaljax.train --config configs/ast_esc50_finetune.py --workdir runs/ast_esc50_ft \
      --config.data.root=../shared/data/esc50-animals --config.model.init_from=converted/ast

`--input-frames 498` lays the positional embedding out for 5 s clips (498 fbank frames at a 10 ms hop), as
the config's `data.clip_seconds`; the head is new (`keep_head=False`). AST's ESC-50 recipe fine-tunes at 1e-5.
"""

from __future__ import annotations

from configs import ast_esc50, base


def get_config(arg: str | None = None):
  c = ast_esc50.get_config()  # unshrunk; smoke is applied last so it wins over the fine-tuning schedule
  c.model.init_from = "converted/ast"  # `python -m animaljax.convert ast ... --out converted/ast`
  c.model.keep_head = False
  c.train.lr = 1e-5
  c.train.warmup_steps = 100
  c.train.steps = 1500
  c.eval.every_steps = 100
  c.checkpoint.every_steps = 100
  if "smoke" in base.parse_arg(arg):
    base.apply_smoke(c)
  return c
