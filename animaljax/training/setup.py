"""What every trainer does before its loop: optimizer, evaluation batch, weights to start from, BatchNorm calibration.

The three trainers (supervised, SimCLR, ProtoNet) differ in their model, steps and evaluation; everything here
is the same for all of them, so it lives once:

* `make_tx(c)`: the optimizer and learning-rate schedule of `c.train`;
* `eval_global_batch(c)`: `c.eval.batch_size` rounded up to the device count (padding rows are masked);
* `start_from(c, params, batch_stats)`: `model.init_from` for every trainer, from a converted PANNs/AST dir
  (`python -m animaljax.convert`; `model.keep_head` also takes its head), a training workdir of any trainer
  (its best state's encoder) or a SimCLR run's `encoder/` (a converted dir);
* `ensure_packed(c)`: the pack at `c.data.dir`, packed on first use (process 0 packs, the others wait);
* `augment_features`: SpecAugment as `c.train` configures it, every trainer's feature hook;
* `noise_bank`: clips of the pack's noise split for on-device noise mixing (supervised and SimCLR);
* `calibrate_batch_stats`: BatchNorm running statistics from one training batch.
"""

from __future__ import annotations

import pathlib

import flax
import jax
import jax.numpy as jnp
import numpy as np

from animaljax.augment import spec_augment
from animaljax.data.loader import PackedDataset
from animaljax.training import workdir as run_dir
from animaljax.training.config import RunConfig, TrainConfig
from animaljax.training.state import make_optimizer, merge_pretrained, with_ema


def _source_kwargs(c: RunConfig) -> dict:
  """The `make_source` arguments of `c.data` (the one translation `pack` uses too: `data.sources.source_kwargs`)."""
  from animaljax.data.sources import CONFIG_NAMES, source_kwargs

  d = c.data
  folds = None
  if c.smoke and d.source == "esc50":  # only the folds the smoke run reads: packs 4x faster
    folds = sorted({int(s[4:]) for s in f"{d.train_split}+{d.eval_split}".split("+")})
  return source_kwargs(
    d.source, root=d.root, category=d.category, seed=c.train.seed, folds=folds, group_by=d.group_by or None,
    synthetic_classes=d.synthetic_classes, synthetic_clips_per_class=d.synthetic_clips_per_class,
    synthetic_clip_seconds=d.synthetic_clip_seconds, synthetic_multi_label=d.synthetic_multi_label,
    label_column=d.label_column, classes=d.classes, unannotated=d.unannotated,
    include_unbalanced=d.include_unbalanced or None,
    min_overlap_seconds=d.min_overlap_seconds if d.min_overlap_seconds >= 0 else None, names=CONFIG_NAMES,
  )  # fmt: skip


