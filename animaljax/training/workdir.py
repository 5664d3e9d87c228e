"""A run's folder: reading a finished run (config, state, encoder) and claiming one for training.

Reading (what inference, export and `model.init_from` use; the one place that knows a run's layout):
`read_config(workdir)` -> the typed `RunConfig`, `state_dir(workdir)` -> the checkpoint to use (best, else the
newest periodic one), `read_variables` -> its params and BatchNorm statistics, `read_encoder` -> the encoder's
alone, `read_labels` -> the class names, `model_config` -> the classifier it trains.

Claiming: `claim(workdir, config)` is the first thing every trainer does:

* **lock**: an exclusive `fcntl.flock` on `<workdir>/run.lock` (process 0 only; the other processes of a
  multi-host run share process 0's workdir). The kernel drops it when the process dies, so a SIGKILLed run
  leaves no stale lock; a second run on the same workdir is refused, naming the running process.
* **resume check**: when the workdir already holds a run (checkpoints or a best state), the new config is
  compared with the saved `config.json` *before anything is written*: a change that cannot continue that run
  (model, data, trainer, optimiser, ...) is refused, naming the differing keys. Only `RESUMABLE` keys (run
  length, logging, evaluation and checkpoint cadence) may change.
* **config.json** is written by the callback `claim` yields, which the loop calls once the state is built and
  restored (`loop.Task.on_start`): a run that fails before that leaves the saved config as it was, so the
  workdir can still be exported.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import pathlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

CONFIG_JSON = "config.json"
LOCK_FILE = "run.lock"

# Keys (dotted) that may differ between a run and its resumption: none changes the state's shapes, the data
# the state was trained on, or what the optimiser's moments mean.
RESUMABLE = frozenset({
  "train.steps", "train.log_every", "train.log_indices", "train.halt_after", "train.on_nonfinite",
  "eval.every_steps", "eval.batch_size", "eval.early_stopping_patience", "eval.threshold_precision",
  "checkpoint.every_steps", "checkpoint.keep", "checkpoint.async_save",
  "data.worker_count", "data.pack_on_first_use",
})  # fmt: skip


# What a run saved before an option existed did, when that differs from the option's default today: a run's
# config.json is read with these filled in, so an old run keeps meaning what it meant.
LEGACY_VALUES = {("data", "short_clips"): "pad"}  # runs before the rule existed zero-padded short clips


def with_legacy_values(saved: dict) -> dict:
  """`saved` (a config.json's content) with `LEGACY_VALUES` filled in where its sections lack them."""
  out = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
  for (section, key), value in LEGACY_VALUES.items():
    if isinstance(out.get(section), dict):
      out[section].setdefault(key, value)
  return out


class WorkdirError(ValueError):
  """The workdir cannot be used for this run (busy, or holding a run this config cannot continue)."""


# ------------------------------------------------------------------------------------------------------ reading
def is_run(path: str | os.PathLike) -> bool:
  """True for a training workdir (`config.json` with checkpoints or a best state)."""
  path = pathlib.Path(path)
  return (path / CONFIG_JSON).is_file() and holds_run(path)


def read_config(workdir: str | os.PathLike):
  """The run's `config.json` as a `training.config.RunConfig` (keys of other versions ignored)."""
  from animaljax.training import config as config_lib

  path = pathlib.Path(workdir) / CONFIG_JSON
  try:
    saved = json.loads(path.read_text())
  except FileNotFoundError:
    raise FileNotFoundError(f"{workdir} is not a training workdir (no {CONFIG_JSON})") from None
  except (ValueError, UnicodeDecodeError) as err:
    raise WorkdirError(f"{path} is damaged: {err}") from None
  if not isinstance(saved, dict):
    raise WorkdirError(f"{path} is damaged: not a JSON object")
  return config_lib.parse(with_legacy_values(saved), strict=False)


def model_config(workdir: str | os.PathLike, num_classes: int):
  """The classifier config (`models.classifier.ClassifierConfig`) the run at `workdir` trains."""
  from animaljax.training import config as config_lib

  return config_lib.model_config(read_config(workdir), num_classes)


def state_dir(workdir: str | os.PathLike) -> pathlib.Path:
  """`best/<step>/state` if the run has a best checkpoint, else its newest `checkpoints/<step>/state`."""
  root = pathlib.Path(workdir).absolute()
  for sub in ("best", "checkpoints"):
    steps = sorted(
      (int(p.name) for p in (root / sub).glob("*") if p.name.isdigit() and (p / "state").is_dir()),
      reverse=True,
    )
    if steps:
      return root / sub / str(steps[0]) / "state"
  raise FileNotFoundError(f"training workdir {root} has no finished checkpoint under best/ or checkpoints/")


def read_variables(workdir: str | os.PathLike) -> tuple[dict, pathlib.Path]:
  """`({"params", "batch_stats"}, state dir)` of the run's `state_dir`, as numpy arrays; the optimizer state is
  left on disk (a partial restore: inference never pays for Adam's moments)."""
  import jax
  import numpy as np
  import orbax.checkpoint as ocp

  path = state_dir(workdir)
  with ocp.PyTreeCheckpointer() as ckpt:
    meta = ckpt.metadata(path).item_metadata.tree
    wanted = {k: meta[k] for k in ("params", "batch_stats") if k in meta}
    item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), wanted)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    state = ckpt.restore(
      path, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)
    )
  return {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}, path


