"""ProtoNet on ESC-50 animals: episodic training on 5 classes, few-shot evaluation on the 5 held-out classes.

  python -m animaljax.train --config configs/protonet_esc50.py --workdir runs/protonet_esc50 \
      --config.data.root=../shared/data/esc50-animals

Classes (ESC-50 animal targets, relabelled 0..9 in target order): training 0 dog, 1 rooster, 2 pig, 3 cow,
4 frog; held out 5 cat, 6 hen, 7 insects, 8 sheep, 9 crow. The classes are disjoint, so every fold of both is
used: training episodes come from the 200 clips of classes 0-4, evaluation embeds the 400 clips once and scores
600 5-way 1-shot and 600 5-way 5-shot episodes (15 queries a class) on the 200 clips of classes 5-9, with the
raw mean log-mel nearest-prototype baseline on the same episodes. The evaluation runs once, at the last step
(eval.every_steps = train.steps): selecting a checkpoint on the held-out classes would leak them.

Start from a supervised or SimCLR run with `--config.model.init_from=<its workdir>` (its best or latest
checkpoint's encoder) or from a converted PANNs folder; a supervised run for this must not have trained on the
held-out classes (use `--config.data.category=dog,rooster,pig,cow,frog` there). Measured on 2 CPU cores
(BENCHMARKS.md): from `configs/cnn10_esc50.py:cpu` trained 300 steps on those 5 classes, 5-way 5-shot 52.4% +-
0.5 and 1-shot 38.9% +- 0.6 against the log-mel baseline's 36.5% and 30.5%; from scratch, 5-shot 39.4%.
"""

from __future__ import annotations

import ml_collections

from configs import base


def get_config(arg: str | None = None):
  c = base.get_config()
  c.trainer = "protonet"
  c.data.source = "esc50"
  c.data.category = "animals"
  c.data.sample_rate = 16000
  c.data.clip_seconds = 5.0
  c.data.train_split = "fold1+fold2+fold3+fold4+fold5"
  c.data.eval_split = "fold1+fold2+fold3+fold4+fold5"
  c.data.cv_fold = 0
  c.model.encoder = "cnn6"
  c.model.width = 0.25
  c.model.dropout = False
  c.train.steps = 300
  c.train.lr = 1e-3
  c.train.warmup_steps = 20
  c.train.weight_decay = 1e-4
  c.train.time_width = 32
  c.eval.every_steps = c.train.steps
  c.eval.batch_size = 32
  c.checkpoint.every_steps = 100

  c.protonet.n_way = 5  # training episodes: classes, support and query clips per class
  c.protonet.k_shot = 5
  c.protonet.q_queries = 5
  c.protonet.episodes_per_step = 1  # global: a multiple of the device count
  c.protonet.train_classes = (0, 1, 2, 3, 4)  # () = every class not in eval_classes
  c.protonet.eval_classes = (5, 6, 7, 8, 9)  # held out from training
  c.protonet.eval_ways = 5
  c.protonet.eval_shots = (1, 5)  # the last one is the loop's `accuracy`
  c.protonet.eval_queries = 15
  c.protonet.eval_episodes = 600
  c.protonet.eval_seed = 0
  if "smoke" in base.parse_arg(arg):
    smoke(c)
  return c


def smoke(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The seconds-long version on the synthetic source: 4 classes, 2 trained on, 2 held out."""
  base.apply_smoke(c)
  c.data.source, c.data.category = "synthetic", ""
  c.data.train_split = c.data.eval_split = "train"
  c.data.synthetic_classes = 4
  c.data.synthetic_clips_per_class = (6, 2, 0)
  c.protonet.n_way, c.protonet.k_shot, c.protonet.q_queries = 2, 2, 2
  c.protonet.train_classes, c.protonet.eval_classes = (0, 1), (2, 3)
  c.protonet.eval_ways, c.protonet.eval_shots = 2, (1, 2)
  c.protonet.eval_queries, c.protonet.eval_episodes = 2, 20
  c.eval.every_steps = c.train.steps
  return c
