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

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/<x>.py[:arg])")
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder: checkpoints, logs, metrics.json, config.json")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "multi-process: HOST:PORT of process 0's coordinator (default: detected)"
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "multi-process: processes in the run")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "multi-process: this process's id, 0..N-1")
flags.mark_flags_as_required(["config", "workdir"])


def config_root(argv: list[str]) -> pathlib.Path | None:
  """The folder that holds the `--config` file's package (`configs/x.py` -> the folder above `configs/`).

  Config files import their base as `from configs import base`, which resolves only when that folder is
  on `sys.path`; `python -m` adds just the working directory.
  """
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    path = pathlib.Path(value.split(":", 1)[0])  # ml_collections splits `path[:arg]` the same way
    return path.absolute().parent.parent
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  root = config_root(argv)
  if root is not None and str(root) not in sys.path:
    sys.path.insert(0, str(root))
  return app.parse_flags_with_usage(argv)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
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
    raise app.UsageError(f"unknown config.trainer {name!r}; valid: {', '.join(sorted(trainers))}")
  result = trainers[name](_CONFIG.value, _WORKDIR.value)
  if distributed.is_main_process():
    brief = {k: v for k, v in result.items() if k not in ("per_class", "confusion_matrix")}
    print(json.dumps(brief, indent=2, default=str))


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
