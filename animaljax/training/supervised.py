"""Supervised classification: `train_and_evaluate(config, workdir)` packs (on first use), trains, evaluates.

The step runs the whole augmentation pipeline on the device (`train_inputs` on waveforms; the model's front end
makes features, `feature_fn` applies SpecAugment and mixup, the loss the same mixup of the label-smoothed
targets). Evaluation writes `metrics.json` (accuracy, macro/weighted F1, mAP, per-class precision/recall/F1),
`confusion_matrix.csv`/`.png`, `per_class.png` and a line of `eval_log.jsonl` in the workdir.
"""

from __future__ import annotations

import csv
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from animaljax import losses, metrics
from animaljax.augment import (
  clip_lengths,
  keep_prefix,
  mixup,
  random_lowpass,
  random_noise_mix,
  random_quantize,
  random_shorten,
  random_speed,
  sample_mixup,
)
from animaljax.data import atomic
from animaljax.data.loader import PackedDataset, make_loader
from animaljax.metrics import plots
from animaljax.models.classifier import make_model
from animaljax.training import config as config_lib
from animaljax.training import loop, setup
from animaljax.training import workdir as run_dir
from animaljax.training.config import model_config
from animaljax.training.report import write_charts, write_metrics
from animaljax.training.state import TrainState, ema_params


# ----------------------------------------------------------------------------------------------------------------
# Config -> data and model
# ----------------------------------------------------------------------------------------------------------------
def resolve_config(config, workdir: pathlib.Path) -> config_lib.RunConfig:
  """The typed, validated config with the pack folder and cross-validation splits filled in (`config.resolve`)."""
  return config_lib.resolve(config, workdir)


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
def train_inputs(
  key: jax.Array,
  audio: jax.Array,
  noise_bank: jax.Array | None,
  t: config_lib.TrainConfig,
  sample_rate: float,
  short_clips: str = "loop",
):
  """The waveforms the training step feeds the model: `audio` (batch, time) as the recipe degrades it.

  In order, each only when its probability is > 0: with `t.speed_p`, played faster or slower by a factor of
  `t.speed_range` (`augment.random_speed`); with `t.shorten_p`, rows become random segments of
  `t.shorten_seconds` looped or padded back by `short_clips` (`augment.random_shorten`, the input rule's short
  clip); with a noise bank and `t.noise_p`, a random noise clip at an SNR uniform in `t.noise_snr_db` (exact,
  `augment.mix_at_snr`); with `t.lowpass_p`, band-limiting at a cutoff of `t.lowpass_hz`
  (`augment.random_lowpass`); with `t.quantize_p`, rounding to `t.quantize_bits`-bit PCM
  (`augment.random_quantize`). Under the "mask" rule the zero padding after a short clip stays silent (noise
  stops at the clip). With all off, `audio` as it is. Evaluation never calls this: scores are on the clean clips.
  """
  if t.speed_p > 0:
    audio = random_speed(jax.random.fold_in(key, 4), audio, tuple(t.speed_range), t.speed_p)
  if t.shorten_p > 0:
    audio = random_shorten(
      jax.random.fold_in(key, 2), audio, sample_rate, tuple(t.shorten_seconds), t.shorten_p, short_clips
    )
  lengths = clip_lengths(audio) if short_clips == "mask" else None  # its model pools over the clip only
  if noise_bank is not None and t.noise_p > 0:
    audio = random_noise_mix(key, audio, noise_bank, tuple(t.noise_snr_db), p=t.noise_p, lengths=lengths)
  if t.lowpass_p > 0:
    audio = random_lowpass(jax.random.fold_in(key, 1), audio, sample_rate, tuple(t.lowpass_hz), p=t.lowpass_p)
  if t.quantize_p > 0:
    audio = random_quantize(jax.random.fold_in(key, 3), audio, t.quantize_bits, p=t.quantize_p)
  return audio if lengths is None else keep_prefix(audio, lengths)


