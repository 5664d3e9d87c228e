"""ResNet18 on PANNs log-mel "images", ESC-50 animals (fold 5 held out): the ESC-50 spectrogram-ResNet recipe.

  python -m animaljax.train --config configs/resnet18_esc50.py --workdir runs/resnet18_esc50 \
      --config.data.root=../shared/data/esc50-animals
  # from ImageNet weights (timm/torchvision `resnet18`, first conv summed to one channel):
  python -m animaljax.convert imagenet --checkpoint resnet18.safetensors --encoder resnet18 --out converted/resnet18
  python -m animaljax.train --config configs/resnet18_esc50.py:imagenet --workdir runs/resnet18_esc50_in \
      --config.data.root=../shared/data/esc50-animals   # reads converted/resnet18 (or --config.model.init_from=DIR)

The model is timm's ResNet18 layer for layer over the 32 kHz log-mel (64 mels, 10 ms hop; a 5 s clip is a
501 x 64 image) with `bn0` in front and a new 0.5-dropout head (`models/imagenet_resnet.py`). Recipe as the
ESC-50 CNN14 one (same corpus, folds, mixup and SpecAugment) with AdamW and a cosine schedule, which suit a
BatchNorm ResNet; `:imagenet` starts the encoder from converted ImageNet weights at a 10x lower rate (the
features need adjusting, not relearning). `:cpu` is a quarter-width ResNet18 at 16 kHz from scratch, the size
that trains on a 2-core CPU (ImageNet weights need width 1, so `cpu` and `imagenet` do not combine); `:smoke`
runs the same ResNet18 code path at 1/16 width in seconds.
"""

from __future__ import annotations

from configs import base, cnn14_esc50

IMAGENET_DIR = "converted/resnet18"  # `python -m animaljax.convert imagenet ... --out converted/resnet18`


def get_config(arg: str | None = None):
  words = base.parse_arg(arg, ("cpu", "imagenet", "smoke"))
  if {"cpu", "imagenet"} <= words:
    raise ValueError(
      "resnet18_esc50: ImageNet weights need the full-width ResNet18; use :imagenet without cpu"
    )
  c = cnn14_esc50.get_config()  # same corpus, category, folds; smoke is applied last
  c.model.encoder = "resnet18"
  c.model.width = 1.0
  c.model.dropout = True
  c.train.batch_size = 32
  c.train.optimizer = "adamw"
  c.train.schedule = "cosine"
  c.train.lr = 1e-3
  c.train.weight_decay = 0.01  # decoupled (multiplied by the rate)
  c.train.warmup_steps = 100
  c.train.steps = 3000
  c.train.mixup_alpha = 0.3  # mild on 320 clips (see cnn10_esc50)
  c.train.label_smoothing = 0.1
  c.train.specaugment = True
  if "imagenet" in words:
    c.model.init_from = IMAGENET_DIR
    c.model.keep_head = False  # ImageNet's head is dropped by the converter; ESC-50's classes get a new one
    c.train.lr = 1e-4
    c.train.steps = 1500
  if "cpu" in words:
    c.data.sample_rate = 16000  # half the samples; the same 100 frames/s x 64 mels image
    c.model.width = 0.25
    c.model.dropout = False
    c.train.mixup_alpha = 0.0
    c.train.lr = 3e-3
    c.train.warmup_steps = 30
    c.train.steps = 600
  if "smoke" in words:
    base.apply_smoke(c)  # swaps in CNN6: put the ResNet18 back, tiny and from scratch
    c.model.encoder, c.model.width, c.model.init_from = "resnet18", 1 / 16, ""
  return c
