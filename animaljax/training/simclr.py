"""SimCLR self-supervised pretraining: `train_and_evaluate(config, workdir)` with `config.trainer = "simclr"`.

Each clip of the global batch becomes two views on the device (random crop to `simclr.view_seconds`, gain,
noise mixing at a random SNR when the pack has a noise split, time shift, then SpecAugment through the model's
`feature_fn`); the encoder's `out["embedding"]` goes through a 2-layer projection MLP and `nt_xent` contrasts
each view with its partner against every other view of the *global* batch. Labels are never read by the train
step, so any source works, an unlabelled folder (label -1) included.

Evaluation is a linear probe: frozen embeddings of a labelled `probe.train_split` and `probe.eval_split`, a
multinomial logistic regression fitted in jax, `probe_accuracy` logged like any metric (`metrics.json`,
`eval_log.jsonl`, TensorBoard). With `probe.at_init` the same probe on the initial (random) encoder is logged
at step 0, so the log shows whether pretraining helps.

Param tree: `{"encoder", "head", "projection"}` (`head` is the classifier's unused 1-way head, kept so the
forward pass is exactly `Classifier`'s). At the end the encoder is written to `<workdir>/encoder/` as a
converted-model folder (`models.pretrained.save_converted`, no head), which `model.init_from=<workdir>/encoder`
loads for supervised fine-tuning or ProtoNet with the same `model.encoder`/`width`/`data.sample_rate`.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from animaljax.augment import random_crop, random_gain, random_noise_mix, random_time_shift
from animaljax.data.loader import make_loader
from animaljax.losses.contrastive import nt_xent
from animaljax.models.classifier import Classifier, ClassifierConfig
from animaljax.training import config as config_lib
from animaljax.training import loop, setup
from animaljax.training import workdir as run_dir
from animaljax.training.config import RunConfig, model_config
from animaljax.training.report import write_metrics
from animaljax.training.state import TrainState

ENCODER_DIR = "encoder"


# ----------------------------------------------------------------------------------------------------------------
# Model and views
# ----------------------------------------------------------------------------------------------------------------
class ProjectionHead(nn.Module):
  """SimCLR's projection g(h): Dense(hidden) -> ReLU -> Dense(dim); (batch, D) -> (batch, dim) fp32."""

  hidden: int = 512
  dim: int = 128

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Dense(self.hidden, name="dense1")(x.astype(jnp.float32)))
    return nn.Dense(self.dim, name="dense2")(x)


class SimclrModel(nn.Module):
  """`Classifier` (sharing its scope, so params stay `{"encoder", "head", ...}`) + `projection`.

  Call: `wave (batch, time) -> (projection (batch, dim), out)`, `out` as `Classifier`'s.
  """

  config: ClassifierConfig
  proj_hidden: int = 512
  proj_dim: int = 128

  def setup(self):
    self.classifier = Classifier(self.config)
    nn.share_scope(self, self.classifier)
    self.projection = ProjectionHead(self.proj_hidden, self.proj_dim)

  def __call__(self, wave: jax.Array, *, train: bool = False, feature_fn=None):
    _, out = self.classifier(wave, train=train, feature_fn=feature_fn)
    return self.projection(out["embedding"]), out


@dataclasses.dataclass(frozen=True)
class ViewConfig:
  """How one view is cut from a loaded row (all on the device, per example).

  Attributes:
    view_samples: crop length (<= the row length).
    gain_db: (lo, hi) uniform random gain.
    max_shift: circular time shift of up to this many samples either way.
    snr_db: (lo, hi) uniform SNR of the added noise clip (used only with a noise bank).
    noise_p: probability that a view gets noise.
  """

  view_samples: int
  gain_db: tuple[float, float] = (-6.0, 6.0)
  max_shift: int = 0
  snr_db: tuple[float, float] = (5.0, 20.0)
  noise_p: float = 0.5