THRESHOLDS_JSON = (
  "thresholds.json"  # best/: a multi-label run's per-class thresholds (`supervised.write_report`)
)


def read_outputs(workdir: str | os.PathLike, state: pathlib.Path | None = None) -> tuple[bool, list | None]:
  """`(multi_label, thresholds)` of a run: a multi-label run keeps `best/thresholds.json` (used when `state` is
  that best step's state dir, or None), else its pack's `summary.json` says whether it is multi-label (then the
  thresholds are unknown: None)."""
  root = pathlib.Path(workdir)
  path = root / "best" / THRESHOLDS_JSON
  if path.is_file():
    record = json.loads(path.read_text())
    if state is None or state.parent.name == str(record.get("step")) and state.parent.parent.name == "best":
      return True, record.get("thresholds")
    return True, None
  data_dir = read_config(root).data.dir
  summary = pathlib.Path(data_dir) / "summary.json" if data_dir else None
  if summary is not None and summary.is_file():
    return bool(json.loads(summary.read_text()).get("multi_label", False)), None
  return False, None


def read_labels(workdir: str | os.PathLike, num_classes: int) -> list[str]:
  """Class names of a run: `labels.json` in the workdir, else its pack's `summary.json`, else `class_<i>`."""
  root = pathlib.Path(workdir)
  data_dir = read_config(root).data.dir
  for path in (root / "labels.json", pathlib.Path(data_dir) / "summary.json" if data_dir else None):
    if path is not None and path.is_file():
      data = json.loads(path.read_text())
      names = data if isinstance(data, list) else data.get("class_names") or data.get("labels")
      if names and len(names) == num_classes:
        return list(names)
  return [f"class_{i}" for i in range(num_classes)]


def _encoder_subtree(tree: dict, where: str) -> dict:
  """The `encoder` subtree at the top of `tree` or one level down (a state may nest the classifier)."""
  if "encoder" in tree:
    return tree["encoder"]
  for value in tree.values():
    if isinstance(value, dict) and "encoder" in value:
      return value["encoder"]
  raise ValueError(f"no 'encoder' parameters in the checkpoint at {where} (top-level keys: {sorted(tree)})")


def read_encoder(workdir: str | os.PathLike) -> tuple[dict, dict, str]:
  """`(encoder params, encoder batch_stats, checkpoint path)` of a run's `state_dir` (any trainer: every model
  is, or shares its scope with, the one `Classifier`)."""
  import orbax.checkpoint as ocp

  path = state_dir(workdir)
  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(path)
  params = _encoder_subtree(dict(state["params"]), str(path))
  stats = state.get("batch_stats") or {}
  return params, (_encoder_subtree(dict(stats), str(path)) if stats else {}), str(path)


