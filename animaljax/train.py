"""Train a classifier: `python -m animaljax.train --config configs/quickstart.py --workdir runs/quickstart`.

Any config field can be overridden (`--config.train.steps=500`); `--config configs/<x>.py:smoke` shrinks the
run to seconds. Re-running the same command resumes from the workdir's last checkpoint. The config file may be
given from any working directory: the folder holding `configs/` is put on `sys.path` before it is loaded.

Several processes (hosts): under SLURM with several tasks or on a Cloud TPU pod every process runs this same
command and jax finds its peers; elsewhere start one process per host with
`--coordinator_address HOST:PORT --num_processes N --process_id I` (process 0's host and a free port). Only
process 0 writes logs and reports; the workdir must be on a filesystem every host sees.
"""

from __future__ import annotations

import json
import pathlib
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from animaljax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/<x>.py[:arg])")
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder: checkpoints, logs, metrics.json, config.json")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "multi-process: HOST:PORT of process 0's coordinator (default: detected)"
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-process: processes in the run")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-process: this process's id, 0..N-1")
flags.DEFINE_bool("debug", False, f"show tracebacks of user errors (also: {cli.DEBUG_ENV}=1)")
flags.mark_flags_as_required(["config", "workdir"])


def _config_path(argv: list[str]) -> pathlib.Path | None:
  """The `--config` file's path (without ml_collections' `:arg` suffix), or None."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    return pathlib.Path(value.split(":", 1)[0])  # ml_collections splits `path[:arg]` the same way
  return None


def config_root(argv: list[str]) -> pathlib.Path | None:
  """The folder that holds the `--config` file's package (`configs/x.py` -> the folder above `configs/`).

  Config files import their base as `from configs import base`, which resolves only when that folder is
  on `sys.path`; `python -m` adds just the working directory.
  """
  path = _config_path(argv)
  return None if path is None else path.absolute().parent.parent


def unknown_override(argv: list[str], config) -> str | None:
  """`unknown config key a.b; valid keys of a: ...` for the first `--config.a.b=...` naming no field of `config`."""
  for arg in argv:
    if not arg.startswith("--config."):
      continue
    path = arg[len("--config.") :].split("=", 1)[0].split(".")
    node, where = config, []
    for part in path:
      keys = list(node.keys()) if hasattr(node, "keys") else []
      if part not in keys:
        section = ".".join(where) or "the config"
        valid = ", ".join(cli.closest_first(part, sorted(keys))) or "none (not a section)"
        return f"unknown config key {'.'.join(where + [part])}; valid keys of {section}: {valid}"
      node, where = node[part], where + [part]
  return None


def _load_config_file(argv: list[str]):
  """The `--config` file's ConfigDict loaded again for an error message (absl keeps none after a failure)."""
  import importlib.util

  path = _config_path(argv)
  if path is None:
    return None
  config_arg = next((a for a in argv if a.startswith("--config=") or a == "--config"), "")
  value = config_arg.split("=", 1)[1] if "=" in config_arg else argv[argv.index("--config") + 1]
  _, _, arg = value.partition(":")
  try:
    spec = importlib.util.spec_from_file_location("_animaljax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()
  except Exception:  # noqa: BLE001 - the original error is reported instead
    return None


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with the project's one-line errors (exit 2) instead of tracebacks or `FATAL ...`."""
  path = _config_path(argv)
  if path is not None and not path.is_file():  # ml_collections would only say so when the value is first read
    print(f"error: config file {path} does not exist (give configs/<experiment>.py)", file=sys.stderr)
    sys.exit(cli.EXIT_USER_ERROR)
  root = config_root(argv)
  if root is not None and str(root) not in sys.path:
    sys.path.insert(0, str(root))
  try:
    return flags.FLAGS(argv)
  except SystemExit:
    if {"-h", "--help", "--helpshort", "--helpfull", "-?"} & set(argv):  # absl exits 1 after printing help
      sys.exit(0)
    raise
  except Exception as err:  # noqa: BLE001 - a config file may raise anything; it is still the user's input
    if cli.debug_requested(argv):
      traceback.print_exc()
    config = _load_config_file(argv)
    message = unknown_override(argv[1:], config) if config is not None else None
    if message is None:
      cause = err.__cause__ or err.__context__
      message = cli.one_line(cause if isinstance(err, flags.Error) and cause is not None else err)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(cli.EXIT_USER_ERROR)


def main(argv) -> None:
  sys.exit(cli.run(lambda: _train(argv), argv))


def _train(argv) -> None:
  if len(argv) > 1:
    raise cli.UserError(f"unexpected arguments: {' '.join(argv[1:])}")
  from animaljax.training import distributed

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; the progress bar says enough
  # Before anything touches a device: jax must know every process before it builds its backends.
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  if not distributed.is_main_process():
    logging.set_verbosity(logging.ERROR)  # one voice: the other processes speak only to fail
  from animaljax.training import protonet, simclr, supervised

  trainers = {
    "supervised": supervised.train_and_evaluate,
    "simclr": simclr.train_and_evaluate,
    "protonet": protonet.train_and_evaluate,
  }
  name = _CONFIG.value.get("trainer", "supervised")
  if name not in trainers:
    raise cli.UserError(f"unknown config.trainer {name!r}; valid: {', '.join(sorted(trainers))}")
  result = trainers[name](_CONFIG.value, _WORKDIR.value)
  if distributed.is_main_process():
    brief = {k: v for k, v in result.items() if k not in ("per_class", "confusion_matrix")}
    print(json.dumps(brief, indent=2, default=str))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