def make_views(key: jax.Array, audio: jax.Array, vc: ViewConfig, noise_bank: jax.Array | None) -> jax.Array:
  """(B, T) int16 -> (2B, view_samples) float32: rows `i` and `B + i` are two views of clip `i`."""

  def view(k: jax.Array) -> jax.Array:
    k_crop, k_gain, k_noise, k_shift = jax.random.split(k, 4)
    x = random_gain(k_gain, random_crop(k_crop, audio, vc.view_samples), vc.gain_db)
    if noise_bank is not None:
      x = random_noise_mix(k_noise, x, noise_bank, vc.snr_db, p=vc.noise_p)
    return random_time_shift(k_shift, x, vc.max_shift)

  k1, k2 = jax.random.split(key)
  return jnp.concatenate([view(k1), view(k2)])


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------
def make_steps(c: RunConfig, model: SimclrModel, tx, lr_fn, vc: ViewConfig, noise_bank):
  """The pure train and eval steps for `loop.Task`; the train step never reads `batch["label"]`."""
  t, s = c.train, c.simclr

  def feature_fn(feats: jax.Array, key: jax.Array) -> jax.Array:
    return setup.augment_features(feats, key, t)

  def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
    k_view, k_drop, k_aug = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)
    views = make_views(k_view, batch["audio"], vc, noise_bank)
    b = batch["audio"].shape[0]

    def loss_fn(params):
      (z, _), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, views, train=True, feature_fn=feature_fn,
        rngs={"dropout": k_drop, "augment": k_aug}, mutable=["batch_stats"],
      )  # fmt: skip
      # z is the global (2B, dim) array: the loss sees the negatives of every device and host.
      return nt_xent(z[:b], z[b:], s.temperature), (z, updates.get("batch_stats", state.batch_stats))

    (loss, (z, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    zn = z / (jnp.linalg.norm(z, axis=-1, keepdims=True) + 1e-12)
    new_state = state.apply_gradients(grads, batch_stats, tx)
    return new_state, {
      "loss": loss,
      "positive_cosine": jnp.mean(jnp.sum(zn[:b] * zn[b:], axis=-1)),  # -> 1 as views align
      "grad_norm": optax.global_norm(grads),
      "lr": lr_fn(state.step),
    }

  def eval_step(state: TrainState, batch: dict) -> dict:
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    _, out = model.apply(variables, batch["audio"], train=False)
    return {"embedding": out["embedding"].astype(jnp.float32), "label": batch["label"], "mask": batch["mask"]}

  return train_step, eval_step


# ----------------------------------------------------------------------------------------------------------------
# Linear probe
# ----------------------------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit_logistic(x, y, num_classes: int, steps: int, lr: float, weight_decay: float):
  """Full-batch Adam on the mean softmax cross-entropy + `weight_decay/2 |W|^2`; returns (W, b)."""
  tx = optax.adam(lr)
  params = (jnp.zeros((x.shape[1], num_classes)), jnp.zeros((num_classes,)))

  def loss(params):
    w, b = params
    ce = optax.softmax_cross_entropy_with_integer_labels(x @ w + b, y).mean()
    return ce + 0.5 * weight_decay * jnp.sum(w * w)

  def step(carry, _):
    params, opt_state = carry
    updates, opt_state = tx.update(jax.grad(loss)(params), opt_state)
    return (optax.apply_updates(params, updates), opt_state), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def linear_probe(
  train_x: np.ndarray,
  train_y: np.ndarray,
  eval_x: np.ndarray,
  eval_y: np.ndarray,
  *,
  steps: int = 300,
  lr: float = 0.05,
  weight_decay: float = 1e-3,
) -> dict[str, float]:
  """Multinomial logistic regression on frozen embeddings: fit on train, accuracy on eval.

  Features are standardised with the train split's mean and std (embeddings of a random encoder and of a
  trained one differ in scale by orders of magnitude; the same lr must suit both). Unlabelled rows (label < 0)
  are ignored.

  Args:
    train_x, eval_x: (n, D) embeddings; train_y, eval_y: (n,) int labels.
  Returns:
    `{"probe_accuracy": eval accuracy, "probe_train_accuracy": train accuracy}`.
  Raises:
    ValueError: fewer than two labelled classes in the train split, or no labelled eval row.
  """
  tr, ev = np.asarray(train_y) >= 0, np.asarray(eval_y) >= 0
  train_x, train_y, eval_x, eval_y = train_x[tr], train_y[tr], eval_x[ev], eval_y[ev]
  if len(np.unique(train_y)) < 2 or not len(eval_y):
    raise ValueError(
      f"the linear probe needs labelled clips of at least two classes in probe.train_split and some in "
      f"probe.eval_split (got {len(np.unique(train_y))} class(es), {len(eval_y)} eval clips); point "
      "probe.data_dir at a labelled pack or set probe.train_split='' to turn the probe off"
    )
  mean, std = train_x.mean(0), train_x.std(0) + 1e-6
  num_classes = int(max(train_y.max(), eval_y.max())) + 1
  xs = jnp.asarray((train_x - mean) / std, jnp.float32)
  w, b = _fit_logistic(xs, jnp.asarray(train_y, jnp.int32), num_classes, steps, lr, weight_decay)
  w, b = np.asarray(w), np.asarray(b)

  def accuracy(x, y):
    return float(np.mean(np.argmax(((x - mean) / std) @ w + b, axis=-1) == y))

  return {"probe_accuracy": accuracy(eval_x, eval_y), "probe_train_accuracy": accuracy(train_x, train_y)}


# ----------------------------------------------------------------------------------------------------------------
# Config, data
# ----------------------------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------
def train_and_evaluate(config, workdir: str | pathlib.Path) -> dict:
  """Pretrains an encoder with SimCLR as `config` says; resumes if `workdir` holds a checkpoint.

  Writes `config.json`, `train_log.jsonl`, `tensorboard/`, `checkpoints/`, and with a probe `eval_log.jsonl`,
  `metrics.json` and `best/` (best `probe_accuracy`), and at the end `encoder/` (for `model.init_from`).

  Returns:
    The last evaluation's metrics (`probe_accuracy`, `probe_train_accuracy`, `embedding_std`) plus `step`,
    `train_loss`, `best`, `wall_s`, `probe_accuracy_init` (with `probe.at_init`) and `encoder` (its path).
  """
  workdir = pathlib.Path(workdir).absolute()
  c = config_lib.resolve(config, workdir)
  if c.trainer != "simclr":
    raise ValueError(f"config.trainer is {c.trainer!r}; the SimCLR trainer needs trainer='simclr'")
  with run_dir.claim(workdir, c.to_dict(), main_process=jax.process_index() == 0) as started:
    return _train(c, workdir, started)


def _train(c: RunConfig, workdir: pathlib.Path, started) -> dict:
  """`train_and_evaluate` once the workdir is claimed; `started(step)` writes config.json (run_dir.claim)."""
  per_process = loop.check_batch_size(c.train.batch_size)
  data = setup.ensure_packed(c)
  d, t, s, p = c.data, c.train, c.simclr, c.probe
  train_loader = make_loader(
    d.dir, d.train_split, batch_size=per_process, train=True, clip_seconds=d.clip_seconds, seed=t.seed,
    worker_count=d.worker_count, short_clips=d.short_clips,
  )  # fmt: skip
  view_samples = round(s.view_seconds * data.sample_rate)
  vc = ViewConfig(view_samples, tuple(s.gain_db), round(s.max_shift_seconds * data.sample_rate),
                  tuple(s.noise_snr_db), s.noise_p)  # fmt: skip
  bank = setup.noise_bank(d.dir, data, s.noise_split, s.max_noise_clips, view_samples)
  noise_bank = None if bank is None or not len(bank) else jnp.asarray(bank)

  # AST's positional grid is laid out for one input length: the views' length. CNNs pool over any length,
  # so the probe sees whole rows.
  mc = model_config(c, 1, clip_seconds=s.view_seconds)
  probe_seconds = s.view_seconds if mc.is_ast else d.clip_seconds
  model = SimclrModel(mc, s.proj_hidden, s.proj_dim)
  tx, lr_fn = setup.make_tx(c)
  train_step, eval_step = make_steps(c, model, tx, lr_fn, vc, noise_bank)

  cache: dict = {}

  def init_state() -> TrainState:
    if "state" not in cache:  # host copy: the loop donates the device state, the export reuses the template
      k_params, k_state, k_cal = jax.random.split(jax.random.PRNGKey(t.seed), 3)
      dummy = jnp.zeros((1, view_samples), jnp.float32)
      variables = jax.jit(lambda k: model.init({"params": k}, dummy, train=False))(k_params)
      params, batch_stats = variables["params"], variables.get("batch_stats", {})
      if c.model.init_from:  # continue from converted weights or another run's encoder, as every trainer can
        params, batch_stats = setup.start_from(c, params, batch_stats)
      elif batch_stats:
        first = next(iter(make_loader(
          d.dir, d.train_split, batch_size=t.batch_size, train=True, clip_seconds=d.clip_seconds, seed=t.seed,
          shard_by_process=False, short_clips=d.short_clips,
        )))  # fmt: skip
        views = jax.jit(lambda a: make_views(k_cal, a, vc, noise_bank))(first["audio"])
        batch_stats = setup.calibrate_batch_stats(model, params, batch_stats, views, k_cal)
      state = TrainState(jnp.zeros((), jnp.int32), params, batch_stats, tx.init(params), k_state)
      cache["state"] = jax.device_get(state)
    return cache["state"]

  probe_on = bool(p.train_split and p.eval_split)
  eval_batches = summarize = None
  if probe_on:
    from animaljax.data.shard_source import PackedDataset

    probe_data = PackedDataset(p.data_dir)
    n_probe_train = probe_data.num_examples(p.train_split)
    probe_data.num_examples(p.eval_split)  # a clear error now for an unknown split
    eval_global = setup.eval_global_batch(c)

    def eval_batches():
      # One pass over the probe's train split, then its eval split; padding rows are masked, so the first
      # `n_probe_train` rows that reach `summarize` are exactly the train split's.
      for split in (p.train_split, p.eval_split):
        yield from make_loader(
          p.data_dir, split, batch_size=eval_global // jax.process_count(), train=False,
          clip_seconds=probe_seconds, short_clips=d.short_clips,
        )  # fmt: skip

    def summarize(outputs: dict[str, np.ndarray]) -> dict:
      x, y = outputs["embedding"], outputs["label"]
      unit = x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)
      result = linear_probe(
        x[:n_probe_train], y[:n_probe_train], x[n_probe_train:], y[n_probe_train:], steps=p.steps, lr=p.lr,
        weight_decay=p.weight_decay,
      )  # fmt: skip
      return {**result, "embedding_std": float(unit.std(axis=0).mean())}  # ~0 means collapsed embeddings

  task = loop.Task(
    init_state=init_state, train_step=train_step, eval_step=eval_step, summarize=summarize,
    train_batches=train_loader, eval_batches=eval_batches,
    on_eval=lambda step, m: write_metrics(workdir, step, m),
    on_start=started,
  )  # fmt: skip
  loop_cfg = loop.LoopConfig.from_config(c, t.batch_size)

  from animaljax.training.checkpoint import Checkpointer

  init_metrics = None
  fresh = Checkpointer(workdir, every_steps=1, keep=1).latest_step() is None
  if probe_on and p.at_init and fresh:
    mesh = loop.make_mesh()
    state0 = jax.device_put(init_state(), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    init_metrics = loop.evaluate(task, state0, jax.jit(eval_step), mesh)
    if jax.process_index() == 0:
      write_metrics(workdir, 0, init_metrics)
  result = loop.run(task, loop_cfg, workdir)
  encoder = export_encoder(workdir, mc, init_state())
  if init_metrics is not None:
    result["probe_accuracy_init"] = init_metrics["probe_accuracy"]
  return {**result, "encoder": str(encoder)}


def export_encoder(
  workdir: pathlib.Path, config: ClassifierConfig, template: TrainState, out: pathlib.Path | None = None
) -> pathlib.Path:
  """Writes the encoder of the run's latest checkpoint to `out` (default `<workdir>/encoder`) as a converted
  model folder without head: `{"params": {"encoder"}, "batch_stats": {"encoder"}}` + `model.json`, the layout
  `model.init_from` reads. `template` gives the state's structure (shapes only are used). Every process calls
  it (orbax restores and saves collectively)."""
  import orbax.checkpoint as ocp

  from animaljax.models.pretrained import save_converted
  from animaljax.training.checkpoint import Checkpointer

  ckpt = Checkpointer(workdir, every_steps=1, keep=1, async_save=False)
  try:
    step = ckpt.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint under {workdir / 'checkpoints'} to export an encoder from")
    sharding = jax.sharding.NamedSharding(loop.make_mesh(), jax.sharding.PartitionSpec())
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype, sharding=sharding),
                            template)  # fmt: skip
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
    state = ckpt.manager.restore(step, args=args)["state"]
  finally:
    ckpt.close()
  variables = {"params": {"encoder": state.params["encoder"]}}
  if state.batch_stats:
    variables["batch_stats"] = {"encoder": state.batch_stats["encoder"]}
  out = pathlib.Path(out or workdir / ENCODER_DIR)
  return save_converted(
    out, config, jax.device_get(variables), detected={"trainer": "simclr", "step": int(step)}, force=True
  )
