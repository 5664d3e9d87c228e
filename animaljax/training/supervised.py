"""Supervised classification: `train_and_evaluate(config, workdir)` packs (on first use), trains, evaluates.

The step runs the whole augmentation pipeline on the device: the model's front end turns int16 waveforms
into log-mel/fbank features, `feature_fn` applies SpecAugment and mixup to them, and the loss sees the same
mixup of the (label-smoothed) one-hot targets. Evaluation writes `metrics.json` (accuracy, macro/weighted F1,
mAP, per-class precision/recall/F1), `confusion_matrix.csv`/`.png`, `per_class.png` and a line of
`eval_log.jsonl` in the workdir.
"""

from __future__ import annotations

import csv
import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from animaljax import losses, metrics
from animaljax.augment import mixup, sample_mixup, spec_augment
from animaljax.data.loader import SAMPLING, PackedDataset, make_loader
from animaljax.data.packing import CLIP_MODES, FILE_FORMATS
from animaljax.data.sources import SOURCES
from animaljax.models.classifier import ENCODERS, ClassifierConfig, ast_config, cnn14_config, make_model
from animaljax.training import config as config_lib
from animaljax.training import loop
from animaljax.training import workdir as run_dir
from animaljax.training.report import write_charts
from animaljax.training.state import OPTIMIZERS, SCHEDULES, TrainState, make_optimizer, merge_pretrained

_NEEDS_ROOT = {"esc50": "root", "folder": "root", "csv": "manifest"}
_METRICS = ("accuracy", "macro_f1", "weighted_f1", "mAP", "loss")
_CLASS_WEIGHTS = ("none", "balanced")
_DTYPES = ("float32", "bfloat16")