def clip_scores(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
  """Window outputs -> `(labels (clips,), scores (clips, classes), loss)` per clip, pooled as `predict` pools a
  file's windows: the mean of the windows' softmax probabilities (scores are its log). `loss` is the mean over
  clips of their windows' mean loss. Clips come out in `index` order.
  """
  index = np.asarray(outputs["index"])
  clips, inverse = np.unique(index, return_inverse=True)
  counts = np.bincount(inverse, minlength=len(clips)).astype(np.float64)
  logits = np.asarray(outputs["logits"], np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  pooled = np.zeros((len(clips), probs.shape[1]))
  np.add.at(pooled, inverse, probs)
  pooled /= counts[:, None]
  labels = np.zeros(len(clips), np.int64)
  labels[inverse] = outputs["label"]
  clip_loss = np.bincount(inverse, weights=np.asarray(outputs["loss"], np.float64)) / counts
  return labels, np.log(np.maximum(pooled, 1e-30)), float(clip_loss.mean())


def clip_scores_multilabel(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
  """Window outputs of a multi-label model -> `(targets (clips, classes), probs (clips, classes), loss)` per clip:
  the max over a clip's windows of the independent sigmoid probabilities (`audio.windows.window_pool`), as
  `predict` pools a file's windows. Clips come out in `index` order."""
  index = np.asarray(outputs["index"])
  clips, inverse = np.unique(index, return_inverse=True)
  counts = np.bincount(inverse, minlength=len(clips)).astype(np.float64)
  probs = 1.0 / (1.0 + np.exp(-np.asarray(outputs["logits"], np.float64)))
  pooled = np.zeros((len(clips), probs.shape[1]))
  np.maximum.at(pooled, inverse, probs)
  targets = np.zeros((len(clips), probs.shape[1]))
  targets[inverse] = outputs["targets"]
  clip_loss = np.bincount(inverse, weights=np.asarray(outputs["loss"], np.float64)) / counts
  return targets, pooled, float(clip_loss.mean())


def make_steps(
  c: config_lib.RunConfig,
  model,
  tx,
  lr_fn,
  num_classes: int,
  class_weights: np.ndarray | None,
  noise_bank=None,
  multi_label: bool = False,
):
  """The pure train and eval steps for `loop.Task`; `noise_bank` (n, samples) feeds `train_inputs`.

  `multi_label`: batches carry multi-hot `targets` (a multi-label pack); the loss is the sigmoid BCE or focal
  loss, label smoothing pulls each class towards 1/2, mixup mixes the multi-hot targets, and class weights
  scale each class's positive term (`losses.sigmoid_binary_cross_entropy(pos_weight=)`) instead of examples.
  """
  t = c.train
  loss_of = losses.loss_fn(t.loss, focal_gamma=t.focal_gamma, multi_label=multi_label)
  weights = None if class_weights is None else jnp.asarray(class_weights)
  if multi_label and weights is not None:
    if t.loss != "bce":
      raise ValueError(
        "train.class_weights=balanced on a multi-label pack needs train.loss=bce (positive weights)"
      )
    pos_weight = weights
    loss_of = lambda logits, targets: losses.sigmoid_binary_cross_entropy(logits, targets, pos_weight)  # noqa: E731
    weights = None

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    k_drop, k_aug, k_mix = jax.random.split(rng, 3)
    batch_size = batch["audio"].shape[0]
    lam, perm = sample_mixup(k_mix, batch_size, t.mixup_alpha)
    targets = batch["targets"] if multi_label else losses.one_hot(batch["label"], num_classes)
    present = targets
    # Weights use the unmixed, unsmoothed targets' classes, mixed like the targets themselves.
    example_w = losses.example_weights(targets, weights)
    example_w = mixup(example_w[:, None], lam, perm)[:, 0] if t.mixup_alpha > 0 else example_w
    mask = batch["mask"].astype(jnp.float32)
    mask = jnp.minimum(mask, mask[perm]) if t.mixup_alpha > 0 else mask  # never mix with a padding row
    targets = losses.smooth_labels(targets, t.label_smoothing, multi_label=multi_label)
    if t.mixup_alpha > 0:
      targets = mixup(targets, lam, perm)

    def feature_fn(feats: jax.Array, key: jax.Array) -> jax.Array:
      feats = setup.augment_features(feats, key, t)
      return mixup(feats, lam, perm) if t.mixup_alpha > 0 else feats

    # The same mixing for what the encoder learns from the waveform (the wavegram), where PANNs mixes it.
    mix_fn = (lambda x: mixup(x, lam, perm)) if t.mixup_alpha > 0 else None

    # A key of its own (not a fourth split of `rng`), so runs without noise keep their exact random streams.
    audio = train_inputs(
      jax.random.fold_in(rng, 1), batch["audio"], noise_bank, t, c.data.sample_rate, c.data.short_clips
    )

    def loss_fn(params):
      (logits, out), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats},
        audio,
        train=True,
        feature_fn=feature_fn,
        mix_fn=mix_fn,
        rngs={"dropout": k_drop, "augment": k_aug},
        mutable=["batch_stats"],
      )
      if "member_logits" in out:  # an ensemble: each member's own loss, averaged (members learn apart)
        per_example = jax.vmap(lambda member: loss_of(member, targets))(out["member_logits"]).mean(0)
      else:
        per_example = loss_of(logits, targets)
      loss = losses.masked_mean(per_example, mask * example_w)
      return loss, (logits, updates.get("batch_stats", state.batch_stats))

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    # Single-label: top-1 accuracy. Multi-label: how often the top class is one of the clip's (rows with a class).
    top_hit = jnp.take_along_axis(present, logits.argmax(-1)[:, None], axis=-1)[:, 0]
    hit_rows = mask * (present.sum(-1) > 0) if multi_label else mask
    accuracy = losses.masked_mean(top_hit.astype(jnp.float32), hit_rows)
    new_state = state.apply_gradients(grads, batch_stats, tx)
    grad_norm = optax.global_norm(grads)
    return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "lr": lr_fn(state.step)}

  def eval_step(state: TrainState, batch: dict) -> dict:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    logits, _ = model.apply(variables, batch["audio"], train=False)
    targets = batch["targets"] if multi_label else losses.one_hot(batch["label"], num_classes)
    return {
      "logits": logits,
      **({"targets": targets} if multi_label else {"label": batch["label"]}),
      "loss": loss_of(logits, targets),
      "mask": batch["mask"],
      "index": batch["index"],  # the window's clip: `clip_scores` pools a clip's windows as predict does
    }

  return train_step, eval_step


