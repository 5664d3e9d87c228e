"""CNN14 from scratch on ESC-50 (animal category by default), fold 5 held out.

  python -m animaljax.train --config configs/cnn14_esc50.py --workdir runs/cnn14_esc50 \
      --config.data.root=../shared/data/esc50-animals

Cross-validation: `--config.data.cv_fold=k` (k = 1..5) trains on the other four folds and evaluates on fold k;
run k = 1..5 in separate workdirs and average. Fine-tuning from PANNs' AudioSet weights is
`configs/cnn14_esc50_finetune.py`.
"""

from __future__ import annotations

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  c.data.source = "esc50"
  c.data.category = "animals"
  c.data.sample_rate = 32000
  c.data.clip_seconds = 5.0
  c.data.train_split = "fold1+fold2+fold3+fold4"
  c.data.eval_split = "fold5"
  c.data.cv_fold = 5
  c.model.encoder = "cnn14"
  c.model.width = 1.0
  c.train.batch_size = 32
  c.train.steps = 3000
  c.train.lr = 1e-3
  c.train.warmup_steps = 200
  c.train.mixup_alpha = 1.0  # PANNs' recipe: mixup of log-mel features
  c.train.optimizer = "adam_amsgrad"
  c.train.weight_decay = 0.0
  c.eval.every_steps = 250
  c.checkpoint.every_steps = 250
  if "smoke" in base.parse_arg(arg):
    base.apply_smoke(c)
  return c
