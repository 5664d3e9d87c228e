"""Prototypical networks (Snell et al. 2017): episodic training of the encoder, few-shot evaluation on held-out
classes, and the raw log-mel baseline on the same episodes.

Training: every step is `protonet.episodes_per_step` N-way K-shot episodes (`data.episodes`) drawn from the
training classes only. Support and query clips go through the encoder in one forward pass (BatchNorm sees the
whole episode); each class's prototype is the mean of its support embeddings, a query's logits are the negative
squared Euclidean distances to the prototypes, and the loss is their softmax cross-entropy.

Evaluation (the loop's eval step): every clip of the eval split is embedded ONCE, then
`protonet.eval_episodes` episodes per `(eval_ways, shot)` setting are drawn on the cached embeddings of the
held-out `protonet.eval_classes` only, in numpy; accuracy is the mean over episodes with a 95% interval
`1.96 * std / sqrt(episodes)`. The same episodes are scored with nearest prototypes on the clips' mean log-mel
frames (the model's front end, no learning): the baseline any learnt embedding has to beat.

Outputs in the workdir: what the loop writes, plus `metrics.json` (latest evaluation) and `eval_log.jsonl`.
The head of the classifier exists (the model is the shared `Classifier`) but is never trained or used.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from animaljax.data.episodes import check_episode_shape, draw_episode, examples_by_class, make_episode_loader
from animaljax.data.loader import make_loader
from animaljax.losses.prototypical import prototypical_loss
from animaljax.metrics.fewshot import mean_and_ci95, nearest_prototype_accuracy
from animaljax.models.classifier import make_model
from animaljax.training import config as config_lib
from animaljax.training import loop, setup
from animaljax.training import workdir as run_dir
from animaljax.training.config import ProtonetConfig, RunConfig, model_config
from animaljax.training.report import write_metrics
from animaljax.training.state import TrainState


# ----------------------------------------------------------------------------------------------------------------
# Loss and few-shot scoring
# ----------------------------------------------------------------------------------------------------------------
def mean_log_mel(features: jax.Array) -> jax.Array:
  """The baseline's clip vector: `(batch, frames, bins)` front-end features -> `(batch, bins)` mean over time."""
  return jnp.mean(features.astype(jnp.float32), axis=1)


def episode_accuracies(
  embeddings: np.ndarray,
  labels: np.ndarray,
  *,
  classes,
  n_way: int,
  k_shot: int,
  q_queries: int,
  num_episodes: int,
  seed: int,
) -> np.ndarray:
  """Nearest-prototype accuracy of each of `num_episodes` episodes drawn on cached embeddings.

  Args:
    embeddings: (n, D) one row per clip; labels: (n,) class ids; classes: the ids to draw from (None = all).
    seed: the episode stream (`data.episodes.draw_episode`); the same seed gives the same episodes for any
      embedding of the same clips, which makes two embeddings directly comparable.

  Returns:
    (num_episodes,) float64 query accuracies.
  """
  embeddings = np.asarray(embeddings, np.float64)
  by_class = examples_by_class(labels, classes)
  check_episode_shape(by_class, n_way, k_shot, q_queries)
  accs = np.empty(num_episodes)
  for i in range(num_episodes):
    _, support, query = draw_episode(seed, i, by_class, n_way, k_shot, q_queries)
    accs[i] = nearest_prototype_accuracy(embeddings, support, query)
  return accs


