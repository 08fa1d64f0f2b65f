"""Out-of-memory compile errors: both libtpu wordings parsed; other errors are not mistaken for one."""

import pytest

from ssd_jax.compile_oom import CompileOom, parse_compile_oom

G = 2**30


@pytest.mark.parametrize(
  "text, needed, available",
  [
    (
      "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. "
      "Used 100.35G of 95.74G hbm. Exceeded hbm capacity by 4.61G.",
      100.35,
      95.74,
    ),
    (
      "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO temporaries (23.88G) "
      "exceeds available HBM (15.75G).",
      23.88,
      15.75,
    ),
    ("RESOURCE_EXHAUSTED: Ran out of memory in memory space hbm. Used 512.00M of 15.75G hbm.", 0.5, 15.75),
  ],
)
def test_parses_both_wordings(text, needed, available):
  oom = parse_compile_oom(RuntimeError(text))
  assert oom == CompileOom(int(needed * G), int(available * G))
  assert oom.message() == f"does not fit: {needed:.2f} GiB of {available:.2f} GiB"


@pytest.mark.parametrize("text", ["INVALID_ARGUMENT: bad shape", "RESOURCE_EXHAUSTED: too many open files"])
def test_other_errors_are_not_oom(text):
  assert parse_compile_oom(RuntimeError(text)) is None
