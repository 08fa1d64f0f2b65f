"""host_platform: a machine without a TPU runs on the CPU without libtpu's failed-start error; a TPU host is left alone."""

import os
import subprocess
import sys

import jax
import pytest
from jax._src import hardware_utils

from ssd_jax import host_platform

LIBTPU_ERROR = "INVALID_ARGUMENT"


@pytest.fixture
def bare_machine(monkeypatch):
  """No TPU chip on the PCI bus, no TPU device files."""
  monkeypatch.setattr(hardware_utils, "num_available_tpu_chips_and_device_id", lambda: (0, None))
  monkeypatch.setattr(host_platform.glob, "glob", lambda pattern: [])
  monkeypatch.setattr(host_platform, "_list_dir", lambda path: [])


def test_no_sign_of_a_tpu(bare_machine):
  assert not host_platform.tpu_attached(
    {"TPU_SKIP_MDS_QUERY": "1", "TPU_LIBRARY_PATH": "/lib/libtpu.so", "PATH": "/bin"}
  )


@pytest.mark.parametrize("sign", ["chips", "accel", "vfio", "environment"])
def test_any_sign_of_a_tpu_counts(bare_machine, monkeypatch, sign):
  environ = {}
  if sign == "chips":
    monkeypatch.setattr(hardware_utils, "num_available_tpu_chips_and_device_id", lambda: (4, "v5e"))
  elif sign == "accel":
    monkeypatch.setattr(host_platform.glob, "glob", lambda pattern: ["/dev/accel0"])
  elif sign == "vfio":
    monkeypatch.setattr(host_platform, "_list_dir", lambda path: ["vfio", "0"])
  else:
    environ = {"TPU_WORKER_HOSTNAMES": "host-0,host-1"}
  assert host_platform.tpu_attached(environ)


def test_unreadable_pci_scan_counts_as_a_tpu(bare_machine, monkeypatch):
  def unreadable():
    raise PermissionError("/sys/bus/pci")

  monkeypatch.setattr(hardware_utils, "num_available_tpu_chips_and_device_id", unreadable)
  assert host_platform.tpu_attached({})


@pytest.fixture
def unconfigured():
  """JAX with no platforms chosen yet (the test process has chosen the CPU); restored afterwards."""
  chosen = jax.config.jax_platforms
  jax.config.update("jax_platforms", None)
  yield
  jax.config.update("jax_platforms", chosen)


def test_cpu_chosen_on_a_bare_machine(bare_machine, unconfigured, monkeypatch):
  monkeypatch.setattr(host_platform, "accelerator_plugins", lambda: [])
  assert host_platform.skip_absent_tpu({"PATH": "/bin"})
  assert jax.config.jax_platforms == "cpu"


@pytest.mark.parametrize(
  "why",
  [
    {"JAX_PLATFORMS": "cpu"},
    {"TPU_ACCELERATOR_TYPE": "v5litepod-16"},
    {"plugin": "xla_cuda12"},
    {"configured": "cpu"},
  ],
)
def test_left_alone(bare_machine, unconfigured, monkeypatch, why):
  plugins = [why["plugin"]] if "plugin" in why else []
  monkeypatch.setattr(host_platform, "accelerator_plugins", lambda: plugins)
  if "configured" in why:
    jax.config.update("jax_platforms", why["configured"])
  environ = {k: v for k, v in why.items() if k not in ("plugin", "configured")}
  assert not host_platform.skip_absent_tpu(environ)
  assert jax.config.jax_platforms == why.get("configured")


def _start_jax(call_first: bool) -> subprocess.CompletedProcess:
  code = "import jax; jax.devices()"
  if call_first:
    code = "from ssd_jax import host_platform; assert host_platform.skip_absent_tpu(); " + code
  env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
  return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.libtpu
def test_cpu_machine_starts_without_libtpu_error():
  if host_platform.tpu_attached() or host_platform.accelerator_plugins():
    pytest.skip("this machine has a TPU or an accelerator plugin")
  plain = _start_jax(call_first=False)
  assert plain.returncode == 0, plain.stderr
  # The control: without the call, libtpu's failed start is logged (so the check below can fail).
  assert LIBTPU_ERROR in plain.stderr
  chosen = _start_jax(call_first=True)
  assert chosen.returncode == 0, chosen.stderr
  assert LIBTPU_ERROR not in chosen.stderr
