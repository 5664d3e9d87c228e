"""A real crash: SIGKILL the CLI mid-run after a checkpoint, re-run the same command, compare with a straight run.

Every command runs from a scratch working directory with the config given by absolute path, which also
checks that `--config` works outside the repository.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
STEPS, EVERY = 40, 4  # long enough that the kill lands well before the end, a checkpoint every 4 steps


def read_log(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "train_log.jsonl").read_text().splitlines()]


def finished_steps(workdir: pathlib.Path) -> list[int]:
  """Steps of finished periodic checkpoints: orbax writes `<step>.orbax-checkpoint-tmp-*` and renames it."""
  root = workdir / "checkpoints"
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []


def read_state(workdir: pathlib.Path, step: int) -> dict:
  import orbax.checkpoint as ocp

  with ocp.StandardCheckpointer() as ckpt:
    return ckpt.restore(workdir / "checkpoints" / str(step) / "state")


def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(tmp_path):
  import jax

  cache = jax.config.jax_compilation_cache_dir or str(
    tmp_path / "xla_cache"
  )  # the suite's (tests/conftest.py)
  env = {
    **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "JAX_COMPILATION_CACHE_DIR": cache,
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
  }  # fmt: skip
  env.pop("XLA_FLAGS", None)
  env.pop("PYTHONPATH", None)  # `configs` must be found through the config file's path alone
  scratch = tmp_path / "cwd"
  scratch.mkdir()
  runs = tmp_path / "runs"  # both workdirs share runs/packed/synthetic-smoke (packed by the straight run)
  straight, crashed = runs / "straight", runs / "crashed"

  def cmd(workdir: pathlib.Path) -> list[str]:
    return [
      sys.executable, "-m", "animaljax.train", "--config", f"{REPO}/configs/quickstart.py:smoke",
      "--workdir", str(workdir), f"--config.train.steps={STEPS}", f"--config.checkpoint.every_steps={EVERY}",
      "--config.train.log_indices=True", "--config.eval.every_steps=1000",
    ]  # fmt: skip

  def start(workdir: pathlib.Path) -> subprocess.Popen:
    with (tmp_path / f"{workdir.name}.log").open("a") as out:  # a file, not a pipe: a full pipe stalls a run
      return subprocess.Popen(cmd(workdir), cwd=scratch, env=env, stdout=out, stderr=subprocess.STDOUT)

  def output(workdir: pathlib.Path) -> str:
    return (tmp_path / f"{workdir.name}.log").read_text()

  def poll_until(done, procs: list[subprocess.Popen], what: str) -> None:
    deadline = time.monotonic() + 300
    while not done():
      for p in procs:
        assert p.poll() is None, f"ended before {what}:\n" + output(pathlib.Path(p.args[6]))[-3000:]
      assert time.monotonic() < deadline, f"no {what} within 300 s"
      time.sleep(0.05)

  procs = [start(straight)]
  try:
    # The straight run packs the data; the run to be killed starts as soon as the pack is in place.
    poll_until((runs / "packed" / "synthetic-smoke" / "summary.json").exists, procs, "the pack")
    victim = start(crashed)
    procs.append(victim)
    poll_until(lambda: any(s >= EVERY for s in finished_steps(crashed)), [victim], "a checkpoint")
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=30) == -signal.SIGKILL
    assert procs[0].wait(timeout=400) == 0, output(straight)[-3000:]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait(timeout=30)
  saved = finished_steps(crashed)
  assert saved and max(saved) < STEPS, f"the run finished before the kill ({saved}); raise STEPS"
  killed_at = read_log(crashed)[-1]["step"] if (crashed / "train_log.jsonl").is_file() else 0
  assert killed_at < STEPS

  rerun = start(crashed)  # the same command again
  try:
    assert rerun.wait(timeout=400) == 0, output(crashed)[-3000:]
  finally:
    if rerun.poll() is None:
      rerun.kill()
      rerun.wait(timeout=30)
  resumed_from = max(saved)
  assert f"at step {resumed_from}" in output(crashed)  # "resumed from <path> at step <k>"

  a, b = read_log(straight), read_log(crashed)
  assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # nothing repeated or skipped after the resume
  assert [r["index"] for r in a] == [r["index"] for r in b]  # the same clips in the same order
  np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-6)

  sa, sb = read_state(straight, STEPS), read_state(crashed, STEPS)
  assert int(sa["step"]) == int(sb["step"]) == STEPS
  leaves_a, leaves_b = jax.tree.leaves(sa["params"]), jax.tree.leaves(sb["params"])
  assert len(leaves_a) == len(leaves_b) > 0
  for x, y in zip(leaves_a, leaves_b, strict=True):
    np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7)