def ensure_packed(c: RunConfig) -> PackedDataset:
  """The packed dataset at `c.data.dir`, packing it first if it is missing and `pack_on_first_use` is set."""
  from animaljax.data.sources import make_source

  d = c.data
  path = pathlib.Path(d.dir)
  if not (path / "summary.json").is_file():
    if not d.pack_on_first_use:
      raise FileNotFoundError(
        f"no packed dataset at {path}; pack it with `python -m animaljax.pack --source {d.source} "
        f"{'--root <corpus> ' if d.source != 'synthetic' else ''}--sample-rate {d.sample_rate} --out {path}` "
        "or set data.pack_on_first_use=True"
      )
    from animaljax.data.packing import pack
    from animaljax.training import distributed

    # Several processes: process 0 packs into the (shared) folder while the others wait for it.
    distributed.on_process_zero(
      f"pack:{path}",
      lambda: pack(
        make_source(d.source, **_source_kwargs(c)), path, sample_rate=d.sample_rate, clip_mode=d.clip_mode,
        window_seconds=d.window_seconds, hop_seconds=d.hop_seconds or None, file_format=d.file_format,
        progress=True,
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
  packed_by = (data.summary.get("splitting") or {}).get("group_by")
  if d.group_by and packed_by is not None and packed_by != d.group_by:  # a pack made before says nothing
    raise ValueError(
      f"{path} was packed with group_by={packed_by!r}, not data.group_by={d.group_by!r}: its splits were carved "
      "with another grouping; point data.dir at a new folder to pack it again"
    )
  return data


def augment_features(feats: jax.Array, key: jax.Array, t: TrainConfig) -> jax.Array:
  """SpecAugment as `train` configures it (identity when `t.specaugment` is off); every trainer's feature_fn."""
  if not t.specaugment:
    return feats
  return spec_augment(
    key, feats, time_masks=t.time_masks, time_width=t.time_width, freq_masks=t.freq_masks,
    freq_width=t.freq_width,
  )  # fmt: skip


def noise_bank(
  data_dir: str, data: PackedDataset, split: str, max_clips: int, samples: int
) -> np.ndarray | None:
  """Up to `max_clips` clips of the pack's `split` (its noise split), `(n, samples)` int16, or None if the pack
  has no such split or it is empty. Short clips are zero-padded by the loader; `augment.random_noise_mix`
  crops or tiles each to the training row."""
  from animaljax.data.loader import make_loader

  if not split or split not in data.splits or data.num_examples(split) == 0:
    return None
  n = min(data.num_examples(split), max_clips)
  first = next(iter(make_loader(
    data_dir, split, batch_size=n, train=False, clip_seconds=samples / data.sample_rate, shard_by_process=False,
  )))  # fmt: skip
  return first["audio"][first["mask"]]


def make_tx(c: RunConfig):
  """`(optax transformation, lr schedule)` of `c.train`, tracking a parameter average when `train.ema_decay`."""
  t = c.train
  tx, lr_fn = make_optimizer(
    optimizer=t.optimizer, lr=t.lr, steps=t.steps, warmup_steps=t.warmup_steps, schedule=t.schedule,
    weight_decay=t.weight_decay, grad_clip=t.grad_clip,
  )  # fmt: skip
  return with_ema(tx, t.ema_decay), lr_fn


def eval_global_batch(c: RunConfig) -> int:
  """The global evaluation batch: `eval.batch_size` rounded up to a multiple of the device count."""
  return -(-c.eval.batch_size // jax.device_count()) * jax.device_count()


def start_from(c: RunConfig, params: dict, batch_stats: dict) -> tuple[dict, dict]:
  """`params`/`batch_stats` with the weights at `c.model.init_from` written over them (see the module docstring).

  Every trainer's model keeps the classifier's `encoder` (and `head`) at the top of its parameters, so one
  merge serves them all; leaves the source does not have (a new head, SimCLR's projection) keep their values.
  An ensemble (`model.members > 1`) from a single model gets its weights in every member (the heads stay apart
  unless kept); from an ensemble of as many members, each member's own.
  """
  from animaljax.models.pretrained import load_converted

  def each_member(tree: dict, init: dict) -> dict:
    """An ensemble from a single model: its weights in every member (leaves one member axis short of `init`'s)."""
    if c.model.members == 1:
      return tree
    shapes = {k: v.shape for k, v in flax.traverse_util.flatten_dict(init, sep="/").items()}
    flat = flax.traverse_util.flatten_dict(tree, sep="/")
    for k, v in flat.items():
      if k in shapes and tuple(np.shape(v)) == shapes[k][1:]:
        flat[k] = np.broadcast_to(v, shapes[k])
    return flax.traverse_util.unflatten_dict(flat, sep="/")

  where = pathlib.Path(c.model.init_from)
  if run_dir.is_run(where):
    enc_params, enc_stats, path = run_dir.read_encoder(where)
    params = merge_pretrained(params, each_member({"encoder": enc_params}, params), path)
    if batch_stats and enc_stats:
      batch_stats = merge_pretrained(batch_stats, each_member({"encoder": enc_stats}, batch_stats), path)
    return params, batch_stats
  if not (where / "model.json").is_file():
    raise FileNotFoundError(
      f"model.init_from={str(where)!r} is neither a converted model (model.json; python -m animaljax.convert) nor "
      "a training workdir (config.json and checkpoints)"
    )
  _, variables = load_converted(where, keep_head=c.model.keep_head)
  params = merge_pretrained(params, each_member(variables["params"], params), str(where))
  if batch_stats:
    loaded = each_member(variables.get("batch_stats", {}), batch_stats)
    batch_stats = merge_pretrained(batch_stats, loaded, str(where))
  return params, batch_stats


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
