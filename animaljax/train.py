"""Train a classifier: `python -m animaljax.train --config configs/quickstart.py --workdir runs/quickstart`.

Any config field can be overridden (`--config.train.steps=500`); `--config configs/<x>.py:smoke` shrinks the
run to seconds. Re-running the same command resumes from the workdir's last checkpoint.
"""

from __future__ import annotations

import json

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file (configs/<x>.py[:arg])")
_WORKDIR = flags.DEFINE_string("workdir", None, "run folder: checkpoints, logs, metrics.json, config.json")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; the progress bar says enough
  from animaljax.training.supervised import train_and_evaluate

  result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  brief = {k: v for k, v in result.items() if k not in ("per_class", "confusion_matrix")}
  print(json.dumps(brief, indent=2, default=str))


if __name__ == "__main__":
  app.run(main)
