"""SimCLR on the ESC-50 animal clips with their labels ignored; a linear probe trained on folds 1-4 and
tested on fold 5 shows whether pretraining helps (the same probe on the initial encoder is logged at step 0).

  python -m animaljax.train --config configs/simclr_esc50.py:cpu --workdir runs/simclr_esc50 \
      --config.data.root=../shared/data/esc50-animals

Pretraining reads folds 1-4 only, so fold 5 stays unseen until the probe tests on it. `:cpu` is CNN6 at
quarter width at 16 kHz, 600 steps of batch 32 (20 min on 2 shared CPU cores; measured: fold-5 probe 0.50 on
the random encoder at step 0, 0.34 at step 100, 0.54 at step 300, 0.65 at step 600 — see BENCHMARKS.md); the
default is CNN10 at half width. Temperature 0.2 is what the measured run used (0.1 was tried only for 150 steps).
"""

from __future__ import annotations

from configs import base, simclr_folder


def get_config(arg: str | None = None):
  words = base.parse_arg(arg, ("cpu", "smoke"))
  c = simclr_folder.simclr_recipe(base.get_config())
  c.data.source = "esc50"
  c.data.category = "animals"
  c.data.sample_rate = 16000
  c.data.clip_seconds = 5.0
  c.data.train_split = "fold1+fold2+fold3+fold4"
  c.data.eval_split = "fold5"
  c.model.encoder, c.model.width = "cnn10", 0.5
  c.model.dropout = False
  c.simclr.view_seconds = 2.0
  c.simclr.temperature = 0.2
  c.probe.train_split = "fold1+fold2+fold3+fold4"
  c.probe.eval_split = "fold5"
  c.train.batch_size = 64
  c.train.steps = 2000
  c.train.lr = 1e-3
  c.train.warmup_steps = 50
  c.eval.every_steps = 250
  c.checkpoint.every_steps = 250
  if "cpu" in words:
    c.model.encoder, c.model.width = "cnn6", 0.25
    c.train.batch_size = 32
    c.train.steps = 600
    c.eval.every_steps = 100
    c.checkpoint.every_steps = 100
  if "smoke" in words:
    base.apply_smoke(c)
    c.simclr.view_seconds = 0.4
    c.data.train_split = c.probe.train_split = "fold1"
    c.probe.eval_split = "fold5"
    c.probe.steps = 50
  return c
