"""The train state (a pytree the step donates and orbax saves) and the optimizer built from a config.

`TrainState` holds only arrays: step, params, BatchNorm statistics, optimizer state and the base PRNG key.
The optax transformation is built from the config on every start, so a checkpoint never stores code.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("adamw", "adam_amsgrad")
SCHEDULES = ("cosine", "constant")


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: int32 scalar, the number of updates applied.
    params: the model's `params` collection (fp32).
    batch_stats: BatchNorm running statistics (`{}` for AST).
    opt_state: the optax state of `params`.
    rng: uint32 (2,) raw PRNG key; step `s` draws from `fold_in(rng, s)`, so a resumed run draws the same.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array

  def apply_gradients(self, grads: Any, batch_stats: Any, tx: optax.GradientTransformation) -> TrainState:
    """One optimizer update (every trainer's step ends here): new params, opt state and BN statistics."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    return self.replace(
      step=self.step + 1, params=optax.apply_updates(self.params, updates), batch_stats=batch_stats,
      opt_state=opt_state,
    )  # fmt: skip


def learning_rate_schedule(lr: float, steps: int, warmup_steps: int, schedule: str) -> optax.Schedule:
  """Linear warm-up from 0 to `lr` over `warmup_steps`, then cosine decay to 0 at `steps` (or constant)."""
  warmup_steps = max(0, min(warmup_steps, steps - 1))
  if schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps, max(steps, warmup_steps + 1), 0.0)
  if schedule == "constant":
    warm = optax.linear_schedule(0.0, lr, max(warmup_steps, 1))
    return optax.join_schedules([warm, optax.constant_schedule(lr)], [warmup_steps])
  raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")


def _decay_mask(params: Any) -> Any:
  """Weight decay on kernels and embeddings only, not on biases, norms' scales or BatchNorm parameters."""
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
  *,
  optimizer: str,
  lr: float,
  steps: int,
  warmup_steps: int,
  schedule: str,
  weight_decay: float,
  grad_clip: float,
) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Global-norm clipping (if `grad_clip > 0`) then AdamW or PANNs' Adam with amsgrad; returns (tx, lr_fn)."""
  lr_fn = learning_rate_schedule(lr, steps, warmup_steps, schedule)
  if optimizer == "adamw":
    opt = optax.adamw(lr_fn, weight_decay=weight_decay, mask=_decay_mask)
  elif optimizer == "adam_amsgrad":
    parts = [optax.scale_by_amsgrad()]
    if weight_decay > 0:  # decoupled, as AdamW (PANNs itself trains with no decay)
      parts.append(optax.add_decayed_weights(weight_decay, mask=_decay_mask))
    opt = optax.chain(*parts, optax.scale_by_learning_rate(lr_fn))
  else:
    raise ValueError(f"unknown optimizer {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
  if grad_clip > 0:
    opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
  return opt, lr_fn


def merge_pretrained(init: dict, loaded: dict, where: str) -> dict:
  """Overwrites leaves of the freshly initialised `init` with `loaded` (same paths, same shapes).

  Leaves absent from `loaded` (a new head) keep their initial values. A path in `loaded` that the model does
  not have, or a shape that differs, raises ValueError listing them (first 10), naming `where`.
  """
  flat_init = flax.traverse_util.flatten_dict(init, sep="/")
  flat_loaded = flax.traverse_util.flatten_dict(loaded, sep="/")
  unknown = sorted(set(flat_loaded) - set(flat_init))
  mismatched = [
    f"{k}: checkpoint {tuple(np.shape(v))} vs model {tuple(flat_init[k].shape)}"
    for k, v in flat_loaded.items()
    if k in flat_init and tuple(np.shape(v)) != tuple(flat_init[k].shape)
  ]
  if unknown or mismatched:
    lines = [f"unexpected {k}" for k in unknown[:10]] + mismatched[:10]
    raise ValueError(
      f"init_from {where} does not fit the configured model ({len(unknown)} unknown, {len(mismatched)} "
      f"mismatched leaves); check model.encoder/width/size and data.sample_rate against the converted model:\n  "
      + "\n  ".join(lines)
    )
  merged = {k: jnp.asarray(flat_loaded.get(k, v), dtype=v.dtype) for k, v in flat_init.items()}
  return flax.traverse_util.unflatten_dict(merged, sep="/")


class EmaParams(NamedTuple):
  """The optimizer-state entry `track_ema` keeps: the running average of the parameters."""

  params: Any


def track_ema(decay: float) -> optax.GradientTransformation:
  """A pass-through optax transformation whose state is the exponential moving average of the parameters after
  each update (`ema = decay * ema + (1 - decay) * new params`, starting at the initial parameters, so no
  bias correction is needed). Chain it last; `ema_params(opt_state)` reads the average back.

  Written here rather than taken from optax: `optax.ema` averages the *updates* (gradients), not the
  parameters, and the average lives in the optimizer state so the train state, and every checkpoint written
  without it, keep their structure.
  """

  def init(params):
    return EmaParams(jax.tree.map(lambda p: jnp.array(p, copy=True), params))

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("track_ema needs the parameters: call tx.update(grads, opt_state, params)")
    new = optax.apply_updates(params, updates)
    ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), state.params, new)
    return updates, EmaParams(ema)

  return optax.GradientTransformation(init, update)


def with_ema(tx: optax.GradientTransformation, decay: float) -> optax.GradientTransformation:
  """`tx` followed by `track_ema(decay)`; `tx` itself when `decay` is 0."""
  return optax.chain(tx, track_ema(decay)) if decay > 0 else tx


def ema_params(opt_state: Any) -> Any:
  """The averaged parameters of an optimizer state built by `with_ema`; raises ValueError without one."""
  if isinstance(opt_state, tuple) and opt_state and isinstance(opt_state[-1], EmaParams):
    return opt_state[-1].params
  raise ValueError("the optimizer state holds no parameter average (train.ema_decay is 0)")