# ----------------------------------------------------------------------------------------------------------------
# Config -> data and model
# ----------------------------------------------------------------------------------------------------------------
def resolve_config(config: ml_collections.ConfigDict, workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """A copy with derived fields filled in: the packed dataset folder and the cross-validation splits."""
  c = ml_collections.ConfigDict(config.to_dict())
  config_lib.validate(c)  # numbers first: nothing below (nor packing, nor the loop) sees an impossible value
  d = c.data
  if not d.dir:
    name = d.source + (f"-{d.category.replace(',', '_')}" if d.category else "")
    if d.source != "synthetic":  # the same corpus packed for CNN14 (32 kHz) and for AST (16 kHz) side by side
      name += f"-{d.sample_rate // 1000}k"
    name += "-smoke" if c.smoke else ""
    d.dir = str(workdir.parent / "packed" / name)
  d.dir = str(pathlib.Path(d.dir).absolute())
  if d.cv_fold:
    if d.source != "esc50":
      raise ValueError(f"data.cv_fold applies to the esc50 source, not {d.source!r}")
    folds = [k for k in range(1, 6) if k != d.cv_fold]
    if c.smoke:  # one training fold is enough to exercise the code path and packs 4x faster
      folds = folds[:1]
    d.train_split = "+".join(f"fold{k}" for k in folds)
    d.eval_split = f"fold{d.cv_fold}"
  for key, valid in (("metric", _METRICS),):
    if c.eval[key] not in valid:
      raise ValueError(f"unknown eval.{key} {c.eval[key]!r}; valid: {', '.join(valid)}")
  if c.train.loss not in losses.LOSSES:
    raise ValueError(f"unknown train.loss {c.train.loss!r}; valid: {', '.join(losses.LOSSES)}")
  if c.train.class_weights not in _CLASS_WEIGHTS:
    raise ValueError(
      f"unknown train.class_weights {c.train.class_weights!r}; valid: {', '.join(_CLASS_WEIGHTS)}"
    )
  if c.model.encoder not in ENCODERS:
    raise ValueError(f"unknown model.encoder {c.model.encoder!r}; valid: {', '.join(sorted(ENCODERS))}")
  for section, key, valid in (
    ("train", "sampling", SAMPLING), ("train", "on_nonfinite", loop.ON_NONFINITE), ("model", "dtype", _DTYPES),
    ("train", "optimizer", OPTIMIZERS), ("train", "schedule", SCHEDULES), ("data", "source", tuple(SOURCES)),
    ("data", "file_format", FILE_FORMATS), ("data", "clip_mode", CLIP_MODES),
  ):  # fmt: skip
    if c[section][key] not in valid:
      raise ValueError(f"unknown {section}.{key} {c[section][key]!r}; valid: {', '.join(valid)}")
  if c.eval.early_stopping_patience < 0:
    raise ValueError(
      f"eval.early_stopping_patience must be >= 0 (0 = off), got {c.eval.early_stopping_patience}"
    )
  return c


def _source_kwargs(c: ml_collections.ConfigDict) -> dict:
  d = c.data
  if d.source == "synthetic":
    return {
      "num_classes": d.synthetic_classes,
      "clips_per_class": tuple(d.synthetic_clips_per_class),
      "clip_seconds": d.synthetic_clip_seconds,
      "seed": c.train.seed,
    }
  if d.source in _NEEDS_ROOT and not d.root:
    raise ValueError(
      f"data.source={d.source!r} needs data.root (the corpus folder or manifest) to pack {d.dir} on first use"
    )
  kwargs: dict[str, Any] = {_NEEDS_ROOT.get(d.source, "root"): d.root}
  if d.source == "esc50":
    if d.category:
      kwargs["category"] = (
        d.category
        if d.category in ("animals", "natural", "human", "domestic", "urban")
        else (d.category.split(","))
      )
    if c.smoke:
      kwargs["folds"] = sorted({int(s[4:]) for s in f"{d.train_split}+{d.eval_split}".split("+")})
  if d.source in ("folder", "csv"):
    kwargs["seed"] = c.train.seed
  return kwargs


def ensure_packed(c: ml_collections.ConfigDict) -> PackedDataset:
  """The packed dataset at `c.data.dir`, packing it first if it is missing and `pack_on_first_use` is set."""
  from animaljax.data.sources import make_source

  d = c.data
  path = pathlib.Path(d.dir)
  if not (path / "summary.json").is_file():
    if not d.pack_on_first_use:
      raise FileNotFoundError(
        f"no packed dataset at {path}; pack it with `python -m animaljax.pack --source {d.source} "
        f"{'--root <corpus> ' if d.source in _NEEDS_ROOT else ''}--sample-rate {d.sample_rate} --out {path}` "
        "or set data.pack_on_first_use=True"
      )
    from animaljax.data.packing import pack
    from animaljax.training import distributed

    # Several processes: process 0 packs into the (shared) folder while the others wait for it.
    distributed.on_process_zero(
      f"pack:{path}",
      lambda: pack(
        make_source(d.source, **_source_kwargs(c)), path, sample_rate=d.sample_rate, clip_mode=d.clip_mode,
        window_seconds=d.window_seconds, file_format=d.file_format, progress=True,
      ),
    )  # fmt: skip
    if not (path / "summary.json").is_file():
      raise FileNotFoundError(
        f"process 0 packed {path} but process {jax.process_index()} cannot see it: put data.dir (or the "
        "workdir) on a filesystem every host shares, or pack the same folder on every host first"
      )
  data = PackedDataset(path)
  if data.sample_rate != d.sample_rate:
    raise ValueError(
      f"{path} is packed at {data.sample_rate} Hz but data.sample_rate={d.sample_rate}; set data.sample_rate to "
      "match or point data.dir at another folder (the model's front end needs the pack's rate)"
    )
  return data


def model_config(c: ml_collections.ConfigDict, num_classes: int) -> ClassifierConfig:
  """The classifier for `c.model` over `num_classes` at `c.data.sample_rate`."""
  m = c.model
  if m.encoder == "ast":
    if c.data.sample_rate != 16000:
      raise ValueError(
        f"AST's fbank recipe runs at 16000 Hz; set data.sample_rate=16000 (got {c.data.sample_rate})"
      )
    return ast_config(
      num_classes, m.size, c.data.clip_seconds, depth=m.depth or None, dtype=m.dtype, remat=m.get("remat", "")
    )
  if m.encoder in ("cnn6", "cnn10", "cnn14"):
    return cnn14_config(
      num_classes, c.data.sample_rate, m.width, variant=m.encoder, dropout=m.dropout, dtype=m.dtype
    )
  raise ValueError(f"unknown model.encoder {m.encoder!r}; valid: {', '.join(sorted(ENCODERS))}")


def _class_counts(data: PackedDataset, split: str) -> np.ndarray:
  counts = np.zeros(len(data.class_names))
  for s in data.split_names(split):
    per_class = data.splits[s].get("per_class", {})
    for i, name in enumerate(data.class_names):
      counts[i] += per_class.get(name, 0)
  return counts


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------
def augment_features(feats: jax.Array, key: jax.Array, t: ml_collections.ConfigDict) -> jax.Array:
  """SpecAugment as `train` configures it (identity when `t.specaugment` is off); every trainer's feature_fn."""
  if not t.specaugment:
    return feats
  return spec_augment(
    key, feats, time_masks=t.time_masks, time_width=t.time_width, freq_masks=t.freq_masks,
    freq_width=t.freq_width,
  )  # fmt: skip


def make_steps(
  c: ml_collections.ConfigDict, model, tx, lr_fn, num_classes: int, class_weights: np.ndarray | None
):
  """The pure train and eval steps for `loop.Task`."""
  t = c.train
  loss_of = losses.loss_fn(t.loss, focal_gamma=t.focal_gamma)
  weights = None if class_weights is None else jnp.asarray(class_weights)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    k_drop, k_aug, k_mix = jax.random.split(rng, 3)
    batch_size = batch["audio"].shape[0]
    lam, perm = sample_mixup(k_mix, batch_size, t.mixup_alpha)
    targets = losses.one_hot(batch["label"], num_classes)
    # Weights use the unmixed, unsmoothed targets' classes, mixed like the targets themselves.
    example_w = losses.example_weights(targets, weights)
    example_w = mixup(example_w[:, None], lam, perm)[:, 0] if t.mixup_alpha > 0 else example_w
    mask = batch["mask"].astype(jnp.float32)
    mask = jnp.minimum(mask, mask[perm]) if t.mixup_alpha > 0 else mask  # never mix with a padding row
    targets = losses.smooth_labels(targets, t.label_smoothing)
    if t.mixup_alpha > 0:
      targets = mixup(targets, lam, perm)

    def feature_fn(feats: jax.Array, key: jax.Array) -> jax.Array:
      feats = augment_features(feats, key, t)
      return mixup(feats, lam, perm) if t.mixup_alpha > 0 else feats

    def loss_fn(params):
      (logits, _), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats},
        batch["audio"],
        train=True,
        feature_fn=feature_fn,
        rngs={"dropout": k_drop, "augment": k_aug},
        mutable=["batch_stats"],
      )
      loss = losses.masked_mean(loss_of(logits, targets), mask * example_w)
      return loss, (logits, updates.get("batch_stats", state.batch_stats))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    accuracy = losses.masked_mean((logits.argmax(-1) == batch["label"]).astype(jnp.float32), mask)
    new_state = state.apply_gradients(grads, batch_stats, tx)
    grad_norm = optax.global_norm(grads)
    return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "lr": lr_fn(state.step)}

  def eval_step(state: TrainState, batch: dict) -> dict:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits, _ = model.apply(variables, batch["audio"], train=False)
    targets = losses.one_hot(batch["label"], num_classes)
    return {
      "logits": logits,
      "label": batch["label"],
      "loss": loss_of(logits, targets),
      "mask": batch["mask"],
    }

  return train_step, eval_step


