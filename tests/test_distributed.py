"""How a process joins a run: forced single, explicit flags or env, JAX's cluster detection, or alone."""

import jax
import pytest
from jax._src.clusters import cloud_tpu_cluster

from ssd_jax import distributed

NO_CLUSTER = lambda: None


def test_nothing_set_runs_alone():
  start = distributed.decide(environ={}, detect=NO_CLUSTER)
  assert start == distributed.Start(distributed.SINGLE)
  assert not start.initializes


def test_forced_single_wins_over_a_detected_cluster_and_flags():
  start = distributed.decide(
    coordinator_address="10.0.0.1:1234", single_process=True, environ={}, detect=lambda: "GceTpuCluster"
  )
  assert start.mode == distributed.FORCED_SINGLE and not start.initializes


def test_explicit_flags():
  start = distributed.decide(
    coordinator_address="127.0.0.1:5000", num_processes=2, process_id=1, environ={}, detect=NO_CLUSTER
  )
  assert start == distributed.Start(distributed.EXPLICIT, "127.0.0.1:5000", 2, 1)


def test_explicit_from_environment_and_flags_override_it():
  env = {"JAX_COORDINATOR_ADDRESS": "host:9", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  assert distributed.decide(environ=env, detect=NO_CLUSTER) == distributed.Start(distributed.EXPLICIT, "host:9", 4, 3)
  start = distributed.decide(process_id=0, environ=env, detect=NO_CLUSTER)
  assert start.process_id == 0


@pytest.mark.parametrize(
  "kwargs, message",
  [
    (dict(coordinator_address="h:1", num_processes=2), "missing \\['process_id'\\]"),
    (dict(num_processes=2, process_id=0), "missing \\['coordinator_address'\\]"),
    (dict(coordinator_address="h", num_processes=2, process_id=0), "host:port"),
    (dict(coordinator_address="h:1", num_processes=2, process_id=2), "0 <= process_id"),
  ],
)
def test_incomplete_or_bad_explicit_setting_is_a_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    distributed.decide(environ={}, detect=NO_CLUSTER, **kwargs)


def test_non_integer_environment_value():
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two'"):
    distributed.decide(environ={"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two"}, detect=NO_CLUSTER)


def test_detected_cluster_initializes_without_arguments():
  start = distributed.decide(environ={}, detect=lambda: "GkeTpuCluster")
  assert start == distributed.Start(distributed.CLUSTER, cluster="GkeTpuCluster")
  calls = []
  distributed.initialize(start, initialize_fn=lambda *a, **k: calls.append((a, k)))
  assert calls == [((), {})]


def test_explicit_initialize_passes_the_flags_and_selects_gloo(monkeypatch):
  updates = []  # Recorded, not applied: the test process keeps its own CPU collectives.
  monkeypatch.setattr(jax.config, "update", lambda name, value: updates.append((name, value)))
  calls = []
  start = distributed.Start(distributed.EXPLICIT, "127.0.0.1:5000", 2, 1)
  distributed.initialize(start, initialize_fn=lambda *a, **k: calls.append((a, k)))
  assert calls == [(("127.0.0.1:5000",), {"num_processes": 2, "process_id": 1})]
  assert updates == [("jax_cpu_collectives_implementation", "gloo")]


def test_single_does_not_initialize():
  calls = []
  distributed.initialize(distributed.Start(distributed.SINGLE), initialize_fn=lambda *a, **k: calls.append(a))
  distributed.initialize(distributed.Start(distributed.FORCED_SINGLE), initialize_fn=lambda *a, **k: calls.append(a))
  assert calls == []


# JAX's own detectors, in a patched environment: a TPU VM needs no TPU_WORKER_HOSTNAMES.


def _clear_cluster_env(monkeypatch):
  for name in ("TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES", "TPU_SKIP_MDS_QUERY", "SLURM_JOB_ID"):
    monkeypatch.delenv(name, raising=False)


def test_detects_nothing_here(monkeypatch):
  _clear_cluster_env(monkeypatch)
  monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", False)
  assert distributed.detect_cluster() is None


def test_detects_a_tpu_vm_from_the_metadata_server_alone(monkeypatch):
  _clear_cluster_env(monkeypatch)
  monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
  asked = []
  monkeypatch.setattr(cloud_tpu_cluster, "get_metadata", lambda key: (asked.append(key), ("2", 200))[1])
  assert distributed.detect_cluster() == "GceTpuCluster"
  assert asked == ["agent-worker-number"]


def test_detects_gke_from_worker_hostnames(monkeypatch):
  _clear_cluster_env(monkeypatch)
  monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
  monkeypatch.setenv("TPU_SKIP_MDS_QUERY", "1")  # GKE pods have no TPU VM metadata server.
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "host-0,host-1")
  assert distributed.detect_cluster() == "GkeTpuCluster"


def test_worker_hostnames_off_a_tpu_vm_detect_nothing(monkeypatch):
  _clear_cluster_env(monkeypatch)
  monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", False)
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "host-0,host-1")
  assert distributed.detect_cluster() is None
