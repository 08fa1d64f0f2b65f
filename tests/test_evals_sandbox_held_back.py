"""A program held past its deadline by another slot's programs is run again alone; one that computes is not."""

import logging
import textwrap

from ssd_jax.data.problems import TestCase
from ssd_jax.evals.sandbox import BUSY_SHARE, ExecutionJob, Sandbox, SandboxLimits, held_back
from ssd_jax.evals.verdicts import TestRun, Verdict

LIMITS = SandboxLimits(timeout_s=3.0, cpu_time_s=3.0, memory_mb=256, max_processes=16, max_file_mb=1, tmpfs_mb=16)

# Keeps 16 processes busy, each in a session of its own (out of reach of its test's process-group kill),
# until its test's deadline.
HOG = textwrap.dedent(
  """
  import os
  for _ in range(15):
      if os.fork() == 0:
          os.setsid()
          while True:
              pass
  while True:
      pass
  """
)
# Needs one second of CPU time: three seconds of wall time are enough alone, not beside the hog on two cores.
ONE_CPU_SECOND = textwrap.dedent(
  """
  import time
  while time.process_time() < 1.0:
      pass
  print("done")
  """
)
DONE = (TestCase("done", stdin="", expected_stdout="done\n"),)


def test_a_program_held_back_by_another_slot_is_run_again_alone(caplog):
  with Sandbox(LIMITS, workers=2) as sandbox:
    sandbox.start()
    with caplog.at_level(logging.WARNING, logger="ssd_jax.evals.sandbox"):
      hog, victim = sandbox.run_many([ExecutionJob(HOG, DONE), ExecutionJob(ONE_CPU_SECOND, DONE)])
  assert victim[0].verdict is Verdict.PASSED, victim[0].message
  assert hog[0].verdict is Verdict.TIMEOUT  # alone too: its 16 processes share two cores
  # Both were held back the first time (the hog by its own processes); the hog still times out.
  assert "2 of 2 programs timed out" in caplog.text and "1 still timed out" in caplog.text


def test_cpu_time_is_measured_for_each_test():
  """Of a script, of a function under test and of a test's own assertion code (run by the checker)."""
  sleeper = "import time\ntime.sleep(1.5)\nprint('done')\n"
  busy_function = "import time\ndef f():\n    while time.process_time() < 1.0:\n        pass\n    return 1\n"
  busy_check = TestCase("check", code="import time\nwhile time.process_time() < 1.0:\n    pass\nassert f() == 1")
  jobs = [
    ExecutionJob(ONE_CPU_SECOND, DONE),
    ExecutionJob(busy_function, (TestCase("call", code="assert f() == 1"),)),
    ExecutionJob("def f():\n    return 1\n", (busy_check,)),
    ExecutionJob(sleeper, DONE),
  ]
  with Sandbox(LIMITS, workers=1) as sandbox:
    *busy, idle = [runs[0] for runs in sandbox.run_many(jobs)]
  assert all(run.passed for run in busy + [idle]), busy + [idle]
  for run in busy:  # each side's own process_time reached 1 s
    assert 1.0 <= run.cpu_s <= run.duration_s + 0.1, run
  assert idle.cpu_s < 0.5 and idle.duration_s >= 1.5


def test_only_a_timeout_with_the_program_mostly_idle_is_held_back():
  def run(verdict, cpu_s, duration_s=3.0):
    return TestRun("t", verdict, duration_s=duration_s, cpu_s=cpu_s)

  assert held_back(run(Verdict.TIMEOUT, 0.2))
  assert held_back(run(Verdict.TIMEOUT, 0.0))  # the slot stopped answering: its CPU time is unknown
  assert not held_back(run(Verdict.TIMEOUT, BUSY_SHARE * 3.0))  # computed for half of the time or more
  assert not held_back(run(Verdict.TIMEOUT, 3.0))
  assert not held_back(run(Verdict.FAILED, 0.0))
  assert not held_back(run(Verdict.ERROR, 0.0))
