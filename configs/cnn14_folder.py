"""CNN14 on a user's class-per-folder data (`root/<class>/*.wav`), split 80/10/10 by the packer.

python -m animaljax.train --config configs/cnn14_folder.py --workdir runs/mine --config.data.root=/path/to/clips
"""

from __future__ import annotations

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  c.data.source = "folder"
  c.data.sample_rate = 32000
  c.data.clip_seconds = 5.0
  c.model.encoder = "cnn14"
  c.train.steps = 3000
  c.train.class_weights = "balanced"  # user folders are rarely balanced
  c.train.mixup_alpha = 1.0
  if "smoke" in base.parse_arg(arg):
    base.apply_smoke(c)
  return c
