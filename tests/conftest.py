"""Test setup: eight fake CPU devices, so sharded code runs on one machine; libtpu shared between test processes.

Tests that use libtpu (compiles for TPU topologies) carry the `libtpu` marker and skip only where libtpu is
not installed; with libtpu present, any failure to load it fails them.
"""

import importlib.util
import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# Compiling for a TPU topology needs no TPU; let the parallel test processes load libtpu at once.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def pytest_collection_modifyitems(config, items):
  """Tests marked `libtpu` skip only where libtpu is not installed."""
  if importlib.util.find_spec("libtpu") is not None:
    return
  skip = pytest.mark.skip(reason="libtpu is not installed (pip install -e '.[tpu]')")
  for item in items:
    if item.get_closest_marker("libtpu") is not None:
      item.add_marker(skip)
