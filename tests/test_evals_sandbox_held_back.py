"""A test held past its deadline by other processes runs again alone; one that sleeps, crowds itself or fails does
not, and reruns stop at a program's first that does not pass and once they have taken as long as the batch."""

import contextlib
import dataclasses
import logging
import subprocess
import sys
import textwrap

from ssd_jax.data.problems import TestCase
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.sandbox_reruns import WAITED_SHARE, held_back, held_back_tests
from ssd_jax.evals.verdicts import TestRun, Verdict

LIMITS = SandboxLimits(timeout_s=3.0, cpu_time_s=3.0, memory_mb=256, max_processes=16, max_file_mb=1, tmpfs_mb=16)
SHORT = dataclasses.replace(LIMITS, timeout_s=1.0, cpu_time_s=1.0)
LOG = "ssd_jax.evals.sandbox_reruns"

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
LOOP = "while True:\n    pass\n"
DONE = (TestCase("done", stdin="", expected_stdout="done\n"),)


@contextlib.contextmanager
def busy_host(processes: int = 8):
  """Busy processes outside any sandbox, each in a session of its own (so the scheduler's autogroups do not
  pool them), for as long as the block runs."""
  hogs = [subprocess.Popen([sys.executable, "-c", LOOP], start_new_session=True) for _ in range(processes)]
  try:
    yield
  finally:
    for hog in hogs:
      hog.kill()
      hog.wait()


def test_a_program_held_back_by_another_slot_is_run_again_alone(caplog):
  with Sandbox(LIMITS, workers=2) as sandbox:
    sandbox.start()
    with caplog.at_level(logging.WARNING, logger=LOG):
      hog, victim = sandbox.run_many([ExecutionJob(HOG, DONE), ExecutionJob(ONE_CPU_SECOND, DONE)])
  assert victim[0].verdict is Verdict.PASSED, victim[0].message
  # The hog crowded itself with its own processes: it is not run again.
  assert hog[0].verdict is Verdict.TIMEOUT and hog[0].waited_s == 0.0, hog
  assert "1 tests of 1 programs timed out" in caplog.text and "1 ran again" in caplog.text, caplog.text
  assert "and 1 passed" in caplog.text, caplog.text


def test_the_wait_for_a_cpu_is_measured_for_a_script_and_for_a_check():
  busy_check = "import time\nwhile time.process_time() < 0.2:\n    pass\nassert f() == 1"  # runs in the checker
  jobs = [
    ExecutionJob(HOG, DONE),
    ExecutionJob(ONE_CPU_SECOND.replace("1.0", "0.2"), DONE),
    ExecutionJob("def f():\n    return 1\n", (TestCase("check", code=busy_check),)),
  ]
  with Sandbox(LIMITS, workers=3) as sandbox:
    sandbox.start()
    _, (script,), (check,) = sandbox.run_many(jobs)
  for run in (script, check):  # 0.2 s of CPU beside 16 busy processes on two cores: over a second of waiting
    assert run.passed and run.waited_s >= 0.5, run


def test_a_program_that_sleeps_or_crowds_itself_is_not_run_again(caplog):
  """A sleeper never waits for a CPU; a program whose own busy processes crowd it out would get a second
  try (and time to carry work into it through host-wide counters) if its wait counted."""
  crowder = "import os\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n        break\n" + LOOP
  with Sandbox(SHORT, workers=1) as sandbox, caplog.at_level(logging.WARNING, logger=LOG):
    (sleeper,), (crowded,) = sandbox.run_many(
      [ExecutionJob("import time\ntime.sleep(60)\n", DONE), ExecutionJob(crowder, DONE)]
    )
  assert sleeper.verdict is Verdict.TIMEOUT and sleeper.waited_s < WAITED_SHARE * sleeper.duration_s, sleeper
  assert crowded.verdict is Verdict.TIMEOUT and crowded.waited_s == 0.0, crowded
  assert "ran again" not in caplog.text


