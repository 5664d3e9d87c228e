"""Every command answers a typical user mistake with one line `error: ...` on stderr, exit 2, no traceback.

Each case runs the real command in a subprocess (`python -m animaljax.<command> ...`), as a user would.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from animaljax import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
ENV.pop(cli.DEBUG_ENV, None)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, pathlib.Path]:
  root = tmp_path_factory.mktemp("mistakes")
  (root / "notes.txt").write_text("not a checkpoint\n")
  (root / "recordings").mkdir()
  (root / "clip.wav").write_bytes(b"RIFF0000WAVEnot really audio")
  return {
    "root": root,
    "missing": root / "no-such-folder",
    "text": root / "notes.txt",
    "wav": root / "clip.wav",
  }


CASES = {
  "pack-missing-root": (
    "pack", lambda f: ["--source", "folder", "--root", str(f["missing"]), "--out", str(f["root"] / "p1")],
    "no-such-folder",
  ),
  "pack-negative-hop": (
    "pack", lambda f: ["--source", "synthetic", "--out", str(f["root"] / "p2"), "--clip-mode", "window",
                       "--hop-seconds", "-1"],
    "--hop-seconds",
  ),
  "train-unknown-key": (
    "train", lambda f: ["--config", "configs/quickstart.py:smoke", "--workdir", str(f["root"] / "run"),
                        "--config.train.nope=1"],
    "unknown config key train.nope; valid keys of train:",
  ),
  "train-negative-steps": (
    "train", lambda f: ["--config", "configs/quickstart.py:smoke", "--workdir", str(f["root"] / "run"),
                        "--config.train.steps=-5"],
    "train.steps must be an integer >= 1, got -5",
  ),
  "export-missing-model": (
    "export", lambda f: ["--model", str(f["missing"]), "--out", str(f["root"] / "bundle")], "no-such-folder",
  ),
  "predict-zero-hop": (
    "predict", lambda f: ["--model", str(f["missing"]), "--hop", "0", str(f["wav"])], "--hop",
  ),
  "predict-missing-model": ("predict", lambda f: ["--model", str(f["missing"]), str(f["wav"])], "no-such-folder"),
  "embed-negative-batch": (
    "embed", lambda f: ["--model", str(f["missing"]), "--out", str(f["root"] / "e.parquet"), "--batch-size", "-1",
                        str(f["wav"])],
    "--batch-size",
  ),
  "evaluate-data-without-split": (
    "evaluate", lambda f: ["--model", str(f["missing"]), "--data", str(f["root"])], "--data needs --split",
  ),
  "enroll-missing-model": (
    "enroll", lambda f: ["add", "--model", str(f["missing"]), "--name", "Red fox", str(f["wav"])], "no-such-folder",
  ),
  "search-missing-embeddings": (
    "search", lambda f: ["index", "--embeddings", str(f["missing"]), "--out", str(f["root"] / "index")],
    "no-such-folder",
  ),
  "convert-not-a-checkpoint": (
    "convert", lambda f: ["panns", "--checkpoint", str(f["text"]), "--out", str(f["root"] / "converted")],
    "notes.txt",
  ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_typical_mistake_gives_one_error_line_and_exit_2(files, case):
  command, args, expected = CASES[case]
  proc = subprocess.run(
    [sys.executable, "-m", f"animaljax.{command}", *args(files)], cwd=REPO, env=ENV, capture_output=True,
    text=True, timeout=300,
  )  # fmt: skip
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert len(lines) == 1, proc.stderr[-3000:]
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback_of_a_user_error(files):
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax.export", "--model", str(files["missing"]), "--out", str(files["root"] / "b"),
     "--debug"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
  )  # fmt: skip
  assert proc.returncode == 2
  assert "Traceback" in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("error: ")


COMMANDS = ("pack", "train", "convert", "export", "predict", "embed", "evaluate", "enroll", "search")


def test_the_animaljax_command_lists_every_subcommand():
  from animaljax.__main__ import COMMANDS as listed

  assert tuple(listed) == COMMANDS
  proc = subprocess.run(
    [sys.executable, "-m", "animaljax", "--help"], capture_output=True, text=True, timeout=60
  )
  assert proc.returncode == 0 and all(f"\n  {c} " in proc.stdout for c in COMMANDS), proc.stdout
  bad = subprocess.run(
    [sys.executable, "-m", "animaljax", "trian"], capture_output=True, text=True, timeout=60
  )
  assert bad.returncode == 2 and bad.stderr.startswith("error: unknown command 'trian'")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_both_ways(command):
  script = pathlib.Path(sys.executable).parent / "animaljax"  # the [project.scripts] entry of the install
  ways = [[sys.executable, "-m", f"animaljax.{command}", "--help"]]
  ways.append(
    [str(script), command, "--help"]
    if script.exists()
    else [sys.executable, "-m", "animaljax", command, "--help"]
  )
  outputs = []
  for cmd in ways:
    proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (cmd, proc.stderr[-2000:])
    assert "--" in proc.stdout and "Traceback" not in proc.stderr, cmd
    outputs.append(proc.stdout)
  assert outputs[0].split("\n", 1)[1] == outputs[1].split("\n", 1)[1]  # the same arguments either way
