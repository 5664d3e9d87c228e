"""The experiment config, typed: every section's fields and defaults, all validation, run config -> model config.

An experiment file (`configs/<x>.py`) builds an `ml_collections.ConfigDict` (from `defaults()`, through
`configs/base.py`) and the command line overrides it; `parse` turns it into a frozen `RunConfig` once, refusing
unknown keys and impossible values, and `resolve` fills in what derives from the workdir (the pack folder,
cross-validation splits). Trainers, step builders and the loop see only these dataclasses, never a ConfigDict.

Sections: `data`, `model`, `train`, `eval`, `checkpoint` (every trainer), `simclr` + `probe` (trainer "simclr"),
`protonet` (trainer "protonet"). Each field's comment is its documentation; `configs/base.py` shows them all.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import re
from collections.abc import Mapping
from typing import Any

from animaljax.training import typed
from animaljax.training.config_rules import RULES

TRAINERS = ("supervised", "simclr", "protonet")
SUPERVISED_METRICS = ("accuracy", "macro_f1", "weighted_f1", "mAP", "loss")
# On a multi-label pack (independent classes): what `metrics.multilabel_report` computes.
MULTILABEL_METRICS = ("mAP", "cmAP_padded", "micro_AP", "roc_auc", "lwlrap", "f1", "macro_f1", "loss")
SIMCLR_METRICS = ("probe_accuracy", "probe_train_accuracy")  # with the linear probe on


@dataclasses.dataclass(frozen=True)
class DataConfig:
  dir: str = ""  # packed dataset folder; "" = <workdir>/../packed/<source> (packed on first use)
  source: str = "synthetic"  # folder | esc50 | csv | synthetic (animaljax.data.sources.SOURCES)
  root: str = ""  # corpus folder (folder, esc50) or manifest (csv) for packing on first use
  category: str = ""  # esc50: a group (animals, natural, ...) or comma-separated category names; "" = all
  sample_rate: int = 32000
  clip_seconds: float = 5.0  # the model's window: training rows are random crops of longer clips
  # How a clip shorter than the window becomes one, in training, evaluation and every command that runs the
  # model (`audio.windows.fit_short`): "loop" repeats it end to end, "pad" zero-pads it, "mask" zero-pads it and
  # the CNN pools only over the clip's own frames (`CnnConfig.pool_mask`). Saved with the model.
  # Measured (BENCHMARKS.md, "Short clips"): on ESC-50 animals cut to 0.3-5 s, looping beat zero-padding on the
  # validation fold in both seeds (83.1% vs 80.0% mean on the held-out test fold).
  short_clips: str = "loop"
  train_split: str = "train"  # a split or "+"-joined splits
  eval_split: str = "validation"
  cv_fold: int = 0  # esc50: 1..5 holds that fold out (train on the other four); 0 = use the splits above
  # Packing: clips of one recording stay in one carved split. A regex on the file name (its first group or whole
  # match is the recording); "" = the source's default (none for a folder, the csv's `group` column, ESC-50's
  # src_file). Exact-duplicate audio is always kept together.
  group_by: str = ""
  pack_on_first_use: bool = True
  file_format: str = "tfrecord"  # tfrecord | array_record
  clip_mode: str = "keep"  # packing: keep whole clips or cut `window_seconds` windows
  window_seconds: float = 5.0
  hop_seconds: float = 0.0  # packing windows: seconds between window starts; 0 = window_seconds (no overlap)
  synthetic_classes: int = 6  # synthetic source only
  synthetic_clips_per_class: tuple[int, ...] = (48, 8, 8)  # synthetic: (train, validation, test) per class
  synthetic_clip_seconds: float = 2.0
  synthetic_multi_label: bool = (
    False  # synthetic: annotated 3-clip recordings with 0-3 calls each (multi-label)
  )
  # raven (recordings + Raven selection tables; pack them with clip_mode="window"): the tables' label column
  # ("" = the first of Species, Annotation, Label, Class); the seconds a box must overlap a window to switch its
  # class on (< 0 = the source's default, 0.5); the labels to keep (comma-separated, "" = all); a recording
  # without a table: "" or "reject" refuses it, "negative" packs its windows as negatives.
  include_unbalanced: bool = (
    False  # audioset: also pack unbalanced_train_segments.csv's downloaded clips as train
  )
  label_column: str = ""
  min_overlap_seconds: float = -1.0
  classes: str = ""
  unannotated: str = ""
  worker_count: int = 0  # grain worker processes


# (low, high) settings: both finite, low <= high (checked by `validate` and when a run resolves its config)
_RANGES = (
  "train.noise_snr_db",
  "simclr.noise_snr_db",
  "simclr.gain_db",
  "train.shorten_seconds",
  "train.speed_range",
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  encoder: str = "cnn14"  # cnn6 | cnn10 | cnn14 | ast
  width: float = 1.0  # CNN channel multiplier
  size: str = "base"  # AST: tiny | small | base
  depth: int = 0  # AST: transformer blocks (0 = the size's default)
  remat: str = ""  # AST: "" (off) | nothing_saveable | dots_saveable: recompute activations, save memory
  dropout: bool = True
  # CNNs: standardise each input's log-mel (its own mean and std over time and mel bins) before `bn0`, so the
  # recording's gain and level do not reach the network; the same in training, evaluation and prediction.
  clip_norm: bool = False
  dtype: str = "float32"  # compute dtype (float32 | bfloat16); parameters stay float32
  # PANNs CNNs / wavegrams: clip | decision_max | decision_att (framewise output, `models.sed`; the loss reads
  # the clip-wise output, as PANNs trains them)
  head: str = "clip"
  # > 1: an ensemble of this many encoders + heads, initialised apart and trained side by side in one step
  # (`models.ensemble`); evaluation, export and prediction use their mean logits. CNN/ResNet/MobileNet encoders
  # with the clip head, supervised trainer only. N times the compute.
  members: int = 1
  # Where the weights start: a converted PANNs/AST dir (`python -m animaljax.convert`), a training workdir
  # (its best state) or a SimCLR run's `encoder/`; every trainer takes the same three. "" = random init.
  init_from: str = ""
  keep_head: bool = False  # also take the head (only when the classes are the same)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  batch_size: int = 32  # global: split over every device of every process
  steps: int = 2000
  lr: float = 1e-3
  warmup_steps: int = 100
  schedule: str = "cosine"  # cosine | constant (both after a linear warm-up)
  weight_decay: float = 1e-4
  optimizer: str = "adamw"  # adamw | adam_amsgrad (PANNs)
  grad_clip: float = 1.0  # global-norm clip; 0 = off
  label_smoothing: float = 0.0
  mixup_alpha: float = 0.0  # Beta(alpha, alpha) mixup of features and targets; 0 = off
  specaugment: bool = True
  time_masks: int = 2
  time_width: int = 64  # frames
  freq_masks: int = 2
  freq_width: int = 8  # mel bins
  loss: str = "softmax"  # softmax | bce | focal
  focal_gamma: float = 2.0
  class_weights: str = "none"  # none | balanced (inverse training-split class frequency)
  sampling: str = "uniform"  # uniform | balanced (draw examples with weight 1/count(class), with replacement)
  on_nonfinite: str = "stop"  # stop | skip (keep the previous params/optimizer state for that step)
  # Background noise mixed into training clips (never into evaluation), on the device at an exact SNR: each
  # example gets a random clip of the pack's `noise_split` with probability `noise_p`, at an SNR uniform in
  # `noise_snr_db`. 0 = off. A pack gets a noise split from a `Noise/` folder (see `python -m animaljax.pack`).
  noise_p: float = 0.0
  noise_snr_db: tuple[float, ...] = (5.0, 20.0)
  noise_split: str = "noise"
  max_noise_clips: int = 64  # noise clips kept on the device
  # Band-limiting, for corpora that mix native sample rates: each training example loses everything above a
  # cutoff drawn from `lowpass_hz` with probability `lowpass_p` (after the noise mixing), as a clip recorded at
  # a lower rate does. Cutoffs at or above the model's Nyquist do nothing. 0 = off; never in evaluation.
  lowpass_p: float = 0.0
  lowpass_hz: tuple[float, ...] = (4000.0, 5512.5, 8000.0)
  # Short clips from every clip: each training example becomes, with probability `shorten_p`, a random segment
  # of `shorten_seconds` (low, high) looped or zero-padded back to the row by `data.short_clips`, the input a
  # short clip gets (before the noise mixing). 0 = off; never in evaluation.
  shorten_p: float = 0.0
  shorten_seconds: tuple[float, ...] = (0.25, 2.0)
  # Speed perturbation: each training example is played faster or slower by a factor drawn log-uniformly from
  # `speed_range` with probability `speed_p` (pitch and tempo together; first of all). 0 = off; never in evaluation.
  speed_p: float = 0.0
  speed_range: tuple[float, ...] = (0.85, 1.18)
  # Low bit depth: each training example is rounded to `quantize_bits`-bit PCM with probability `quantize_p`
  # (last, after noise and band-limiting), as a clip from a cheap recorder is. 0 = off; never in evaluation.
  quantize_p: float = 0.0
  quantize_bits: int = 8
  # Exponential moving average of the parameters (`ema = d * ema + (1 - d) * params` after every update);
  # evaluation, the best state and so every export and prediction use the average. 0 = off.
  ema_decay: float = 0.0
  seed: int = 0
  log_every: int = 10  # steps between host syncs (loss check, progress bar, train_log.jsonl)
  log_indices: bool = False  # log each step's data `index` to train_log.jsonl (tests the data order)
  halt_after: int = 0  # > 0: stop after this step without a final save, like a crash (resume tests)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  every_steps: int = 200
  metric: str = "accuracy"  # picks the best state; supervised: accuracy | macro_f1 | weighted_f1 | mAP | loss (multi-label: mAP | lwlrap | ...)
  batch_size: int = 32
  early_stopping_patience: int = 0  # stop after this many evaluations without a better eval.metric; 0 = off
  # Multi-label: per-class thresholds kept with the best state. 0 = the threshold of maximum validation F1; else
  # the lowest threshold reaching this validation precision (maximum recall at that precision).
  threshold_precision: float = 0.0


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
  every_steps: int = 200
  keep: int = 2  # last K checkpoints (the best one is kept apart in <workdir>/best)
  async_save: bool = True  # ("async" is a Python keyword, so not a usable attribute name)


@dataclasses.dataclass(frozen=True)
class SimclrConfig:
  temperature: float = 0.1  # NT-Xent softmax temperature
  proj_hidden: int = 512  # projection MLP: embedding -> hidden -> ReLU -> dim
  proj_dim: int = 128
  view_seconds: float = 2.0  # each view is a random crop of this length from the loaded row
  gain_db: tuple[float, ...] = (-6.0, 6.0)
  max_shift_seconds: float = 0.25  # circular time shift of each view, either way
  noise_split: str = "noise"  # mixed into views when the pack has this split; skipped otherwise
  noise_snr_db: tuple[float, ...] = (5.0, 20.0)
  noise_p: float = 0.5  # probability a view gets noise
  max_noise_clips: int = 64  # noise clips kept on the device


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
  data_dir: str = ""  # labelled pack for the SimCLR linear probe; "" = data.dir
  train_split: str = ""  # "" (either split) = no probe, no evaluation
  eval_split: str = ""
  steps: int = 300  # full-batch Adam steps of the logistic regression
  lr: float = 0.05
  weight_decay: float = 1e-3
  at_init: bool = True  # also probe the initial (random) encoder, logged at step 0


@dataclasses.dataclass(frozen=True)
class ProtonetConfig:
  n_way: int = 5  # training episodes: classes, support and query clips per class
  k_shot: int = 5
  q_queries: int = 5
  episodes_per_step: int = 1  # global: a multiple of the device count
  train_classes: tuple[int, ...] = ()  # () = every class not in eval_classes
  eval_classes: tuple[int, ...] = ()  # held out from training
  eval_ways: int = 5
  eval_shots: tuple[int, ...] = (1, 5)  # the last one is the loop's `accuracy`
  eval_queries: int = 15
  eval_episodes: int = 600
  eval_seed: int = 0


@dataclasses.dataclass(frozen=True)
class RunConfig:
  trainer: str = "supervised"  # supervised | simclr | protonet
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  train: TrainConfig = TrainConfig()
  eval: EvalConfig = EvalConfig()
  checkpoint: CheckpointConfig = CheckpointConfig()
  simclr: SimclrConfig = SimclrConfig()
  probe: ProbeConfig = ProbeConfig()
  protonet: ProtonetConfig = ProtonetConfig()
  smoke: bool = False  # shrunk by `configs/base.apply_smoke` (tests, `:smoke`)

  def to_dict(self) -> dict[str, Any]:
    """Plain data (tuples as lists), as `config.json` stores it."""
    return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [_plain(v) for v in value]
  return value


def defaults() -> dict[str, Any]:
  """Every section with its default values (what `configs/base.py` starts from)."""
  return RunConfig().to_dict()


def parse(config: Mapping[str, Any] | Any, *, strict: bool = True) -> RunConfig:
  """A ConfigDict (or plain dict, or a RunConfig) -> a validated RunConfig.

  Args:
    config: the experiment config; a missing key takes its default.
    strict: refuse unknown keys (a config the user wrote); `False` ignores them (a run saved by another
      version of animaljax, read back by `animaljax.training.workdir`).
  Raises:
    ValueError: naming the first unknown key (with the valid ones, closest first) or impossible value.
  """
  if isinstance(config, RunConfig):
    return config
  values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  c = typed.build(RunConfig, values, strict=strict)
  validate(c)
  return c


# ------------------------------------------------------------------------------------------------- validation
def _choices() -> dict[str, tuple[str, ...]]:
  """Enumerated fields -> their valid values, from the tables of the modules that implement them."""
  from animaljax.audio.windows import SHORT_CLIP_RULES
  from animaljax.data.loader import SAMPLING
  from animaljax.data.packing import CLIP_MODES, FILE_FORMATS
  from animaljax.data.sources import SOURCES
  from animaljax.data.sources.raven import UNANNOTATED
  from animaljax.losses import LOSSES
  from animaljax.models.ast import REMAT_POLICIES, SIZES
  from animaljax.models.classifier import ENCODERS
  from animaljax.training.loop import ON_NONFINITE
  from animaljax.training.state import OPTIMIZERS, SCHEDULES

  return {
    "trainer": TRAINERS,
    "data.source": tuple(SOURCES), "data.file_format": FILE_FORMATS, "data.clip_mode": CLIP_MODES,
    "data.short_clips": SHORT_CLIP_RULES, "data.unannotated": ("", *UNANNOTATED),
    "model.encoder": tuple(sorted(ENCODERS)), "model.size": tuple(SIZES), "model.dtype": ("float32", "bfloat16"),
    "model.head": ("clip", "decision_max", "decision_att"), "model.remat": ("", *sorted(REMAT_POLICIES)),
    "train.schedule": SCHEDULES, "train.optimizer": OPTIMIZERS, "train.loss": LOSSES,
    "train.class_weights": ("none", "balanced"), "train.sampling": SAMPLING, "train.on_nonfinite": ON_NONFINITE,
  }  # fmt: skip


def _get(c: RunConfig, key: str) -> Any:
  node: Any = c
  for part in key.split("."):
    node = getattr(node, part)
  return node


def validate(c: RunConfig) -> None:
  """Raises ValueError for the first impossible value of `c`: numbers (`_RULES`), then enumerated choices."""
  for key, (ok, what) in RULES.items():
    value = _get(c, key)
    if not math.isfinite(value) or not ok(value):
      raise ValueError(f"{key} must be {what}, got {value!r}")
  for key, valid in _choices().items():
    if _get(c, key) not in valid:
      raise ValueError(f"unknown {key} {_get(c, key)!r}; valid: {', '.join(v or repr(v) for v in valid)}")
  probe_on = bool(c.probe.train_split and c.probe.eval_split)
  supervised = tuple(dict.fromkeys(SUPERVISED_METRICS + MULTILABEL_METRICS))
  metrics = {"supervised": supervised, "simclr": SIMCLR_METRICS if probe_on else None}.get(c.trainer)
  if metrics is not None and c.eval.metric not in metrics:
    raise ValueError(
      f"unknown eval.metric {c.eval.metric!r} for trainer {c.trainer}; valid: {', '.join(metrics)}"
    )
  for key in _RANGES:
    pair = _get(c, key)
    if len(pair) != 2 or not all(map(math.isfinite, pair)) or pair[0] > pair[1]:
      raise ValueError(f"{key} must be (low, high) with low <= high, got {pair!r}")
  if c.train.speed_range[0] <= 0:
    raise ValueError(f"train.speed_range must be factors > 0, got {c.train.speed_range!r}")
  if c.train.shorten_seconds[0] <= 0:
    raise ValueError(f"train.shorten_seconds must be > 0 s, got {c.train.shorten_seconds!r}")
  cutoffs = c.train.lowpass_hz
  if not cutoffs or not all(math.isfinite(f) and f > 0 for f in cutoffs):
    raise ValueError(f"train.lowpass_hz must be one or more frequencies > 0 Hz, got {cutoffs!r}")
  if c.model.encoder == "ast" and c.model.clip_norm:
    raise ValueError(
      "model.clip_norm applies to the CNN encoders; AST normalises its fbank with fixed statistics"
    )
  if c.model.members > 1 and (c.trainer != "supervised" or c.model.encoder == "ast"):
    raise ValueError(
      f"model.members={c.model.members} (an ensemble) needs the supervised trainer and a CNN encoder, not "
      f"trainer {c.trainer!r} with encoder {c.model.encoder!r}"
    )
  if c.data.short_clips == "mask" and (
    (c.trainer, c.model.head, c.model.members) != ("supervised", "clip", 1) or c.model.encoder[:3] != "cnn"
  ):
    raise ValueError(
      "data.short_clips=mask needs the supervised trainer and one CNN6/10/14 with the clip head"
    )
  if c.train.ema_decay and c.trainer != "supervised":
    raise ValueError(f"train.ema_decay applies to the supervised trainer, not {c.trainer!r}")
  if c.trainer == "simclr":
    if c.simclr.view_seconds > c.data.clip_seconds:
      raise ValueError(
        f"simclr.view_seconds={c.simclr.view_seconds} must be in (0, data.clip_seconds={c.data.clip_seconds}]"
      )
    if c.train.batch_size < 2:
      raise ValueError("SimCLR needs train.batch_size >= 2 (the other clips are the negatives)")
  if c.data.cv_fold and c.data.source != "esc50":
    raise ValueError(f"data.cv_fold applies to the esc50 source, not {c.data.source!r}")
  if c.model.head != "clip" and not (c.model.encoder.startswith(("cnn", "wavegram"))):
    raise ValueError(
      f"model.head={c.model.head} applies to the PANNs CNNs and wavegrams, not {c.model.encoder}"
    )
  if c.model.encoder == "ast" and c.data.sample_rate != 16000:
    raise ValueError(
      f"AST's fbank recipe runs at 16000 Hz; set data.sample_rate=16000 (got {c.data.sample_rate})"
    )


def resolve(config: Any, workdir: str | pathlib.Path) -> RunConfig:
  """`parse(config)` with what derives from the workdir filled in: the pack folder and cross-validation splits."""
  c = parse(config)
  d = c.data
  data_dir = d.dir
  if not data_dir:
    # A category may be an ontology id ("/m/0jbk") or a list: only word characters reach the folder name.
    category = re.sub(r"[^\w.-]+", "_", d.category).strip("_.")
    name = d.source + (f"-{category}" if category else "")
    if d.source != "synthetic":  # the same corpus packed for CNN14 (32 kHz) and for AST (16 kHz) side by side
      name += f"-{d.sample_rate // 1000}k"
    name += "-smoke" if c.smoke else ""
    data_dir = str(pathlib.Path(workdir).absolute().parent / "packed" / name)
  changes: dict[str, Any] = {"dir": str(pathlib.Path(data_dir).absolute())}
  if d.cv_fold:
    folds = [k for k in range(1, 6) if k != d.cv_fold]
    if c.smoke:  # one training fold is enough to exercise the code path and packs 4x faster
      folds = folds[:1]
    changes.update(train_split="+".join(f"fold{k}" for k in folds), eval_split=f"fold{d.cv_fold}")
  data = dataclasses.replace(d, **changes)
  probe = c.probe
  for key in _RANGES:
    pair = _get(c, key)
    if len(pair) != 2 or not all(map(math.isfinite, pair)) or pair[0] > pair[1]:
      raise ValueError(f"{key} must be (low, high) with low <= high, got {pair!r}")
  if c.trainer == "simclr":
    probe = dataclasses.replace(
      probe, data_dir=str(pathlib.Path(probe.data_dir).absolute()) if probe.data_dir else data.dir
    )
  return dataclasses.replace(c, data=data, probe=probe)


def replace(c: RunConfig, **sections: Mapping[str, Any]) -> RunConfig:
  """`c` with fields of sections replaced: `replace(c, data={"clip_seconds": 2.0})`."""
  return dataclasses.replace(c, **{k: dataclasses.replace(getattr(c, k), **v) for k, v in sections.items()})


def model_config(c: RunConfig, num_classes: int, clip_seconds: float | None = None):
  """The classifier (`models.classifier.ClassifierConfig`) that `c.model` describes, over `num_classes` classes at
  `c.data.sample_rate`; AST's positional grid is laid out for `clip_seconds` (default `c.data.clip_seconds`)."""
  from animaljax.models.classifier import ast_config, cnn14_config

  c = parse(c, strict=False)  # a RunConfig as is; a ConfigDict or a saved config.json's dict typed first
  m = c.model
  if m.encoder == "ast":
    seconds = c.data.clip_seconds if clip_seconds is None else clip_seconds
    return ast_config(num_classes, m.size, seconds, depth=m.depth or None, dtype=m.dtype, remat=m.remat)
  return cnn14_config(
    num_classes, c.data.sample_rate, m.width, variant=m.encoder, dropout=m.dropout, dtype=m.dtype,
    clip_norm=m.clip_norm, head=m.head, members=m.members, pool_mask=c.data.short_clips == "mask",
  )  # fmt: skip
