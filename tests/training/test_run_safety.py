"""Issue 13 for `train`: a run's workdir is never broken by a resume, shared by two runs, or fed impossible values.

One finished smoke run (packed on first use, in-process) is copied for each test that changes a workdir.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from snapshots import snapshot  # noqa: E402
from xla_cache import compilation_cache_for  # noqa: E402

from configs import quickstart  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  yield from compilation_cache_for(tmp_path_factory, ENV)


def config(data_dir: pathlib.Path, **overrides):
  c = quickstart.get_config("smoke")
  c.data.dir = str(data_dir)
  for key, value in overrides.items():
    section, name = key.split("__")
    c[section][name] = value
  return c


def tree_hashes(root: pathlib.Path) -> dict[str, str]:
  """`snapshot` less the run lock (its content names the process that holds it)."""
  return {k: v for k, v in snapshot(root).items() if k != "run.lock"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
  """(data dir, workdir) of a finished 6-step smoke run with checkpoints at steps 3 and 6."""
  from animaljax.training.supervised import train_and_evaluate

  root = tmp_path_factory.mktemp("safety")
  data = root / "packed"
  train_and_evaluate(config(data), root / "run")
  assert sorted(p.name for p in (root / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
  return data, root / "run"


@pytest.fixture
def run(finished, tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
  data, workdir = finished
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  return data, copy


# --- item 5: a resume never breaks the saved run ----------------------------------------------------------------


def test_a_config_that_cannot_resume_is_refused_naming_the_keys_and_nothing_changes(run):
  from animaljax.training.supervised import train_and_evaluate
  from animaljax.training.workdir import WorkdirError

  data, workdir = run
  before = tree_hashes(workdir)
  with pytest.raises(WorkdirError, match=r"model\.width: 0\.0625 -> 0\.125.*train\.lr: 0\.002 -> 0\.01"):
    train_and_evaluate(config(data, model__width=0.125, train__lr=0.01, train__steps=9), workdir)
  assert tree_hashes(workdir) == before  # config.json included: the run can still be exported


def test_a_resumable_change_resumes_and_then_saves_the_new_config(run, capsys):
  from animaljax.training.supervised import train_and_evaluate

  data, workdir = run
  result = train_and_evaluate(config(data, train__steps=9, eval__every_steps=9), workdir)
  assert result["step"] == 9
  saved = json.loads((workdir / "config.json").read_text())
  assert saved["train"]["steps"] == 9 and saved["eval"]["every_steps"] == 9
  assert "resumed from" in capsys.readouterr().err


def test_config_json_is_written_only_once_the_resume_works(run):
  from animaljax.training.loop import CheckpointDamagedError
  from animaljax.training.supervised import train_and_evaluate

  data, workdir = run
  for step in ("3", "6"):
    damage(workdir / "checkpoints" / step)
  saved = (workdir / "config.json").read_bytes()
  with pytest.raises(CheckpointDamagedError):
    train_and_evaluate(config(data, train__steps=9), workdir)
  assert (workdir / "config.json").read_bytes() == saved  # still steps=6: the run's own config


# --- damaged checkpoints ----------------------------------------------------------------------------------------


def damage(checkpoint: pathlib.Path) -> None:
  """Overwrites every data file of a checkpoint's state with bytes that are not the array data."""
  files = [p for p in (checkpoint / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files, f"no array data files under {checkpoint}"
  for p in files:
    p.write_bytes(os.urandom(64))


def test_a_damaged_latest_checkpoint_is_named_and_the_run_resumes_from_the_one_before(run, capsys):
  from animaljax.training.supervised import train_and_evaluate

  data, workdir = run
  damage(workdir / "checkpoints" / "6")
  result = train_and_evaluate(config(data, train__steps=9), workdir)
  err = capsys.readouterr().err
  assert f"checkpoint {workdir / 'checkpoints' / '6'} is damaged" in err
  assert f"resumed from {workdir / 'checkpoints' / '3'} at step 3" in err
  assert "Traceback" not in err and "Event loop is closed" not in err
  assert result["step"] == 9
  assert [json.loads(x)["step"] for x in (workdir / "train_log.jsonl").read_text().splitlines()] == list(
    range(1, 10)
  )


def test_every_checkpoint_damaged_names_the_steps_to_delete(run):
  from animaljax.training.loop import CheckpointDamagedError
  from animaljax.training.supervised import train_and_evaluate

  data, workdir = run
  for step in ("3", "6"):
    damage(workdir / "checkpoints" / step)
  with pytest.raises(
    CheckpointDamagedError, match=r"steps 6, 3\); move or delete .*checkpoints/6 and .*checkpoints/3"
  ):
    train_and_evaluate(config(data), workdir)


# --- item 8: one run per workdir --------------------------------------------------------------------------------

_HOLD_LOCK = """
import pathlib, sys, time
from animaljax.training.workdir import lock
with lock(pathlib.Path(sys.argv[1])):
  print("locked", flush=True)
  time.sleep(120)
"""


def test_a_second_run_on_a_busy_workdir_is_refused_naming_the_process_and_a_killed_one_leaves_no_lock(run):
  from animaljax.training.supervised import train_and_evaluate
  from animaljax.training.workdir import WorkdirError, lock

  data, workdir = run
  holder = subprocess.Popen(
    [sys.executable, "-c", _HOLD_LOCK, str(workdir)], env=ENV, stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == "locked"
    before = tree_hashes(workdir)
    with pytest.raises(WorkdirError, match=rf"in use by another training run \(pid {holder.pid} on "):
      train_and_evaluate(config(data, train__steps=9), workdir)
    assert tree_hashes(workdir) == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
  with lock(workdir):  # the kernel dropped the dead process's lock: nothing stale to clean up
    pass


def test_two_cli_trainers_on_one_workdir_one_runs_the_other_is_refused(finished, tmp_path):
  data, _ = finished
  workdir = tmp_path / "run"
  cmd = [
    sys.executable, "-m", "animaljax.train", "--config", "configs/quickstart.py:smoke", "--workdir", str(workdir),
    f"--config.data.dir={data}", "--config.train.steps=100000", "--config.eval.every_steps=100000",
    "--config.checkpoint.every_steps=100000",
  ]  # fmt: skip
  first = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.monotonic() + 120
    while not (workdir / "train_log.jsonl").is_file():  # the first run is training
      assert first.poll() is None and time.monotonic() < deadline, "the first run did not start training"
      time.sleep(0.2)
    second = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert first.poll() is None  # still running: the second one was refused, not queued behind it
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
  assert second.returncode == 2
  lines = second.stderr.strip().splitlines()
  assert len(lines) == 1, second.stderr
  assert lines[0].startswith(f"error: {workdir} is in use by another training run (pid {first.pid} on ")
  logged = [
    json.loads(x)["step"] for x in (workdir / "train_log.jsonl").read_text().splitlines() if x.strip()
  ]
  assert logged == list(range(1, len(logged) + 1))  # one writer: every step logged once, in order


# --- items 7 and 10: impossible values are refused before any work -----------------------------------------------


@pytest.mark.parametrize(
  ("key", "value", "message"),
  [("train__steps", -5, "train.steps must be an integer >= 1, got -5"),
   ("train__steps", 0, "train.steps must be an integer >= 1"),
   ("train__batch_size", 0, "train.batch_size must be an integer >= 1"),
   ("train__lr", -1e-3, "train.lr must be >= 0"),
   ("train__lr", float("nan"), "train.lr must be >= 0"),
   ("eval__every_steps", 0, "eval.every_steps must be an integer >= 1"),
   ("checkpoint__every_steps", -1, "checkpoint.every_steps must be an integer >= 1"),
   ("data__clip_seconds", 0.0, "data.clip_seconds must be > 0 seconds"),
   ("data__sample_rate", 0, "data.sample_rate must be an integer sample rate"),
   ("train__label_smoothing", 1.5, r"train.label_smoothing must be in \[0, 1\)"),
   ("data__source", "flac", "unknown data.source 'flac'; valid: folder, esc50, csv, synthetic"),
   ("data__file_format", "zip", "unknown data.file_format 'zip'; valid: tfrecord, array_record")],
)  # fmt: skip
def test_impossible_values_are_refused_before_the_workdir_is_touched(tmp_path, key, value, message):
  from animaljax.training.supervised import train_and_evaluate

  with pytest.raises(ValueError, match=message):
    train_and_evaluate(config(tmp_path / "packed", **{key: value}), tmp_path / "run")
  assert not (tmp_path / "run").exists() and not (tmp_path / "packed").exists()


def test_a_run_saved_before_short_clips_existed_keeps_its_zero_padding(run):
  from animaljax.training.supervised import train_and_evaluate
  from animaljax.training.workdir import WorkdirError, read_config

  data, workdir = run
  saved = json.loads((workdir / "config.json").read_text())
  del saved["data"]["short_clips"]  # as written by animaljax before the rule was an option
  (workdir / "config.json").write_text(json.dumps(saved))
  assert read_config(workdir).data.short_clips == "pad"  # what that run was trained with
  with pytest.raises(WorkdirError, match=r"data\.short_clips: 'pad' -> 'loop'"):
    train_and_evaluate(config(data, train__steps=9), workdir)
