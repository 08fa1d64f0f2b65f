"""Test setup: eight fake CPU devices, so sharded code runs on one machine; libtpu shared between test processes."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
# Compiling for a TPU topology needs no TPU; let the parallel test processes load libtpu at once.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
