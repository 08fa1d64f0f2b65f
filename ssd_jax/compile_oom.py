"""Reading an XLA out-of-memory compile error: how much memory the program wanted and how much there was.

Compiling for a TPU topology (the plan stage) fails with RESOURCE_EXHAUSTED when a program cannot fit in
HBM; libtpu words it in one of two ways, both parsed here:
  "Ran out of memory in memory space hbm. Used 100.35G of 95.74G hbm. ..."
  "... the total memory required for HLO temporaries (23.88G) exceeds available HBM (15.75G)."
"""

from __future__ import annotations

import dataclasses
import re

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_NUMBER = r"([\d.]+)\s*([KMGT]?)i?B?"
_PATTERNS = (
  re.compile(rf"Used {_NUMBER} of {_NUMBER} hbm", re.IGNORECASE),
  re.compile(rf"\({_NUMBER}\) exceeds available HBM \({_NUMBER}\)", re.IGNORECASE),
)


class DoesNotFitError(RuntimeError):
  """A planned program needs more memory per chip than the slice has (the plan is written before it is raised)."""


@dataclasses.dataclass(frozen=True)
class CompileOom:
  """A program that did not fit: `needed` bytes per chip against `available`."""

  needed: int
  available: int

  def message(self) -> str:
    return f"does not fit: {self.needed / 2**30:.2f} GiB of {self.available / 2**30:.2f} GiB"


def parse_compile_oom(error: BaseException) -> CompileOom | None:
  """The sizes in an out-of-memory compile error, or None if `error` is something else."""
  text = str(error)
  if "RESOURCE_EXHAUSTED" not in text and "out of memory" not in text.lower():
    return None
  for pattern in _PATTERNS:
    match = pattern.search(text)
    if match:
      used, used_unit, limit, limit_unit = match.groups()
      return CompileOom(int(float(used) * _UNITS[used_unit.upper()]), int(float(limit) * _UNITS[limit_unit.upper()]))
  return None