# ----------------------------------------------------------------------------------------------------------------
# Reports
# ----------------------------------------------------------------------------------------------------------------
THRESHOLDS_JSON = run_dir.THRESHOLDS_JSON  # in best/: a multi-label model's per-class thresholds (validation)


def write_report(
  workdir: pathlib.Path, step: int, report: dict, class_names: tuple[str, ...], scores: dict | None = None
) -> None:
  """`metrics.json` (latest evaluation), `confusion_matrix.csv`, the PNG charts and a line of `eval_log.jsonl`;
  for a multi-label model `per_class_ap.png`, `pr_curves.png` and, when this step is the best state,
  `best/thresholds.json` (the per-class thresholds every later `predict` uses by default); `scores` then holds
  the evaluation's per-clip `targets` and `probs` for the PR curves."""
  if "thresholds" in report:
    _write_multilabel_report(workdir, step, report, class_names, scores or {})
    return
  write_metrics(workdir, step, report, log_skip=("per_class", "confusion_matrix"))
  with open(workdir / "confusion_matrix.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["true \\ predicted", *class_names])
    for name, row in zip(class_names, report["confusion_matrix"], strict=True):
      writer.writerow([name, *row])
  write_charts(workdir, step, report)


def _write_multilabel_report(
  workdir: pathlib.Path, step: int, report: dict, class_names, scores: dict
) -> None:
  targets, probs = scores["targets"], scores["probs"]
  write_metrics(workdir, step, report, log_skip=("per_class", "thresholds"))
  head = f"step {step}: mAP {report['mAP'] or 0:.3f}"
  for name, png in plots.multilabel_charts(report, targets, probs, class_names, head).items():
    atomic.write_bytes(workdir / name, png)
  best = workdir / "best" / "best.json"
  if best.is_file() and json.loads(best.read_text())["step"] == step:  # the loop saved this state as best
    atomic.write_text(
      workdir / "best" / THRESHOLDS_JSON,
      json.dumps({"step": step, "labels": list(class_names), "thresholds": report["thresholds"]}, indent=2)
      + "\n",
    )


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------
def train_and_evaluate(config, workdir: str | pathlib.Path) -> dict:
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
  with run_dir.claim(workdir, c.to_dict(), main_process=jax.process_index() == 0) as started:
    return _train(c, workdir, started)


def _train(c: config_lib.RunConfig, workdir: pathlib.Path, started) -> dict:
  """`train_and_evaluate` once the workdir is claimed; `started(step)` writes config.json (run_dir.claim)."""
  per_process = loop.check_batch_size(c.train.batch_size)
  data = setup.ensure_packed(c)
  d, t = c.data, c.train
  train_loader = make_loader(
    d.dir, d.train_split, batch_size=per_process, train=True, clip_seconds=d.clip_seconds, seed=t.seed,
    worker_count=d.worker_count, sampling=t.sampling, short_clips=d.short_clips,
  )  # fmt: skip
  class_names = train_loader.class_names
  num_classes = len(class_names)
  multi_label = data.multi_label
  if multi_label and c.eval.metric not in config_lib.MULTILABEL_METRICS:
    raise ValueError(
      f"{d.dir} is a multi-label pack: eval.metric={c.eval.metric!r} is not computed for it; use one of "
      f"{', '.join(config_lib.MULTILABEL_METRICS)} (mAP is the usual choice)"
    )
  if not multi_label and c.eval.metric not in config_lib.SUPERVISED_METRICS:
    raise ValueError(
      f"eval.metric={c.eval.metric!r} is a multi-label metric and {d.dir} is single-label; use one of "
      f"{', '.join(config_lib.SUPERVISED_METRICS)}"
    )
  eval_global = setup.eval_global_batch(c)
  data.num_examples(d.eval_split)  # a clear error now for an unknown split, not after the first steps

  def eval_batches():
    # Every window of every clip, as `predict` cuts a file; `summarize` pools them per clip.
    return make_loader(
      d.dir, d.eval_split, batch_size=eval_global // jax.process_count(), train=False,
      clip_seconds=d.clip_seconds, windows=True, short_clips=d.short_clips,
    )  # fmt: skip

  model = make_model(model_config(c, num_classes))
  tx, lr_fn = setup.make_tx(c)
  class_weights = (
    losses.balanced_class_weights(_class_counts(data, d.train_split))
    if t.class_weights == "balanced"
    else None
  )
  bank = None
  if t.noise_p > 0:
    bank = setup.noise_bank(d.dir, data, t.noise_split, t.max_noise_clips, train_loader.clip_samples)
    if bank is None or not len(bank):
      raise ValueError(
        f"train.noise_p={t.noise_p} mixes noise from the pack's {t.noise_split!r} split, but {d.dir} has none: "
        "pack the corpus with a Noise/ folder of background recordings, or set train.noise_p=0"
      )
    bank = jnp.asarray(bank)
  train_step, eval_step = make_steps(c, model, tx, lr_fn, num_classes, class_weights, bank, multi_label)

  def init_state() -> TrainState:
    k_params, k_state = jax.random.split(jax.random.PRNGKey(t.seed))
    dummy = jnp.zeros((1, train_loader.clip_samples), jnp.int16)
    variables = jax.jit(lambda k: model.init({"params": k}, dummy, train=False))(k_params)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    if c.model.init_from:
      params, batch_stats = setup.start_from(c, params, batch_stats)
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
            short_clips=d.short_clips,
          )
        )
      )
      batch_stats = setup.calibrate_batch_stats(model, params, batch_stats, first["audio"], k_state)
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      batch_stats=batch_stats,
      opt_state=tx.init(params),
      rng=k_state,
    )

  latest: dict[str, np.ndarray] = {}  # the last multi-label evaluation's per-clip scores, for its charts

  def summarize(outputs: dict[str, np.ndarray]) -> dict:
    if multi_label:
      targets, probs, loss = clip_scores_multilabel(outputs)
      # Thresholds of maximum F1 on this (validation) split: the F1 reported here is therefore optimistic; the
      # threshold-free mAP picks the best state, and `evaluate` scores other splits at these thresholds.
      thresholds = metrics.choose_thresholds(
        targets, probs, target_precision=c.eval.threshold_precision or None
      )
      latest.update(targets=targets, probs=probs)
      report = metrics.multilabel_report(targets, probs, class_names, thresholds=thresholds)
      report = {k: (float("nan") if v is None and k != "d_prime" else v) for k, v in report.items()}
      return {"loss": loss, "num_windows": int(len(outputs["index"])), **report,
              "thresholds": [float(t) if np.isfinite(t) else None for t in thresholds]}  # fmt: skip
    labels, scores, loss = clip_scores(outputs)
    report = metrics.classification_report(labels, scores, class_names)
    return {"loss": loss, "num_windows": int(len(outputs["index"])), **report}

  task = loop.Task(
    eval_device_keys=("audio", "targets" if multi_label else "label", "mask", "index"),
    device_keys=("audio", "targets" if multi_label else "label", "mask"),
    init_state=init_state,
    train_step=train_step,
    eval_step=eval_step,
    summarize=summarize,
    train_batches=train_loader,
    eval_batches=eval_batches,
    on_eval=lambda step, report: write_report(workdir, step, report, class_names, latest),
    on_start=started,
    # With train.ema_decay, the parameter average is what is evaluated, kept as best and so exported.
    eval_state=(lambda s: s.replace(params=ema_params(s.opt_state))) if t.ema_decay > 0 else None,
  )
  loop_cfg = loop.LoopConfig.from_config(c, t.batch_size)
  result = loop.run(task, loop_cfg, workdir)
  held_out = [s for s in ("test",) if s in data.splits and s not in d.eval_split.split("+")]
  if (
    held_out and jax.process_index() == 0
  ):  # scored once, at the end, by the user: never used to pick a state
    print(
      f"the pack's {held_out[0]!r} split was not used; score it with: python -m animaljax.evaluate "
      f"--model {workdir} --data {d.dir} --split {held_out[0]}",
      file=sys.stderr,
    )
  return result
