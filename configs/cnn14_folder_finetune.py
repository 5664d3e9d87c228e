"""CNN14 fine-tuned from PANNs' AudioSet weights on a user's class-per-folder data (`root/<class>/*.wav`).

  python -m animaljax.convert panns --checkpoint Cnn14_mAP=0.431.pth --out converted/cnn14 --no-keep-head
  python -m animaljax.train --config configs/cnn14_folder_finetune.py --workdir runs/mine_ft \
      --config.data.root=/path/to/clips

The encoder starts from the converted checkpoint at `converted/cnn14` (the path the README's convert command
writes; `--config.model.init_from=...` points elsewhere); the head is new. The rate is 10x below training from
scratch: the pretrained features need adjusting, not relearning.
"""

from __future__ import annotations

from configs import base, cnn14_folder


def get_config(arg: str | None = None):
  c = cnn14_folder.get_config()  # unshrunk; smoke is applied last
  c.model.init_from = "converted/cnn14"
  c.model.keep_head = False
  c.train.lr = 1e-4
  c.train.steps = 1000
  if "smoke" in base.parse_arg(arg):
    base.apply_smoke(c)
  return c
