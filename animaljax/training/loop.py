"""The one training loop: mesh, sharded batches, the jitted step, logging, evaluation, checkpoints, resume.

A trainer (supervised, SimCLR, ProtoNet) supplies a `Task`: how to build the initial state, a
pure train step, a pure eval step and a host-side summary of the evaluation outputs. `run` does the rest:

* a `jax.sharding.Mesh` over every device with one `data` axis; each batch is sharded along it
  (`make_array_from_process_local_data`, so every process feeds only its own rows), the state is replicated;
* the train step is one `jax.jit` with the state donated; metrics stay on the device and are fetched every
  `log_every` steps (and before any checkpoint or evaluation), so the host rarely stalls the device;
* a non-finite loss stops the run before anything is saved, naming the step and the last good checkpoint
  (`on_nonfinite="stop"`), or (`"skip"`) the jitted step keeps the old params/optimizer state for that step
  and the loop counts and logs the skipped steps;
* TensorBoard scalars (train loss, lr, grad norm, clips/s; every eval metric) in `<workdir>/tensorboard`;
* evaluation every `eval_every` steps over a padded, masked split (every example counted exactly once); the
  best state by `metric` is kept in `<workdir>/best`; optional early stopping after `early_stopping_patience`
  evaluations without improvement;
* restart: if `<workdir>/checkpoints` holds a checkpoint, the state and the data iterator continue from it,
  and `train_log.jsonl` is cut back to that step, so a resumed run logs what an uninterrupted one would.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from animaljax.training.checkpoint import Checkpointer
from animaljax.training.distributed import gather_rows
from animaljax.training.report import EventWriter

# Metrics where smaller is better; every other metric is maximised.
_MINIMISE = ("loss",)
ON_NONFINITE = ("stop", "skip")


class NonFiniteLossError(FloatingPointError, ValueError):
  """Raised when the training loss (or gradient norm) stops being finite (a ValueError: the user fixes the config)."""


class CheckpointDamagedError(ValueError):
  """Every periodic checkpoint of the workdir failed to restore."""


@dataclasses.dataclass
class Task:
  """What a trainer plugs into `run`.

  Attributes:
    init_state: `() -> state` on the host (the loop replicates it over the mesh).
    train_step: pure `(state, batch) -> (state, metrics)`; `batch` holds the `device_keys` arrays, sharded
      along the batch; `metrics` is a dict of scalars and must include "loss".
    eval_step: pure `(state, batch) -> outputs`, each output `(batch, ...)`; must include "mask".
    summarize: host `(outputs concatenated over the split, padding rows removed) -> metrics dict`.
    train_batches: iterable of host batches (numpy dicts, this process's rows); its iterator must support
      grain's `get_state`/`set_state`.
    eval_batches: `() -> iterable of host batches` for one pass over the evaluation split, or None.
    on_eval: optional `(step, metrics) -> None` (writes report files).
    on_start: optional `(start step) -> None`, called on process 0 once the state is built and restored
      (writes config.json: `animaljax.training.workdir.claim`).
    device_keys: batch fields moved to the devices (the rest, like "index", stay on the host).
  """

  init_state: Callable[[], Any]
  train_step: Callable[[Any, dict], tuple[Any, dict]]
  eval_step: Callable[[Any, dict], dict]
  summarize: Callable[[dict[str, np.ndarray]], dict]
  train_batches: Iterable[dict[str, np.ndarray]]
  eval_batches: Callable[[], Iterable[dict[str, np.ndarray]]] | None = None
  on_eval: Callable[[int, dict], None] | None = None
  on_start: Callable[[int], None] | None = None
  device_keys: tuple[str, ...] = ("audio", "label", "mask")
  eval_device_keys: tuple[str, ...] | None = (
    None  # evaluation batch fields on the devices; None = device_keys
  )
  # `state -> state` evaluated and saved as best (the supervised trainer's parameter average); None = as it is.
  eval_state: Callable[[Any], Any] | None = None


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """The loop's own settings (taken from the experiment config by the trainer)."""

  steps: int
  global_batch_size: int
  eval_every: int
  checkpoint_every: int
  keep: int = 2
  async_save: bool = True
  metric: str = "accuracy"
  log_every: int = 10
  log_indices: bool = False
  halt_after: int = 0
  on_nonfinite: str = "stop"  # "stop" | "skip" (see `skip_nonfinite`)
  early_stopping_patience: int = 0  # evaluations without improvement of `metric` before stopping; 0 = off
  tensorboard: bool = True
  clips_per_step: int = 0  # clips one step reads, for the clips/s readout; 0 = global_batch_size

  @classmethod
  def from_config(cls, c, global_batch_size: int, clips_per_step: int = 0) -> LoopConfig:
    """The loop settings of an experiment config (`train`, `eval`, `checkpoint` sections)."""
    t = c.train
    return cls(
      steps=t.steps, global_batch_size=global_batch_size, clips_per_step=clips_per_step,
      eval_every=c.eval.every_steps,
      checkpoint_every=c.checkpoint.every_steps, keep=c.checkpoint.keep, async_save=c.checkpoint.async_save,
      metric=c.eval.metric, log_every=t.log_every, log_indices=t.log_indices, halt_after=t.halt_after,
      on_nonfinite=t.on_nonfinite, early_stopping_patience=c.eval.early_stopping_patience,
    )  # fmt: skip


def make_mesh() -> Mesh:
  """A 1-D mesh over every device of every process, axis `data` (room for an `fsdp` axis later)."""
  return Mesh(np.asarray(jax.devices()), ("data",))


def check_batch_size(global_batch_size: int, what: str = "train.batch_size") -> int:
  """The per-process batch; ValueError unless the global batch splits evenly over devices and processes."""
  devices, processes = jax.device_count(), jax.process_count()
  if global_batch_size <= 0 or global_batch_size % devices:
    raise ValueError(
      f"{what}={global_batch_size} must be a positive multiple of the device count ({devices} devices over "
      f"{processes} process(es)); try {max(devices, global_batch_size // devices * devices)}"
    )
  return global_batch_size // processes


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, keys: Iterable[str]) -> dict[str, jax.Array]:
  """This process's rows -> global arrays sharded along `data` (rows of all processes, in process order)."""
  sharding = NamedSharding(mesh, P("data"))
  return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}


