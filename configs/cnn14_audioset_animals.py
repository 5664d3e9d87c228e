"""CNN14 on AudioSet's animal subtree, multi-label: the PANNs animal-subset recipe (Kong et al. 2020).

  python -m animaljax.train --config configs/cnn14_audioset_animals.py --workdir runs/audioset_animals \
      --config.data.root=/path/to/audioset      # segment csvs, class_labels_indices.csv, ontology.json + clips
  python -m animaljax.evaluate --model runs/audioset_animals --data runs/packed/audioset-Animal-32k --split test

`--source audioset --category Animal` keeps every class under "Animal" in the ontology (transitively), remapped
to 0..N-1 with their names and ontology ids; clips not downloaded are counted and listed, never fatal. The
balanced training segments train (a validation split carved from them by YouTube id), the eval segments are
the test split, scored once. Recipe as PANNs: 32 kHz, 10 s clips, CNN14, the balanced sampler (a class drawn
uniformly, then a clip that has it), mixup (alpha 1.0) of waveform features and multi-hot targets, sigmoid BCE,
Adam (amsgrad) at 1e-3, the best state by validation mAP. PANNs report 0.551-0.561 mAP on the animal subset
after training on the full (unbalanced) AudioSet: set `data.include_unbalanced=True` to pack it too. `:smoke`
runs the same code path on the built-in generator's annotated multi-label recordings in seconds.
"""

from __future__ import annotations

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  words = base.parse_arg(arg, ("smoke",))
  c.data.source = "audioset"
  c.data.category = "Animal"
  c.data.sample_rate = 32000
  c.data.clip_seconds = 10.0
  c.data.short_clips = "pad"  # AudioSet clips are 10 s; the few shorter ones are zero-padded as PANNs does
  c.model.encoder = "cnn14"
  c.train.loss = "bce"
  c.train.sampling = "balanced"
  c.train.mixup_alpha = 1.0
  c.train.optimizer = "adam_amsgrad"
  c.train.lr = 1e-3
  c.train.weight_decay = 0.0
  c.train.warmup_steps = 1000
  c.train.steps = 100_000
  c.train.batch_size = 32
  c.train.grad_clip = 0.0
  c.eval.metric = "mAP"
  c.eval.every_steps = c.checkpoint.every_steps = 2000
  if "smoke" in words:
    c.data.source, c.data.category = "synthetic", ""
    c.data.synthetic_multi_label = True
    base.apply_smoke(c)
    c.data.clip_mode = "window"
    c.data.window_seconds = c.data.clip_seconds
  return c