# ----------------------------------------------------------------------------------------------------- claiming


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  """`{"a": {"b": 1}}` -> `{"a.b": 1}` (lists are leaves)."""
  if not isinstance(tree, dict):
    return {prefix: tree}
  out: dict[str, Any] = {}
  for key, value in tree.items():
    out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
  return out


def holds_run(workdir: pathlib.Path) -> bool:
  """True when `workdir` has a periodic or best checkpoint (a run that a new one would continue)."""
  return any(
    (workdir / sub).is_dir() and any(p.name.isdigit() for p in (workdir / sub).iterdir())
    for sub in ("checkpoints", "best")
  )


def config_changes(saved: dict, new: dict) -> list[str]:
  """Dotted keys whose values differ between `saved` and `new`, except `RESUMABLE` ones.

  A key missing from `saved` (an option added by a newer animaljax, at its default) is not a change.
  """
  old, cur = flatten(saved), flatten(new)
  return sorted(
    k for k in old.keys() | cur.keys() if k not in RESUMABLE and k in old and old.get(k) != cur.get(k)
  )


def check_resume(workdir: pathlib.Path, config: dict) -> None:
  """Raises WorkdirError if `workdir` holds a run that `config` cannot continue (see the module docstring)."""
  if not holds_run(workdir):
    return
  path = workdir / CONFIG_JSON
  if not path.is_file():
    return  # nothing to compare with; restoring the checkpoint onto this config's shapes is the check
  try:
    saved = json.loads(path.read_text())
    if not isinstance(saved, dict):
      raise ValueError("not a JSON object")
  except (ValueError, UnicodeDecodeError) as err:
    raise WorkdirError(
      f"{path} is damaged ({err}) and {workdir} holds checkpoints: cannot tell whether this config can resume "
      "that run; use another --workdir"
    ) from None
  saved = with_legacy_values(saved)
  changed = config_changes(saved, config)
  if changed:
    old, cur = flatten(saved), flatten(config)
    shown = "; ".join(f"{k}: {old.get(k)!r} -> {cur.get(k)!r}" for k in changed[:8])
    more = f" (and {len(changed) - 8} more)" if len(changed) > 8 else ""
    raise WorkdirError(
      f"{workdir} holds a run with a different config, which cannot resume with {shown}{more}. Use another "
      f"--workdir, or the saved values (only {', '.join(sorted(RESUMABLE))} may change on resume)"
    )


def write_config(workdir: pathlib.Path, config: dict) -> None:
  """Writes `config.json` atomically (a temporary file renamed over it)."""
  from animaljax.data import atomic

  atomic.write_text(workdir / CONFIG_JSON, json.dumps(config, indent=2) + "\n")


@contextlib.contextmanager
def lock(workdir: pathlib.Path) -> Iterator[None]:
  """Holds the exclusive run lock of `workdir` while the block runs; WorkdirError if another process has it."""
  path = workdir / LOCK_FILE
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no O_TRUNC: the holder's line must survive a refusal
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
      if err.errno not in (errno.EWOULDBLOCK, errno.EACCES):
        raise
      holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "another process"
      raise WorkdirError(
        f"{workdir} is in use by another training run ({holder}); wait for it to finish, stop it, or use "
        "another --workdir"
      ) from None
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # closing the descriptor releases the lock


@contextlib.contextmanager
def claim(
  workdir: pathlib.Path, config: dict, *, main_process: bool = True
) -> Iterator[Callable[[int], None]]:
  """Locks `workdir` (on the main process), checks that `config` can run there and yields `started(step)`.

  Args:
    workdir: the run's folder (created if missing).
    config: the resolved config as plain data (`ConfigDict.to_dict()` through JSON).
    main_process: only the main process locks and writes.
  Yields:
    `started(step)`: call it once the state is initialised or restored; it writes `config.json`.
  """
  workdir.mkdir(parents=True, exist_ok=True)
  with lock(workdir) if main_process else contextlib.nullcontext():
    check_resume(workdir, config)
    yield (lambda step: write_config(workdir, config)) if main_process else (lambda step: None)