def few_shot_report(
  embeddings: np.ndarray, logmel: np.ndarray | None, labels: np.ndarray, p: ProtonetConfig
) -> dict:
  """Accuracy +- CI per `(p.eval_ways, shot)` on `p.eval_classes`, for the embeddings and the log-mel baseline.

  Keys: `{w}way_{k}shot_accuracy`, `..._ci95`, `..._baseline_accuracy`, `..._baseline_ci95`, and `accuracy`
  (= the last shot setting, the loop's model-selection metric).
  """
  out: dict = {}
  for shot in p.eval_shots:
    args = dict(
      classes=list(p.eval_classes), n_way=p.eval_ways, k_shot=shot, q_queries=p.eval_queries,
      num_episodes=p.eval_episodes, seed=p.eval_seed,
    )  # fmt: skip
    name = f"{p.eval_ways}way_{shot}shot"
    out[f"{name}_accuracy"], out[f"{name}_ci95"] = mean_and_ci95(
      episode_accuracies(embeddings, labels, **args)
    )
    if logmel is not None:
      base = episode_accuracies(logmel, labels, **args)
      out[f"{name}_baseline_accuracy"], out[f"{name}_baseline_ci95"] = mean_and_ci95(base)
    out["accuracy"] = out[f"{name}_accuracy"]
  out["eval_episodes"] = int(p.eval_episodes)
  return out


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------
def check_protonet_config(c: RunConfig, num_classes: int) -> tuple[list[int], list[int]]:
  """(training classes, held-out evaluation classes) after checking `c.protonet`; ValueError on a bad one."""
  p = c.protonet
  held_out = sorted(int(k) for k in p.eval_classes)
  train = sorted(int(k) for k in p.train_classes) or [k for k in range(num_classes) if k not in held_out]
  bad = [k for k in train + held_out if not 0 <= k < num_classes]
  if bad:
    raise ValueError(f"protonet class ids {bad} are outside the dataset's 0..{num_classes - 1}")
  overlap = sorted(set(train) & set(held_out))
  if overlap:
    raise ValueError(
      f"protonet.train_classes and eval_classes share {overlap}: held-out classes must be unseen"
    )
  if p.n_way > len(train):
    raise ValueError(f"protonet.n_way={p.n_way} but only {len(train)} training classes")
  if held_out and p.eval_ways > len(held_out):
    raise ValueError(f"protonet.eval_ways={p.eval_ways} but only {len(held_out)} eval_classes")
  if p.eval_episodes < 1 or not p.eval_shots:
    raise ValueError("protonet.eval_episodes must be >= 1 and eval_shots non-empty")
  return train, held_out


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------
def make_steps(c: RunConfig, model, tx, lr_fn):
  """Pure train and eval steps for `loop.Task`.

  Train batches: `audio (E, N*(K+Q), T)` (support rows first), `label (E, N*(K+Q))` within-episode labels.
  Eval batches: the loader's `audio (B, T)`, `label (B,)`, `mask (B,)`.
  """
  p, t = c.protonet, c.train
  n_support = p.n_way * p.k_shot

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    k_drop, k_aug = jax.random.split(jax.random.fold_in(state.rng, state.step))
    episodes, rows, length = batch["audio"].shape

    def feature_fn(feats: jax.Array, key: jax.Array) -> jax.Array:
      return setup.augment_features(feats, key, t)

    def loss_fn(params):
      (_, out), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["audio"].reshape(episodes * rows, length),
        train=True, feature_fn=feature_fn, rngs={"dropout": k_drop, "augment": k_aug}, mutable=["batch_stats"],
      )  # fmt: skip
      emb = out["embedding"].astype(jnp.float32).reshape(episodes, rows, -1)
      labels = batch["label"]
      loss, acc = jax.vmap(prototypical_loss, in_axes=(0, 0, 0, 0, None))(
        emb[:, :n_support], labels[:, :n_support], emb[:, n_support:], labels[:, n_support:], p.n_way
      )
      return loss.mean(), (acc.mean(), updates.get("batch_stats", state.batch_stats))

    (loss, (accuracy, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = state.apply_gradients(grads, batch_stats, tx)
    grad_norm = optax.global_norm(grads)
    return new_state, {"loss": loss, "accuracy": accuracy, "grad_norm": grad_norm, "lr": lr_fn(state.step)}

  def eval_step(state: TrainState, batch: dict) -> dict:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    _, out = model.apply(variables, batch["audio"], train=False)
    return {
      "embedding": out["embedding"].astype(jnp.float32),
      "logmel": mean_log_mel(out["features"]),
      "label": batch["label"],
      "mask": batch["mask"],
    }

  return train_step, eval_step


def _episode_rows(batch: dict) -> dict:
  """Episode batch -> the loop's `audio`/`label`/`mask` keys (support rows first), shared with evaluation."""
  return {
    "audio": np.concatenate([batch["support"], batch["query"]], axis=1),
    "label": np.concatenate([batch["support_label"], batch["query_label"]], axis=1),
    "mask": np.ones(batch["episode"].shape, bool),
    "index": batch["episode"],
  }


# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------
def train_and_evaluate(config, workdir: str | pathlib.Path) -> dict:
  """Trains the encoder on episodes of the training classes; evaluates few-shot on the held-out classes.

  Returns:
    The last evaluation's metrics (`few_shot_report`) plus the loop's `step`, `train_loss`, `best`, ...
  """
  workdir = pathlib.Path(workdir).absolute()
  c = config_lib.resolve(config, workdir)
  with run_dir.claim(workdir, c.to_dict(), main_process=jax.process_index() == 0) as started:
    return _train(c, workdir, started)


def _train(c: RunConfig, workdir: pathlib.Path, started) -> dict:
  """`train_and_evaluate` once the workdir is claimed; `started(step)` writes config.json (run_dir.claim)."""
  data = setup.ensure_packed(c)
  train_classes, held_out = check_protonet_config(c, len(data.class_names))
  if not held_out:
    raise ValueError("protonet.eval_classes is empty: name the held-out classes to evaluate on")
  d, t, p = c.data, c.train, c.protonet
  per_process = loop.check_batch_size(p.episodes_per_step, "protonet.episodes_per_step")
  episode_args = dict(
    n_way=p.n_way, k_shot=p.k_shot, q_queries=p.q_queries, clip_seconds=d.clip_seconds,
    classes=train_classes, seed=t.seed, short_clips=d.short_clips,
  )  # fmt: skip
  episodes = make_episode_loader(d.dir, d.train_split, episodes_per_batch=per_process, **episode_args)
  train_batches = episodes.dataset.map(_episode_rows)  # still a grain dataset: its iterator checkpoints
  eval_global = setup.eval_global_batch(c)

  def eval_batches():
    return make_loader(
      d.dir, d.eval_split, batch_size=eval_global // jax.process_count(), train=False,
      clip_seconds=d.clip_seconds, short_clips=d.short_clips,
    )  # fmt: skip

  model = make_model(model_config(c, len(data.class_names)))  # the head is built but never trained
  tx, lr_fn = setup.make_tx(c)
  train_step, eval_step = make_steps(c, model, tx, lr_fn)

  def init_state() -> TrainState:
    k_params, k_state = jax.random.split(jax.random.PRNGKey(t.seed))
    dummy = jnp.zeros((1, episodes.clip_samples), jnp.int16)
    variables = jax.jit(lambda k: model.init({"params": k}, dummy, train=False))(k_params)
    params, batch_stats = variables["params"], variables.get("batch_stats", {})
    if c.model.init_from:
      params, batch_stats = setup.start_from(c, params, batch_stats)
    elif batch_stats:  # one whole episode's statistics instead of (0, 1) running values (see supervised)
      first = next(iter(make_episode_loader(d.dir, d.train_split, shard_by_process=False, **episode_args)))
      audio = _episode_rows(first)["audio"]
      batch_stats = setup.calibrate_batch_stats(
        model, params, batch_stats, audio.reshape(-1, audio.shape[-1]), k_state
      )
    return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, opt_state=tx.init(params),
      rng=k_state,
    )  # fmt: skip

  def summarize(outputs: dict[str, np.ndarray]) -> dict:
    return few_shot_report(outputs["embedding"], outputs["logmel"], outputs["label"], p)

  task = loop.Task(
    init_state=init_state, train_step=train_step, eval_step=eval_step, summarize=summarize,
    train_batches=train_batches, eval_batches=eval_batches,
    on_eval=lambda step, report: write_metrics(workdir, step, report),
    on_start=started,
  )  # fmt: skip
  clips = p.episodes_per_step * p.n_way * (p.k_shot + p.q_queries)  # an episode's support and query clips
  loop_cfg = loop.LoopConfig.from_config(c, p.episodes_per_step, clips_per_step=clips)
  return loop.run(task, loop_cfg, workdir)
