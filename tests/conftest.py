"""Test setup: eight fake CPU devices, so sharded code runs on one machine; files with long tests first."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()


def pytest_collection_modifyitems(config, items):
  # Files holding a `slow` test run first (each file kept whole, for its module fixtures), so parallel workers
  # (`-n 2 --dist loadfile`) do not end with one of them running a long test alone.
  slow_files = {item.path for item in items if item.get_closest_marker("slow")}
  items.sort(key=lambda item: item.path not in slow_files)