def skip_nonfinite(train_step: Callable[[Any, dict], tuple[Any, dict]]) -> Callable:
  """Wraps a pure train step so a step whose loss or gradient norm is not finite changes nothing but `step`.

  Selection happens inside the jitted step (`jnp.where` on every leaf, as `optax.apply_if_finite` does for
  updates), so params, BatchNorm statistics and optimizer moments stay those of the last finite step while
  the step counter (and so the data order and the lr schedule) moves on. The metrics gain `skipped` (0/1).
  The state must be a flax struct with a `step` field.
  """

  def step(state: Any, batch: dict) -> tuple[Any, dict]:
    new_state, metrics = train_step(state, batch)
    ok = jnp.isfinite(metrics["loss"])
    if "grad_norm" in metrics:
      ok &= jnp.isfinite(metrics["grad_norm"])
    kept = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, state)
    return kept.replace(step=new_state.step), {**metrics, "skipped": (~ok).astype(jnp.float32)}

  return step


def _is_better(value: float, best: float | None, metric: str) -> bool:
  if best is None:
    return True
  return value < best if metric in _MINIMISE else value > best


def _say(bar, text: str) -> None:
  if jax.process_index() == 0:
    (bar.write if bar is not None else print)(text, file=sys.stderr)


def _truncate_log(path: pathlib.Path, step: int) -> None:
  """Keeps only the lines of steps <= `step` (a resumed run re-does the later ones)."""
  if not path.is_file():
    return
  keep = []
  for line in path.read_text().splitlines():
    try:
      if json.loads(line)["step"] <= step:
        keep.append(line)
    except (json.JSONDecodeError, KeyError, TypeError):  # a line torn by a kill mid-write
      continue
  path.write_text("".join(line + "\n" for line in keep))


def _restore_newest_intact(ckpt: Checkpointer, state: Any, train_iter: Any) -> tuple[Any, int | None]:
  """`(state, step)` of the newest periodic checkpoint that restores, or `(state, None)` when there is none.

  A damaged checkpoint (a truncated or overwritten file, a disk error) is named in one line and the next older
  one is tried; the damaged one stays where it is until the resumed run saves that step again. When every
  checkpoint is damaged the run stops with a message naming them instead of training from scratch over them.
  """
  damaged = []
  for step in sorted(ckpt.all_steps(), reverse=True):
    try:
      return ckpt.restore(state, train_iter, step), step
    except Exception as err:  # noqa: BLE001 - orbax/TensorStore raise many types for a damaged file
      reason = " ".join(str(err).split())[:300]
      damaged.append(step)
      _say(
        None,
        f"checkpoint {ckpt.path(step)} is damaged ({type(err).__name__}: {reason}); trying the one before it",
      )
  if damaged:
    raise CheckpointDamagedError(
      f"every checkpoint of {ckpt.workdir} is damaged (steps {', '.join(map(str, damaged))}); move or delete "
      f"{' and '.join(ckpt.path(s) for s in damaged)} to train from scratch in this workdir, or use another --workdir"
    )
  return state, None


