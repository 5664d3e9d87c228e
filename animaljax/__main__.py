"""The `animaljax` command: `animaljax <command> [args]` runs `python -m animaljax.<command> [args]`.

  animaljax train --config configs/quickstart.py --workdir runs/quickstart
  animaljax predict --model exported/x recordings/
  animaljax --help

Each command runs exactly as its `python -m` entry point (same arguments, output and exit status): the module
is executed as `__main__` with `runpy`, so this dispatcher imports no command module.
"""

from __future__ import annotations

import runpy
import sys

# Command -> what it does (the first line of its module docstring, kept here so `--help` imports nothing heavy).
COMMANDS = {
  "pack": "pack recordings (a folder, ESC-50, a CSV manifest or the synthetic set) into TFRecord shards",
  "train": "train a classifier, SimCLR encoder or ProtoNet from a config file (configs/<x>.py)",
  "convert": "convert a published PANNs or AST PyTorch checkpoint into a model folder",
  "export": "export a training run or model folder as a bundle (safetensors + jax.export)",
  "predict": "label audio files with a model: per-window labels and a per-file summary (CSV, JSON, Raven)",
  "embed": "write per-window and per-file embeddings of audio files (Parquet or NPZ)",
  "evaluate": "score a model on a packed split or a class-per-folder tree, through predict's code path",
  "enroll": "teach a model new species from a few clips (add, list, remove, classify)",
  "search": "search recordings by an example clip; train a linear head from a few labelled windows",
}


def usage() -> str:
  width = max(map(len, COMMANDS))
  lines = [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
  return (
    "usage: animaljax <command> [args]   (the same as python -m animaljax.<command> [args])\n\ncommands:\n"
    + "\n".join(lines)
    + "\n\n`animaljax <command> --help` shows a command's arguments."
  )


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if not argv or argv[0] in ("-h", "--help", "help"):
    print(usage())
    return 0
  command, rest = argv[0], argv[1:]
  if command not in COMMANDS:
    print(
      f"error: unknown command {command!r}; valid: {', '.join(COMMANDS)} (see animaljax --help)",
      file=sys.stderr,
    )
    return 2
  sys.argv = [f"animaljax {command}", *rest]
  try:
    runpy.run_module(f"animaljax.{command}", run_name="__main__", alter_sys=True)
  except SystemExit as exit_:
    code = exit_.code
    if code is None or isinstance(code, int):
      return code or 0
    print(code, file=sys.stderr)  # what `python -m` does with SystemExit("message")
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
