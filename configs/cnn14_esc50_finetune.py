"""CNN14 fine-tuned from PANNs' AudioSet weights on ESC-50 animals (fold 5 held out).

  python -m animaljax.convert panns --checkpoint Cnn14_mAP=0.431.pth --out converted/cnn14 --no-keep-head
  python -m animaljax.train --config configs/cnn14_esc50_finetune.py --workdir runs/cnn14_esc50_ft \
      --config.data.root=../shared/data/esc50-animals --config.model.init_from=converted/cnn14

The encoder (and its BatchNorm statistics) start from the converted checkpoint; the head is new (AudioSet's
527 classes are not ESC-50's), so `keep_head=False`. The rate is 10x below training from scratch: the
pretrained features need adjusting, not relearning.
"""

from __future__ import annotations

from configs import base, cnn14_esc50


def get_config(arg: str | None = None):
  c = cnn14_esc50.get_config()  # the experiment as trained from scratch, unshrunk; smoke is applied last
  c.model.init_from = "converted/cnn14"  # `python -m animaljax.convert panns ... --out converted/cnn14`
  c.model.keep_head = False
  c.train.lr = 1e-4
  c.train.warmup_steps = 50
  c.train.steps = 1000
  c.eval.every_steps = 100
  c.checkpoint.every_steps = 100
  if "smoke" in base.parse_arg(arg):
    base.apply_smoke(c)
  return c