# ----------------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------------
def write_report(workdir: pathlib.Path, step: int, report: dict, class_names: tuple[str, ...]) -> None:
  """`metrics.json` (latest evaluation), `confusion_matrix.csv`, the PNG charts and a line of `eval_log.jsonl`."""
  record = {"step": step, **report}
  tmp = workdir / "metrics.json.tmp"
  tmp.write_text(json.dumps(record, indent=2) + "\n")
  tmp.replace(workdir / "metrics.json")  # readers (the demo, scripts) never see a half-written file
  with open(workdir / "confusion_matrix.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, report["confusion_matrix"], strict=True):
      writer.writerow([name, *row])
  with open(workdir / "eval_log.jsonl", "a") as f:
    f.write(
      json.dumps({k: v for k, v in record.items() if k not in ("per_class", "confusion_matrix")}) + "\n"
    )
  write_charts(workdir, step, report)


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict:
  """Trains and evaluates a classifier as `config` says; resumes if `workdir` holds a checkpoint.

  Writes `config.json` (the resolved config), `train_log.jsonl`, `eval_log.jsonl`, `metrics.json`,
  `confusion_matrix.csv`, `confusion_matrix.png`, `per_class.png`, `tensorboard/`, `checkpoints/` and `best/`
  in `workdir`.

  Returns:
    The final evaluation's metrics (`accuracy`, `macro_f1`, `weighted_f1`, `mAP`, `loss`, `per_class`,
    `confusion_matrix`) plus `step`, `train_loss`, `best`, `skipped_steps`, `stopped_early` and `wall_s`.
  """
  workdir = pathlib.Path(workdir).absolute()
  c = resolve_config(config, workdir)
  with run_dir.claim(workdir, json.loads(c.to_json()), main_process=jax.process_index() == 0) as started:
    return _train(c, workdir, started)


def _train(c: ml_collections.ConfigDict, workdir: pathlib.Path, started) -> dict:
  """`train_and_evaluate` once the workdir is claimed; `started(step)` writes config.json (run_dir.claim)."""
  per_process = loop.check_batch_size(c.train.batch_size)
  data = ensure_packed(c)
  d, t = c.data, c.train
  train_loader = make_loader(
    d.dir, d.train_split, batch_size=per_process, train=True, clip_seconds=d.clip_seconds, seed=t.seed,
    worker_count=d.worker_count, sampling=t.sampling,
  )  # fmt: skip
  class_names = train_loader.class_names
  num_classes = len(class_names)
  eval_global = (
    -(-c.eval.batch_size // jax.device_count()) * jax.device_count()
  )  # rounded up; padding is masked
  data.num_examples(d.eval_split)  # a clear error now for an unknown split, not after the first steps

  def eval_batches():
    return make_loader(
      d.dir,
      d.eval_split,
      batch_size=eval_global // jax.process_count(),
      train=False,
      clip_seconds=d.clip_seconds,
    )

  model = make_model(model_config(c, num_classes))
  tx, lr_fn = make_optimizer(
    optimizer=t.optimizer, lr=t.lr, steps=t.steps, warmup_steps=t.warmup_steps, schedule=t.schedule,
    weight_decay=t.weight_decay, grad_clip=t.grad_clip,
  )  # fmt: skip
  class_weights = (
    losses.balanced_class_weights(_class_counts(data, d.train_split))
    if t.class_weights == "balanced"
    else None
  )
  train_step, eval_step = make_steps(c, model, tx, lr_fn, num_classes, class_weights)

  def init_state() -> TrainState:
    k_params, k_state = jax.random.split(jax.random.PRNGKey(t.seed))
    dummy = jnp.zeros((1, train_loader.clip_samples), jnp.int16)
    variables = jax.jit(lambda k: model.init({"params": k}, dummy, train=False))(k_params)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    if c.model.init_from:
      params, batch_stats = _load_init(c, params, batch_stats)
    elif batch_stats:
      first = next(
        iter(
          make_loader(
            d.dir,
            d.train_split,
            batch_size=t.batch_size,
            train=True,
            clip_seconds=d.clip_seconds,
            seed=t.seed,
            shard_by_process=False,
          )
        )
      )
      batch_stats = calibrate_batch_stats(model, params, batch_stats, first["audio"], k_state)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      rng=k_state,
    )

  def summarize(outputs: dict[str, np.ndarray]) -> dict:
    report = metrics.classification_report(outputs["label"], outputs["logits"], class_names)
    return {"loss": float(outputs["loss"].mean()), **report}

  task = loop.Task(
    init_state=init_state,
    train_step=train_step,
    eval_step=eval_step,
    summarize=summarize,
    train_batches=train_loader,
    eval_batches=eval_batches,
    on_eval=lambda step, report: write_report(workdir, step, report, class_names),
    on_start=started,
  )
  loop_cfg = loop.LoopConfig.from_config(c, t.batch_size)
  return loop.run(task, loop_cfg, workdir)


def calibrate_batch_stats(model, params: dict, batch_stats: dict, audio: np.ndarray, key: jax.Array) -> dict:
  """BatchNorm running statistics set to the statistics of one training batch `audio` (batch, time).

  Running averages start at (mean 0, var 1) while log-mel inputs sit near -60 dB, so a short run (the
  quickstart, smoke tests) would evaluate with badly biased statistics for hundreds of steps. One train-mode
  pass from running values 0 and one from 1 give `m * old + (1 - m) * batch` at both ends, which yields the
  batch statistics without knowing the layers' momentum `m`. Every process sees the same (global) batch.
  """

  @jax.jit
  def updated(fill: float) -> dict:
    start = jax.tree.map(lambda x: jnp.full_like(x, fill), batch_stats)
    _, upd = model.apply(
      {"params": params, "batch_stats": start}, audio, train=True, rngs={"dropout": key, "augment": key},
      mutable=["batch_stats"],
    )  # fmt: skip
    return upd["batch_stats"]

  from_zero, from_one = updated(0.0), updated(1.0)
  return jax.tree.map(lambda n0, n1: n0 / jnp.maximum(1.0 - (n1 - n0), 1e-6), from_zero, from_one)


def _load_init(c: ml_collections.ConfigDict, params: dict, batch_stats: dict) -> tuple[dict, dict]:
  """`params`/`batch_stats` with the converted model at `c.model.init_from` written over them."""
  from animaljax.models.pretrained import load_converted

  where = c.model.init_from
  if not pathlib.Path(where).is_dir():
    raise FileNotFoundError(
      f"model.init_from={where!r} is not a folder; convert a PANNs/AST checkpoint first (python -m animaljax.convert)"
    )
  _, variables = load_converted(where, keep_head=c.model.keep_head)
  params = merge_pretrained(params, variables["params"], where)
  if batch_stats:
    batch_stats = merge_pretrained(batch_stats, variables.get("batch_stats", {}), where)
  return params, batch_stats
