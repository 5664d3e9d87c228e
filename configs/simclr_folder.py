"""SimCLR pretraining on a folder of unlabelled recordings (`root/*.wav`, labels ignored), CNN14 at 32 kHz.

  python -m animaljax.train --config configs/simclr_folder.py --workdir runs/simclr_mine \
      --config.data.root=/path/to/recordings

Any folder layout the packer accepts works: loose files (label -1, all "train"), class folders (labels ignored)
and a `Noise/` folder, which becomes the "noise" split mixed into the views at 5-20 dB SNR. The linear probe is
off unless a labelled pack is given (`--config.probe.data_dir=<pack> --config.probe.train_split=train
--config.probe.eval_split=validation`). The encoder ends up in `<workdir>/encoder`, ready for
`--config.model.init_from=<workdir>/encoder` in a supervised or ProtoNet config with the same encoder, width and
sample rate. `:smoke` runs seconds on the built-in synthetic calls, with the probe on.
"""

from __future__ import annotations

from configs import base


def simclr_recipe(c):
  """The SimCLR trainer with its recipe's training settings (the `simclr`/`probe` sections' defaults are in
  `configs/base.py`); shared by every simclr_* config."""
  c.trainer = "simclr"
  c.eval.metric = "probe_accuracy"  # picks best/; the exported encoder is the last state
  c.train.lr = 1e-3
  c.train.weight_decay = 1e-4
  c.train.mixup_alpha = 0.0  # mixup has no meaning for SimCLR views
  return c


def apply_simclr_smoke(c):
  """`base.apply_smoke` plus views that fit its 0.5 s rows and the probe on the synthetic splits."""
  base.apply_smoke(c)
  c.data.source = "synthetic"
  c.data.sample_rate = 16000
  c.simclr.view_seconds = 0.4
  c.simclr.max_shift_seconds = 0.05
  c.simclr.proj_hidden, c.simclr.proj_dim = 32, 16
  c.probe.data_dir = ""
  c.probe.train_split, c.probe.eval_split = "train", "validation"
  c.probe.steps = 50
  return c


def get_config(arg: str | None = None):
  c = simclr_recipe(base.get_config())
  c.data.source = "folder"
  c.data.sample_rate = 32000
  c.data.clip_seconds = 5.0
  c.model.encoder = "cnn14"
  c.train.batch_size = 64  # negatives: 2 * batch - 2 per anchor, gathered over every device
  c.train.steps = 5000
  c.train.warmup_steps = 200
  c.eval.every_steps = 500
  c.checkpoint.every_steps = 500
  if "smoke" in base.parse_arg(arg):
    apply_simclr_smoke(c)
  return c
