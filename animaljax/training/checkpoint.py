"""Orbax checkpoints of a run: the last K train states with their grain iterator, and the best state apart.

Layout under the workdir:
  checkpoints/<step>/state/       the TrainState (params, batch_stats, opt_state, step, rng)
  checkpoints/<step>/data_iter/   the grain iterator position (`grain.checkpoint.CheckpointSave`), per process
  best/<step>/state/              the state with the best evaluation metric so far
  best/best.json                  {"step", "metric", "value"} of that checkpoint

Saves are asynchronous by option (orbax writes in a background thread after copying the arrays to the host);
the iterator position is captured when `save` is called, so it matches the saved state exactly.
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import jax
import orbax.checkpoint as ocp


def _abstract(tree: Any) -> Any:
  """Shapes, dtypes and shardings of `tree`: orbax restores onto the same devices and layout."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _silence_closed_loop_callbacks() -> None:
  """Drops the tracebacks TensorStore reads print after a failed restore, keeping every other one.

  When one read of a damaged checkpoint fails, orbax's restore raises and closes its asyncio loop while the
  other reads are still in flight; each of them then completes into `call_soon_threadsafe` on the closed loop
  and prints a `RuntimeError: Event loop is closed` traceback through `sys.unraisablehook` (measured: 60 of
  them for one damaged CNN checkpoint). The caller reports the damage in one line; those add nothing.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_animaljax_filter", False):
    return

  def hook(unraisable) -> None:
    err = unraisable.exc_value
    if isinstance(err, RuntimeError) and str(err) == "Event loop is closed":
      return
    previous(unraisable)

  hook._animaljax_filter = True
  sys.unraisablehook = hook


class Checkpointer:
  """The periodic (resumable) and best checkpoints of one run.

  Args:
    workdir: the run's folder.
    every_steps: periodic save interval (`save` skips other steps unless forced).
    keep: how many periodic checkpoints to keep.
    async_save: write in the background.
  """

  def __init__(self, workdir: str | pathlib.Path, *, every_steps: int, keep: int, async_save: bool = True):
    self.workdir = pathlib.Path(workdir).absolute()
    options = ocp.CheckpointManagerOptions(
      save_interval_steps=max(1, every_steps),
      max_to_keep=max(1, keep),
      enable_async_checkpointing=async_save,
      create=True,
    )
    self.manager = ocp.CheckpointManager(self.workdir / "checkpoints", options=options)
    best_options = ocp.CheckpointManagerOptions(
      max_to_keep=1, enable_async_checkpointing=async_save, create=True
    )
    self.best_manager = ocp.CheckpointManager(self.workdir / "best", options=best_options)

  # -------------------------------------------------------------------------------------------- periodic
  def latest_step(self) -> int | None:
    """The step of the newest finished periodic checkpoint, or None."""
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    """The steps of every finished periodic checkpoint, oldest first."""
    return sorted(self.manager.all_steps())

  def path(self, step: int | None) -> str:
    return "none" if step is None else str(self.workdir / "checkpoints" / str(step))

  def save(self, step: int, state: Any, data_iter: Any, *, force: bool = False) -> bool:
    """Saves `state` and the iterator position at `step` if the interval says so (or `force`)."""
    import grain

    args = ocp.args.Composite(
      state=ocp.args.StandardSave(state), data_iter=grain.checkpoint.CheckpointSave(data_iter)
    )
    return self.manager.save(step, args=args, force=force)

  def restore(self, state: Any, data_iter: Any, step: int | None = None) -> Any:
    """Restores the state (onto `state`'s shapes and shardings) and sets `data_iter` in place; returns the state."""
    import grain

    step = self.latest_step() if step is None else step
    args = ocp.args.Composite(
      state=ocp.args.StandardRestore(_abstract(state)),
      data_iter=grain.checkpoint.CheckpointRestore(data_iter),
    )
    try:
      return self.manager.restore(step, args=args)["state"]
    except Exception:
      _silence_closed_loop_callbacks()
      raise

  # ------------------------------------------------------------------------------------------------ best
  def best(self) -> dict | None:
    """`{"step", "metric", "value"}` of the best checkpoint so far, or None."""
    path = self.workdir / "best" / "best.json"
    return json.loads(path.read_text()) if path.is_file() else None

  def save_best(self, step: int, state: Any, metric: str, value: float) -> None:
    """Replaces the best checkpoint with `state` (the caller decided it is better)."""
    self.best_manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)
    self.best_manager.wait_until_finished()  # best.json must never point at an unfinished checkpoint
    if jax.process_index() == 0:
      info = {
        "step": int(step),
        "metric": metric,
        "value": float(value),
        "path": str(self.workdir / "best" / str(step)),
      }
      (self.workdir / "best" / "best.json").write_text(json.dumps(info, indent=2) + "\n")

  # ----------------------------------------------------------------------------------------------- close
  def wait(self) -> None:
    self.manager.wait_until_finished()
    self.best_manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()
    self.best_manager.close()
