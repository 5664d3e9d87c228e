"""Multi-process training: two local CPU processes through the real CLI match one process, step for step.

The two processes find each other through `--coordinator_address 127.0.0.1:<free port>` (gloo CPU
collectives), pack the smoke dataset on first use (process 0 packs, process 1 waits for it), and train with
the same global batch as a one-process run that reuses that pack.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
ENV.pop("XLA_FLAGS", None)  # one CPU device per process


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def read_log(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "train_log.jsonl").read_text().splitlines()]


def train_cmd(workdir: pathlib.Path, *extra: str) -> list[str]:
  # The real smoke config, SpecAugment on: each process reads its contiguous block of every global batch, so
  # the global batch is row for row the one-process batch and per-row augmentation draws the same masks.
  return [
    sys.executable, "-m", "animaljax.train", "--config", "configs/quickstart.py:smoke", "--workdir",
    str(workdir), "--config.train.log_indices=True", *extra,
  ]  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
  """Subprocess settings; compiled programs go to the suite's persistent XLA cache (tests/conftest.py)."""
  import jax

  cache = jax.config.jax_compilation_cache_dir or str(tmp_path_factory.mktemp("xla_cache"))
  return {**ENV, "JAX_COMPILATION_CACHE_DIR": cache, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


def test_two_processes_match_one_process_step_for_step(tmp_path, env):
  runs = tmp_path / "runs"  # both workdirs share runs/packed/synthetic-smoke, packed by the two processes
  port = free_port()
  procs, logs = [], [tmp_path / f"{name}.log" for name in ("p0", "p1", "one")]
  try:
    for i in range(2):
      cmd = train_cmd(runs / "two", "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2")
      with logs[i].open("w") as out:  # files, not pipes: a full pipe would stall a run
        procs.append(
          subprocess.Popen([*cmd, "--process_id", str(i)], cwd=REPO, env=env, stdout=out, stderr=out)
        )
    for p in procs[:2]:
      p.wait(timeout=400)
    # Then the one-process run, alone: run alongside the pair on two busy cores, it once made the pair fail
    # with gloo's 30 s key-value timeout while setting up the first collective (load average 8).
    with logs[2].open("w") as out:
      procs.append(subprocess.Popen(train_cmd(runs / "one"), cwd=REPO, env=env, stdout=out, stderr=out))
    procs[2].wait(timeout=400)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait(timeout=30)
  outputs = [log.read_text() for log in logs]
  for name, p, out in zip(("process 0", "process 1", "one process"), procs, outputs, strict=True):
    assert p.returncode == 0, f"{name}:\n{out[-3000:]}"
  assert "packed synthetic" in outputs[0]  # process 0 packed; process 1 waited for it
  assert "packed synthetic" not in outputs[1] and "packed synthetic" not in outputs[2]
  assert '"step": 6' in outputs[0] and '"step"' not in outputs[1]  # only process 0 reports

  one, two = runs / "one", runs / "two"
  a, b = read_log(one), read_log(two)
  assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
  for ra, rb in zip(a, b, strict=True):
    assert len(rb["index"]) == 8  # the global batch, gathered from both processes
    assert ra["index"] == rb["index"], ra["step"]  # the same clips, row for row, form each global batch
  np.testing.assert_allclose([r["loss"] for r in b], [r["loss"] for r in a], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose([r["grad_norm"] for r in b], [r["grad_norm"] for r in a], rtol=1e-4)
  # Evaluation: each process scores its half of the validation split (padded); every clip counted once.
  ma = json.loads((one / "metrics.json").read_text())
  mb = json.loads((two / "metrics.json").read_text())
  assert mb["num_examples"] == ma["num_examples"] == 12
  assert mb["loss"] == pytest.approx(ma["loss"], rel=1e-4)
  assert mb["confusion_matrix"] == ma["confusion_matrix"]


# --- launch decisions (nothing is initialised) ----------------------------------------------------------------

_CLUSTER_VARS = ("SLURM_", "TPU_", "MEGASCALE_", "OMPI_", "KUBERNETES_", "CLOUD_TPU")


@pytest.fixture
def clean_env(monkeypatch):
  for key in list(os.environ):
    if key.startswith(_CLUSTER_VARS):
      monkeypatch.delenv(key)
  return monkeypatch


def test_no_flags_and_no_cluster_is_one_process(clean_env):
  from animaljax.training import distributed

  assert distributed.plan() == distributed.Launch("single")
  assert distributed.plan(num_processes=1) == distributed.Launch("single")


def test_slurm_with_several_tasks_is_left_to_jax(clean_env):
  from animaljax.training import distributed

  slurm = {
    "SLURM_JOB_ID": "77",
    "SLURM_STEP_NODELIST": "node[001-002]",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "0",
  }
  for key, value in slurm.items():
    clean_env.setenv(key, value)
  clean_env.setenv("SLURM_NTASKS", "1")
  assert distributed.plan().source == "single"  # one task: nothing to coordinate
  clean_env.setenv("SLURM_NTASKS", "4")
  launch = distributed.plan()
  assert (launch.source, launch.num_processes, launch.multi_process) == ("slurm", 4, True)
  assert launch.coordinator_address is None and launch.process_id is None  # jax reads them from SLURM


@pytest.mark.parametrize(
  ("kwargs", "message"),
  [
    ({"num_processes": 2, "process_id": 0}, "needs --coordinator_address"),
    ({"coordinator_address": "127.0.0.1:1234"}, "needs --num_processes, --process_id"),
    ({"coordinator_address": "127.0.0.1:1234", "num_processes": 2, "process_id": 2}, r"not in \[0, 2\)"),
    ({"coordinator_address": "localhost", "num_processes": 2, "process_id": 0}, "HOST:PORT"),
  ],
)
def test_incomplete_flags_are_refused_by_name(clean_env, kwargs, message):
  from animaljax.training import distributed

  with pytest.raises(ValueError, match=message):
    distributed.plan(**kwargs)


def test_complete_flags_are_taken_as_given(clean_env):
  from animaljax.training import distributed

  launch = distributed.plan("10.0.0.1:8476", 3, 2)
  assert launch == distributed.Launch("flags", 3, 2, "10.0.0.1:8476") and launch.multi_process


def test_config_root_is_the_folder_above_the_config_package(tmp_path):
  from animaljax.train import config_root

  assert config_root(["x", "--config", "configs/quickstart.py:smoke"]) == pathlib.Path.cwd()
  assert config_root(["x", f"--config={tmp_path}/configs/a.py", "--workdir", "w"]) == tmp_path
  assert config_root(["x", "--workdir", "w"]) is None
