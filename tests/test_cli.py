"""animaljax.cli: the shared parser, number types and the user-error mapping, in-process."""

from __future__ import annotations

import argparse

import pytest

from animaljax import cli


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(prog="python -m animaljax.x")
  p.add_argument("--hop", type=cli.positive_float)
  p.add_argument("--workers", type=cli.nonnegative_int)
  p.add_argument("--batch-size", type=cli.positive_int)
  p.add_argument("--min-score", type=cli.probability)
  return p


@pytest.mark.parametrize(
  ("argv", "message"),
  [(["--hop", "0"], "argument --hop: must be a number > 0, got 0"),
   (["--hop", "-1"], "argument --hop: must be a number > 0, got -1"),
   (["--hop", "nan"], "argument --hop: must be a number > 0, got nan"),
   (["--hop", "inf"], "argument --hop: must be a number > 0, got inf"),
   (["--hop", "x"], "argument --hop: 'x' is not a number"),
   (["--workers", "-2"], "argument --workers: must be an integer >= 0, got -2"),
   (["--workers", "1.5"], "argument --workers: '1.5' is not a number"),
   (["--batch-size", "0"], "argument --batch-size: must be an integer >= 1, got 0"),
   (["--min-score", "1.5"], "argument --min-score: must be a number in [0, 1], got 1.5"),
   (["--nope"], "unrecognized arguments: --nope")],
)  # fmt: skip
def test_bad_arguments_give_one_error_line_and_exit_2(capsys, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    parser().parse_args(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and err.startswith(f"error: {message}"), err
  assert "(see python -m animaljax.x --help)" in err


def test_good_arguments_parse_to_numbers():
  args = parser().parse_args(["--hop", "2.5", "--workers", "0", "--batch-size", "3", "--min-score", "1"])
  assert (args.hop, args.workers, args.batch_size, args.min_score, args.debug) == (2.5, 0, 3, 1.0, False)


@pytest.mark.parametrize(
  ("err", "line"),
  [(ValueError("bad\nvalue"), "error: bad value"),
   (FileNotFoundError(2, "No such file or directory", "/x/y"), "error: /x/y: No such file or directory"),
   (cli.UserError("fix it"), "error: fix it"),
   (KeyError("k"), None)],
)  # fmt: skip
def test_run_maps_user_errors_to_one_line_and_leaves_bugs_alone(capsys, monkeypatch, err, line):
  monkeypatch.delenv(cli.DEBUG_ENV, raising=False)

  def main():
    raise err

  if line is None:  # not a user error: the traceback is the bug report
    with pytest.raises(KeyError):
      cli.run(main, [])
    return
  assert cli.run(main, []) == 2
  assert capsys.readouterr().err == line + "\n"


def test_run_passes_the_status_through():
  assert cli.run(lambda: None, []) == 0
  assert cli.run(lambda: 1, []) == 1


def test_debug_prints_the_traceback_too(capsys, monkeypatch):
  monkeypatch.setenv(cli.DEBUG_ENV, "1")

  def main():
    raise ValueError("bad")

  assert cli.run(main, []) == 2
  err = capsys.readouterr().err
  assert "Traceback" in err and err.rstrip().endswith("error: bad")


def test_closest_first_orders_near_names_first():
  assert cli.closest_first("stepz", ["batch_size", "lr", "steps"])[0] == "steps"
  assert cli.closest_first("x", []) == []


def test_argument_type_errors_are_argparse_errors():
  with pytest.raises(argparse.ArgumentTypeError):
    cli.positive_int("0")
