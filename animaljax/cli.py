"""Shared command plumbing: the parser every command uses and the one user-error -> `error: ...` + exit 2 mapping.

Every command (`pack`, `train`, `evaluate`, `export`, `predict`, `embed`, `enroll`, `convert`) answers a mistake the user
can fix with one line on stderr, `error: <what to fix>`, and exit status 2; never a traceback. A user mistake is:

- an argument argparse refuses (unknown option, bad number, missing value): `ArgumentParser.error`;
- an exception of a type in `user_error_types()`: `ValueError` (bad values, damaged files), `OSError` (missing,
  unreadable or existing paths, a full disk), and the project's own error classes (`AudioError`, `BundleError`,
  `StoreError`, ...), each a subclass of `UserError` or of one of those.

Anything else is a bug and keeps its traceback. `--debug` on any command, or `ANIMALJAX_DEBUG=1`, shows the
traceback of a user error too.

This module imports nothing heavy (no jax, no TensorFlow): `pack` stays quick to start.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from animaljax.training.typed import closest_first  # noqa: F401 - re-exported for the commands

DEBUG_ENV = "ANIMALJAX_DEBUG"
EXIT_USER_ERROR = 2


class UserError(Exception):
  """A mistake the user can fix (an option, a path, a damaged input): printed as one line, exit 2."""


def user_error_types() -> tuple[type[BaseException], ...]:
  """Exception types answered with one line: `UserError`, `ValueError` and `OSError` (and their subclasses)."""
  return (UserError, ValueError, OSError)


def debug_requested(argv: Sequence[str] | None = None) -> bool:
  argv = sys.argv[1:] if argv is None else argv
  return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(err: BaseException) -> str:
  """The message of `err` on one line (chained notes and newlines folded)."""
  text = str(err)
  if isinstance(err, KeyError) and err.args:  # KeyError's str() is the repr of the key
    text = str(err.args[0])
  if isinstance(err, OSError) and err.filename is not None and err.strerror:
    text = f"{err.filename}: {err.strerror}"
  return " ".join(text.split()) or type(err).__name__


def report(err: BaseException) -> int:
  """Prints `error: ...` for a user error and returns the exit status 2."""
  print(f"error: {one_line(err)}", file=sys.stderr)
  return EXIT_USER_ERROR


def run(main: Callable[[], int | None], argv: Sequence[str] | None = None) -> int:
  """Calls `main()`; a user error prints one line and returns 2 (the traceback with `--debug`)."""
  try:
    status = main()
  except user_error_types() as err:
    if debug_requested(argv):
      traceback.print_exc()
    return report(err)
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  return 0 if status is None else int(status)


def parse_and_run(
  parser: argparse.ArgumentParser, run_fn: Callable[[argparse.Namespace], int | None], argv
) -> int:
  """A command's `main`: parse `argv` (argparse mistakes exit 2 with one line), then `run(lambda: run_fn(args))`."""
  args = parser.parse_args(argv)
  return run(lambda: run_fn(args), argv)


class ArgumentParser(argparse.ArgumentParser):
  """argparse with the project's error format (one line, exit 2) and a `--debug` flag."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.add_argument("--debug", action="store_true", help=f"show tracebacks (also: {DEBUG_ENV}=1)")

  def error(self, message: str):  # argparse's own prints the usage block first: two+ lines
    print(f"error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def add_model_input_arguments(parser: argparse.ArgumentParser) -> None:
  """The arguments of every command that runs a model over audio files (`predict`, `embed`)."""
  parser.add_argument(
    "--model", required=True, help="exported bundle, converted model dir or training workdir"
  )
  parser.add_argument("inputs", nargs="+", help="audio files and folders (searched recursively)")
  parser.add_argument(
    "--hop", type=positive_float, help="seconds between window starts (default: the window)"
  )
  parser.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass")
  parser.add_argument(
    "--max-seconds", type=positive_float, default=None,
    help="skip files longer than this (default: no limit: files are streamed, memory stays bounded)",
  )  # fmt: skip
  parser.add_argument("--quiet", action="store_true", help="no progress bar")


RUNNERS = ("local", "beam")
BEAM_INSTALL = 'pip install -e ".[beam]"'


def add_runner_arguments(parser: argparse.ArgumentParser) -> None:
  """`--runner local|beam` and `--beam_pipeline_options` (`pack`, `embed`, `predict`)."""
  parser.add_argument(
    "--runner", choices=RUNNERS, default="local",
    help=f"local: processes on this machine; beam: an Apache Beam pipeline (the optional extra, {BEAM_INSTALL})",
  )  # fmt: skip
  parser.add_argument(
    "--beam_pipeline_options", "--beam-pipeline-options", default="", metavar='"--OPTION=VALUE ..."',
    help="Beam pipeline options for --runner beam, e.g. \"--runner=FlinkRunner --flink_master=host:8081\" "
    "(default: the DirectRunner in this process)",
  )  # fmt: skip


def beam_options(args: argparse.Namespace) -> list[str]:
  """`--beam_pipeline_options` split as a shell would; UserError when they do not apply or Beam is missing.

  Only looks for the package (no import), so a local run never loads Beam."""
  import importlib.util
  import shlex

  if args.runner != "beam":
    if args.beam_pipeline_options:
      raise UserError("--beam_pipeline_options applies to --runner beam")
    return []
  if importlib.util.find_spec("apache_beam") is None:
    raise UserError(f"--runner beam needs Apache Beam, an optional extra: {BEAM_INSTALL}")
  return shlex.split(args.beam_pipeline_options)


# --------------------------------------------------------------------------------------------- argument types
def _number(cast, test: Callable[[float], bool], what: str):
  def parse(text: str):
    try:
      value = cast(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or not test(value):  # NaN fails every test
      raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
    return value

  parse.__name__ = what  # argparse names the type in its messages
  return parse


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonnegative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a number > 0")
nonnegative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")
probability = _number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]")
