"""Which JAX platforms a run asks for, decided before any device is touched.

With libtpu installed (the `tpu` extra, which CPU machines use to compile for TPU topologies), JAX tries to
start a TPU client wherever it runs. On a machine with no TPU chip that attempt fails, and libtpu logs an
INVALID_ARGUMENT error about worker hostnames before JAX falls back to the CPU: the run is fine, but its
first lines read like a failure. `skip_absent_tpu` asks JAX for the CPU alone on a machine with no TPU chip
and no GPU plugin. An explicit `JAX_PLATFORMS` always wins, and compiling for a TPU topology (the plan
stage) loads libtpu by itself, so it is unaffected.
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import os
import pkgutil
from collections.abc import Mapping

from absl import logging

# Set at import by JAX and libtpu themselves, on any machine.
_SET_BY_JAX = frozenset({"TPU_SKIP_MDS_QUERY", "TPU_LIBRARY_PATH"})


def tpu_attached(environ: Mapping[str, str] = os.environ) -> bool:
  """Whether this machine may have a TPU: any sign of one counts, so a TPU host is never sent to the CPU.

  Signs: TPU chips on the PCI bus (JAX's own scan; unknown counts as yes), TPU device files (/dev/accel*,
  /dev/vfio groups), or a TPU variable in the environment (GKE and queued resources set them).
  """
  try:
    from jax._src import hardware_utils  # pylint: disable=g-import-not-at-top

    if hardware_utils.num_available_tpu_chips_and_device_id()[0]:
      return True
  except (ImportError, AttributeError, OSError):
    return True
  vfio_groups = [name for name in _list_dir("/dev/vfio") if name != "vfio"]
  tpu_variables = [name for name in environ if name.startswith("TPU_") and name not in _SET_BY_JAX]
  return bool(glob.glob("/dev/accel*") or vfio_groups or tpu_variables)


def _list_dir(path: str) -> list[str]:
  try:
    return os.listdir(path)
  except OSError:
    return []


def accelerator_plugins() -> list[str]:
  """Installed JAX PJRT plugins (CUDA, ROCm, ...): entry points and `jax_plugins` namespace modules."""
  names = [entry.name for entry in importlib.metadata.entry_points(group="jax_plugins")]
  if importlib.util.find_spec("jax_plugins") is not None:
    import jax_plugins  # pylint: disable=g-import-not-at-top

    names += [module.name for module in pkgutil.iter_modules(jax_plugins.__path__)]
  return sorted(set(names))


def skip_absent_tpu(environ: Mapping[str, str] = os.environ) -> bool:
  """Asks JAX for the CPU alone when this machine shows no TPU, has no GPU plugin and no `JAX_PLATFORMS`.

  Must run before JAX initializes its backends (any device query or computation).

  Returns:
    Whether the platforms were set.
  """
  import jax  # pylint: disable=g-import-not-at-top

  if environ.get("JAX_PLATFORMS") or jax.config.jax_platforms or tpu_attached(environ) or accelerator_plugins():
    return False
  jax.config.update("jax_platforms", "cpu")
  logging.info("no TPU chip and no accelerator plugin on this machine: JAX runs on the CPU")
  return True