# Knows no answer: fails t1, then leaves a mark its sandbox keeps (tmpfs inode numbers survive the wipe) and
# computes through t2, which processes outside hold back. A rerun of the whole program in that sandbox read
# the mark and passed both tests.
LEARNER = textwrap.dedent(
  """
  import os
  K = 1 if os.fstat(1).st_ino >= 3000 else 0
  def f(x):
      if x == 5 and K == 0:
          for i in range(3000):
              open(f"/tmp/m{i}", "w").close()
          while True:
              pass
      return x + K
  """
)


def test_a_rerun_cannot_turn_a_failed_test_into_a_pass(caplog):
  """Only t2 runs again (t1's failure stands), in a fresh sandbox (where t2 would read the mark and pass)."""
  tests = (TestCase("t1", code="assert f(0) == 1"), TestCase("t2", code="assert f(5) == 6"))
  with Sandbox(LIMITS, workers=1) as sandbox, caplog.at_level(logging.WARNING, logger=LOG):
    sandbox.start()
    with busy_host():
      t1, t2 = sandbox.run_many([ExecutionJob(LEARNER, tests, entry_point="f")])[0]
  assert "1 tests of 1 programs timed out" in caplog.text and "1 ran again" in caplog.text, caplog.text
  assert t1.verdict is Verdict.FAILED and t2.verdict is Verdict.TIMEOUT, (t1, t2)


def test_reruns_stop_at_a_programs_first_that_does_not_pass(caplog):
  tests = tuple(TestCase(f"t{i}", stdin="", expected_stdout="done\n") for i in range(3))
  with Sandbox(SHORT, workers=1) as sandbox, caplog.at_level(logging.WARNING, logger=LOG):
    sandbox.start()
    with busy_host():
      runs = sandbox.run_many([ExecutionJob(LOOP, tests)])[0]
  assert [run.verdict for run in runs] == [Verdict.TIMEOUT] * 3
  assert "3 tests of 1 programs timed out" in caplog.text and "1 ran again" in caplog.text, caplog.text


def test_reruns_stop_once_they_have_taken_as_long_as_the_batch(caplog):
  """Two programs loop side by side for a second; the first one's rerun, with a fresh sandbox's start, takes
  longer than that, so the second is not run again."""
  with Sandbox(SHORT, workers=2) as sandbox, caplog.at_level(logging.WARNING, logger=LOG):
    sandbox.start()
    with busy_host():
      sandbox.run_many([ExecutionJob(LOOP, DONE), ExecutionJob(LOOP, DONE)])
  assert "2 tests of 2 programs timed out" in caplog.text and "1 ran again" in caplog.text, caplog.text
  assert "1 did not (reruns stop once they have taken as long as the batch)" in caplog.text, caplog.text


def test_only_timeouts_that_waited_for_a_cpu_are_held_back():
  def run(verdict, waited_s, duration_s=3.0):
    return TestRun("t", verdict, duration_s=duration_s, waited_s=waited_s)

  assert held_back(run(Verdict.TIMEOUT, WAITED_SHARE * 3.0))
  assert not held_back(run(Verdict.TIMEOUT, 0.5))  # computed, or slept, most of the time
  assert not held_back(run(Verdict.TIMEOUT, 0.0, duration_s=0.0))  # the slot stopped answering: nothing known
  assert not held_back(run(Verdict.FAILED, 3.0))
  held, failed, skipped = run(Verdict.TIMEOUT, 2.0), run(Verdict.FAILED, 0.0), run(Verdict.SKIPPED, 0.0)
  assert held_back_tests([failed, held, failed, held]) == [1, 3]  # the first run's other verdicts stand
  assert held_back_tests([failed, held, skipped, skipped]) == [1, 2, 3]  # stop_on_failure skipped those for it
  assert held_back_tests([failed, skipped]) == []
