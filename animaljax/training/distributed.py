"""Multi-process (multi-host) runs: when to call `jax.distributed.initialize`, and work done by process 0 alone.

A run becomes multi-process in one of three ways, checked in this order:

1. explicit settings (`--coordinator_address HOST:PORT --num_processes N --process_id I` on the CLI): any
   launcher, and the tests, which start N local CPU processes;
2. a managed cluster that jax itself recognises (`jax._src.clusters`: SLURM with several tasks, Cloud TPU pods
   and multislice via GCE metadata, `TPU_WORKER_HOSTNAMES`/`TPU_PROCESS_ADDRESSES` or `MEGASCALE_*`, Open MPI,
   indexed Kubernetes jobs). Detection reuses jax's own classes, so this module and
   `jax.distributed.initialize()` never disagree, and jax fills in the coordinator, count and id itself;
3. otherwise one process, and nothing is initialised.

After initialisation every process runs the same program: each feeds its own rows of the global batch
(`jax.make_array_from_process_local_data`), all take part in every collective and in every orbax save, and
only process 0 writes logs, reports and the progress bar.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class Launch:
  """How this run was started.

  Attributes:
    source: "single", "flags" or the jax cluster name that was detected ("slurm", "gcetpu", "gketpu", ...).
    num_processes: processes in the run (None: left to jax's cluster detection).
    process_id: this process's id (None: left to jax's cluster detection).
    coordinator_address: "host:port" of process 0's coordinator (None: left to jax).
  """

  source: str
  num_processes: int | None = 1
  process_id: int | None = 0
  coordinator_address: str | None = None

  @property
  def multi_process(self) -> bool:
    return self.source != "single"


def detect_cluster() -> tuple[str, int] | None:
  """`(name, process count)` of the managed cluster jax would auto-detect here, or None.

  The opt-in-only environments (mpi4py) are skipped, as `jax.distributed.initialize()` skips them.
  Raises:
    RuntimeError: a cluster is detected but its process count cannot be read (say, a Kubernetes job that
      is not indexed); the message says to pass the explicit settings instead.
  """
  from jax._src import clusters

  for env in clusters.ClusterEnv._cluster_types:
    if env.opt_in_only_method or not env.is_env_present():
      continue
    try:
      return env.name, int(env.get_process_count())
    except Exception as e:  # each cluster type fails in its own way (missing metadata, API errors)
      raise RuntimeError(
        f"detected a {env.name!r} cluster but could not read its process count ({e}); pass "
        "--coordinator_address HOST:PORT --num_processes N --process_id I explicitly"
      ) from e
  return None


def plan(
  coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> Launch:
  """Decides how to start (nothing is initialised): explicit settings, a detected cluster, or one process.

  Raises:
    ValueError: explicit settings that are incomplete or inconsistent, with no cluster to fill the gaps.
  """
  explicit = coordinator_address is not None or num_processes is not None or process_id is not None
  if not explicit:
    cluster = detect_cluster()
    if cluster is None or cluster[1] <= 1:  # e.g. a one-task SLURM job or a single-host TPU VM
      return Launch("single")
    return Launch(cluster[0], num_processes=cluster[1], process_id=None, coordinator_address=None)
  if num_processes is not None and num_processes < 1:
    raise ValueError(f"--num_processes must be >= 1, got {num_processes}")
  if num_processes == 1 and coordinator_address is None and process_id in (None, 0):
    return Launch("single")
  missing = [
    name
    for name, value in (
      ("--coordinator_address", coordinator_address),
      ("--num_processes", num_processes),
      ("--process_id", process_id),
    )
    if value is None
  ]
  if missing and detect_cluster() is None:
    raise ValueError(
      f"a multi-process run needs {', '.join(missing)} as well (all of --coordinator_address HOST:PORT "
      "--num_processes N --process_id I), or a cluster that jax detects (SLURM, Cloud TPU)"
    )
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise ValueError(
      f"--process_id {process_id} is not in [0, {num_processes}) for --num_processes {num_processes}"
    )
  if coordinator_address is not None and ":" not in coordinator_address:
    raise ValueError(f"--coordinator_address must be HOST:PORT, got {coordinator_address!r}")
  return Launch("flags", num_processes, process_id, coordinator_address)


def initialize(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  *,
  timeout_s: int = 300,
) -> Launch:
  """`plan(...)`, then `jax.distributed.initialize` for a multi-process run; call before any jax computation.

  Args:
    coordinator_address, num_processes, process_id: explicit settings, or None to detect.
    timeout_s: how long each process waits for the others to connect to the coordinator.
  Returns:
    The `Launch` that was carried out (a no-op for one process or when jax is already initialised).
  """
  launch = plan(coordinator_address, num_processes, process_id)
  if launch.multi_process and not jax.distributed.is_initialized():
    jax.distributed.initialize(
      coordinator_address=launch.coordinator_address,
      num_processes=launch.num_processes,
      process_id=launch.process_id,
      initialization_timeout=timeout_s,
    )
  return launch


def is_main_process() -> bool:
  """True on the process that writes logs, reports and the progress bar."""
  return jax.process_index() == 0


def gather_rows(local: np.ndarray) -> np.ndarray:
  """This process's rows `(rows, ...)` -> every process's rows `(processes * rows, ...)` in process order.

  The same order as the global batch built by `make_array_from_process_local_data`. A collective: every
  process must call it. One process: returned as is.
  """
  local = np.asarray(local)
  if jax.process_count() == 1:
    return local
  from jax.experimental import multihost_utils

  return np.asarray(multihost_utils.process_allgather(local, tiled=True))


def on_process_zero(name: str, fn: Callable[[], Any], *, timeout_s: float = 4 * 3600) -> None:
  """Runs `fn()` on process 0 while the others wait for it; a failure there is raised on every process.

  For one-off work on a shared filesystem, such as packing the dataset on first use. Process 0 posts
  "ok" or its error to the coordinator's key-value store under `name`; the others block on that key (not on
  a device collective, whose timeout is far shorter than a long packing job). One process: just `fn()`.

  Raises:
    RuntimeError: on processes other than 0, when `fn` failed on process 0 (the message carries its error)
      or nothing was posted within `timeout_s`.
  """
  if jax.process_count() == 1:
    fn()
    return
  from jax._src import distributed  # the client orbax also uses for its barriers; jax has no public one

  client = distributed.global_state.client
  key = f"animaljax/on_process_zero/{name}"
  if jax.process_index() == 0:
    try:
      fn()
    except BaseException as e:
      client.key_value_set(key, json.dumps({"error": f"{type(e).__name__}: {e}"}))
      raise
    client.key_value_set(key, json.dumps({"ok": True}))
    return
  try:
    posted = json.loads(client.blocking_key_value_get(key, int(timeout_s * 1000)))
  except Exception as e:  # the coordinator died with process 0, or the wait timed out
    raise RuntimeError(
      f"process {jax.process_index()} gave up waiting for process 0 to finish {name!r}: {e}"
    ) from e
  if "error" in posted:
    raise RuntimeError(f"process 0 failed at {name!r}: {posted['error']}")