def evaluate(task: Task, state: Any, eval_step: Callable, mesh: Mesh) -> dict:
  """One pass over `task.eval_batches()`: gathers the outputs, drops padding rows, summarises."""
  outputs: dict[str, list[np.ndarray]] = collections.defaultdict(list)
  for batch in task.eval_batches():
    out = jax.device_get(
      eval_step(state, shard_batch(batch, mesh, task.eval_device_keys or task.device_keys))
    )
    for k, v in out.items():
      outputs[k].append(np.asarray(v))
  joined = {k: np.concatenate(v) for k, v in outputs.items()}
  mask = joined.pop("mask").astype(bool)
  return task.summarize({k: v[mask] for k, v in joined.items()})


def run(task: Task, cfg: LoopConfig, workdir: str | pathlib.Path) -> dict:
  """Trains to `cfg.steps` (resuming from the workdir's last checkpoint); returns the final metrics.

  Returns:
    The last evaluation's metrics plus `step`, `train_loss` (mean of the last logged window), `best`
    (`{"step", "metric", "value", "path"}`) and `wall_s`.
  Raises:
    NonFiniteLossError: the loss or gradient norm became NaN/inf; nothing from that step on is saved.
  """
  from tqdm.auto import tqdm

  t_start = time.perf_counter()
  workdir = pathlib.Path(workdir).absolute()
  if cfg.on_nonfinite not in ON_NONFINITE:
    raise ValueError(f"unknown train.on_nonfinite {cfg.on_nonfinite!r}; valid: {', '.join(ON_NONFINITE)}")
  mesh = make_mesh()
  check_batch_size(cfg.global_batch_size)
  replicated = NamedSharding(mesh, P())
  state = jax.device_put(task.init_state(), replicated)
  train_iter = iter(task.train_batches)
  ckpt = Checkpointer(workdir, every_steps=cfg.checkpoint_every, keep=cfg.keep, async_save=cfg.async_save)
  log_path = workdir / "train_log.jsonl"
  state, last_good = _restore_newest_intact(ckpt, state, train_iter)
  start = 0 if last_good is None else int(jax.device_get(state.step))
  if jax.process_index() == 0:
    if task.on_start is not None:
      task.on_start(start)
    _truncate_log(log_path, start)
  best = ckpt.best()
  best_value = best["value"] if best else None

  step_fn = skip_nonfinite(task.train_step) if cfg.on_nonfinite == "skip" else task.train_step
  train_step = jax.jit(step_fn, donate_argnums=0, out_shardings=(replicated, replicated))
  eval_step = jax.jit(task.eval_step, out_shardings=replicated)  # replicated: every process can read it

  show = jax.process_index() == 0
  events = EventWriter(workdir / "tensorboard", purge_step=start or None, enabled=show and cfg.tensorboard)
  bar = tqdm(
    total=cfg.steps, initial=start, unit="step", dynamic_ncols=True, disable=not show, file=sys.stderr
  )
  if start:
    _say(bar, f"resumed from {ckpt.path(start)} at step {start}")
  pending: list[tuple[int, Any, list[int] | None]] = []
  window_losses: list[float] = []
  t_window, clips_window = time.perf_counter(), 0
  metrics: dict = {}
  skipped: list[int] = []  # steps whose update was skipped (on_nonfinite="skip"), in this process's run
  evals_without_gain = 0
  stopped_early: int | None = None
  stop_marker = workdir / "stopped_early.json"
  end = cfg.steps
  if start and stop_marker.is_file() and json.loads(stop_marker.read_text()).get("step") == start:
    # Re-running the command of a run that stopped early must not train on (nor forget why it stopped).
    stopped_early = end = start
    _say(bar, f"this run stopped early at step {start} ({stop_marker}); delete that file to train on")

  def flush() -> None:
    """Fetches the pending steps' metrics, stops on a non-finite loss, logs, updates the bar."""
    nonlocal t_window, clips_window
    fetched = jax.device_get([m for _, m, _ in pending])
    lines = []
    dt = max(time.perf_counter() - t_window, 1e-9)
    for (step, _, index), m in zip(pending, fetched, strict=True):
      m = {k: float(v) for k, v in m.items()}
      if m.get("skipped"):
        skipped.append(step)
        _say(bar, f"step {step}: non-finite loss ({m['loss']}) or gradient norm, update skipped "
                  f"({len(skipped)} step(s) skipped so far; train.on_nonfinite='skip')")  # fmt: skip
        lines.append(json.dumps({"step": step, **m, **({"index": index} if index is not None else {})}))
        continue
      bad = [k for k in ("loss", "grad_norm") if k in m and not math.isfinite(m[k])]
      if bad:
        raise NonFiniteLossError(
          f"non-finite {bad[0]} ({m[bad[0]]}) at step {step}: training stopped, nothing saved from this step on. "
          f"Last good checkpoint: {ckpt.path(last_good)}"
          + (f" (step {last_good}); re-running the same command resumes from it" if last_good else "")
          + ". Lower train.lr, raise train.warmup_steps or set train.grad_clip."
        )
      window_losses.append(m["loss"])
      lines.append(json.dumps({"step": step, **m, **({"index": index} if index is not None else {})}))
      events.scalars(step, {k: v for k, v in m.items() if k != "skipped"}, prefix="train/")
    if pending:
      events.scalars(pending[-1][0], {"clips_per_s": clips_window / dt}, prefix="train/")
    if show and lines:
      with log_path.open("a") as f:
        f.write("\n".join(lines) + "\n")
      bar.set_postfix(loss=f"{np.mean(window_losses[-len(lines) :]):.4f}", clips_s=f"{clips_window / dt:.1f}")
      bar.update(len(lines))
    pending.clear()
    t_window, clips_window = time.perf_counter(), 0

  try:
    for step in range(start + 1, end + 1):
      batch = next(train_iter)
      state, step_metrics = train_step(state, shard_batch(batch, mesh, task.device_keys))
      # Every process's rows in global-batch order (a collective, hence only when asked for).
      index = [int(i) for i in gather_rows(batch["index"])] if cfg.log_indices and "index" in batch else None
      pending.append((step, step_metrics, index))
      clips_window += cfg.clips_per_step or cfg.global_batch_size
      last = step == cfg.steps
      save_due = step % cfg.checkpoint_every == 0 or last
      eval_due = task.eval_batches is not None and (step % cfg.eval_every == 0 or last)
      halt = cfg.halt_after and step == cfg.halt_after
      if step % cfg.log_every == 0 or save_due or eval_due or halt:
        flush()
      if halt:  # a simulated crash: no save of this step, nothing more
        _say(bar, f"halting after step {step} (train.halt_after)")
        break
      if save_due:
        if ckpt.save(step, state, train_iter, force=last):
          last_good = step
      if eval_due:
        scored = state if task.eval_state is None else task.eval_state(state)
        metrics = evaluate(task, scored, eval_step, mesh)
        value = metrics.get(cfg.metric)
        if value is None:
          raise ValueError(f"eval.metric {cfg.metric!r} is not computed; choose one of {sorted(metrics)}")
        if _is_better(value, best_value, cfg.metric):
          best_value = value
          evals_without_gain = 0
          ckpt.save_best(step, scored, cfg.metric, value)
        else:
          evals_without_gain += 1
        if task.on_eval is not None and jax.process_index() == 0:
          task.on_eval(step, metrics)
        events.scalars(step, metrics, prefix="eval/")
        events.flush()
        summary = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        _say(bar, f"eval step {step}: {summary}  (best {cfg.metric}={best_value:.4f})")
        if cfg.early_stopping_patience and evals_without_gain >= cfg.early_stopping_patience and not last:
          stopped_early = step
          if not save_due:  # the final state is saved, so re-running the command does not train on
            ckpt.save(step, state, train_iter, force=True)
          if show:
            stop_marker.write_text(
              json.dumps({"step": step, "metric": cfg.metric, "best": best_value}) + "\n"
            )
          _say(bar, f"early stopping at step {step}: {cfg.metric} has not improved on {best_value:.4f} for "
                    f"{evals_without_gain} evaluation(s) (eval.early_stopping_patience="
                    f"{cfg.early_stopping_patience}); the best state is in {workdir / 'best'}")  # fmt: skip
          break
  finally:
    bar.close()
    events.close()
    ckpt.wait()
    ckpt.close()
  return {
    **metrics,
    "step": int(jax.device_get(state.step)),
    "train_loss": float(np.mean(window_losses[-max(cfg.log_every, 1) :])) if window_losses else None,
    "best": ckpt.best(),
    "skipped_steps": skipped,
    "stopped_early": stopped_early,
    "wall_s": time.perf_counter() - t_start,
  }
