"""Joining the other processes of a run: decide how (or whether) to call `jax.distributed.initialize()`.

Four cases, checked in this order:
  forced single process: `single_process=True` skips initialization whatever the environment says;
  explicit: a coordinator address (flag or `JAX_COORDINATOR_ADDRESS`) with the process count and this process's
    index (flags or `JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`); used for local multi-process runs and clusters JAX
    does not know. CPU collectives go over gloo so cross-process computations work without an accelerator;
  cluster: an environment JAX detects itself (Cloud TPU VM through the metadata server, GKE through
    `TPU_WORKER_HOSTNAMES` / `TPU_PROCESS_ADDRESSES`, Slurm, Open MPI): `jax.distributed.initialize()` with no
    arguments, so JAX discovers coordinator, count and index;
  single: nothing detected, one process.
Must run before any JAX computation (device queries included).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from absl import logging

SINGLE = "single"
FORCED_SINGLE = "forced_single"
EXPLICIT = "explicit"
CLUSTER = "cluster"


@dataclasses.dataclass(frozen=True)
class Start:
  """How this process joins the run.

  Attributes:
    mode: one of SINGLE, FORCED_SINGLE, EXPLICIT, CLUSTER.
    coordinator_address: host:port of process 0 (EXPLICIT only).
    num_processes: processes in the run (EXPLICIT only; JAX finds it for CLUSTER).
    process_id: this process's index (EXPLICIT only).
    cluster: the name of the environment JAX detected (CLUSTER only), e.g. 'GceTpuCluster'.
  """

  mode: str
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  cluster: str | None = None

  @property
  def initializes(self) -> bool:
    return self.mode in (EXPLICIT, CLUSTER)


def detect_cluster() -> str | None:
  """The name of the cluster environment `jax.distributed.initialize()` would auto-detect, or None.

  Asks JAX's own detectors (the ones `initialize()` runs), skipping opt-in ones (mpi4py) as `initialize()` does.
  On a machine that is not a Cloud TPU VM this makes no network calls.
  """
  try:
    from jax._src import clusters  # pylint: disable=g-import-not-at-top
  except ImportError:  # A JAX without the detectors: only explicit flags can start several processes.
    logging.warning("this JAX has no cluster detectors; pass --coordinator_address to run several processes")
    return None
  for env in clusters.ClusterEnv._cluster_types:  # pylint: disable=protected-access
    if not env.opt_in_only_method and env.is_env_present():
      return env.__name__
  return None


def _int_setting(name: str, flag_value: int | None, environ: Mapping[str, str]) -> int | None:
  if flag_value is not None:
    return flag_value
  text = environ.get(f"JAX_{name.upper()}")
  if text is None:
    return None
  try:
    return int(text)
  except ValueError:
    raise ValueError(f"environment variable JAX_{name.upper()}={text!r} is not an integer") from None


def decide(
  *,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  single_process: bool = False,
  environ: Mapping[str, str] | None = None,
  detect: Callable[[], str | None] = detect_cluster,
) -> Start:
  """Decides how this process starts; touches no devices.

  Args:
    coordinator_address: host:port of process 0, or None (then `JAX_COORDINATOR_ADDRESS`).
    num_processes: processes in the run, or None (then `JAX_NUM_PROCESSES`).
    process_id: this process's index, or None (then `JAX_PROCESS_ID`).
    single_process: run alone even inside a detected cluster.
    environ: the environment (default `os.environ`).
    detect: returns the detected cluster's name or None.

  Raises:
    ValueError: an incomplete or inconsistent explicit setting.
  """
  environ = os.environ if environ is None else environ
  if single_process:
    return Start(FORCED_SINGLE)
  address = coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS") or None
  count = _int_setting("num_processes", num_processes, environ)
  index = _int_setting("process_id", process_id, environ)
  if address is not None or count is not None or index is not None:
    missing = [
      n for n, v in (("coordinator_address", address), ("num_processes", count), ("process_id", index)) if v is None
    ]
    if missing:
      raise ValueError(
        f"multi-process start needs coordinator_address, num_processes and process_id; missing {missing}"
      )
    if ":" not in address:
      raise ValueError(f"coordinator_address must be host:port, got {address!r}")
    if count < 1 or not 0 <= index < count:
      raise ValueError(f"need num_processes >= 1 and 0 <= process_id < num_processes, got {index} of {count}")
    return Start(EXPLICIT, coordinator_address=address, num_processes=count, process_id=index)
  cluster = detect()
  if cluster is not None:
    return Start(CLUSTER, cluster=cluster)
  return Start(SINGLE)


def initialize(start: Start, *, initialize_fn: Callable[..., None] | None = None) -> None:
  """Performs `start`: calls `jax.distributed.initialize` when it asks for it (once per process).

  Args:
    start: from `decide`.
    initialize_fn: replaces `jax.distributed.initialize` (tests).
  """
  import jax  # pylint: disable=g-import-not-at-top

  if not start.initializes or jax.distributed.is_initialized():
    return
  initialize_fn = initialize_fn or jax.distributed.initialize
  if start.mode == EXPLICIT:
    # Cross-process collectives of the CPU backend (local multi-process runs, host-side gathers) need gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    initialize_fn(start.coordinator_address, num_processes=start.num_processes, process_id=start.process_id)
  else:
    initialize_fn()
  logging.info("joined %s", start)


def start_distributed(
  *,
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
  single_process: bool = False,
) -> Start:
  """`decide` then `initialize`; returns what was done. Call once, first thing in the entry point."""
  start = decide(
    coordinator_address=coordinator_address,
    num_processes=num_processes,
    process_id=process_id,
    single_process=single_process,
  )
  initialize(start)
  return start
