"""The trusted checker and the wire format: assertion tests graded on data the program returns."""

import math
import os
import select
import subprocess
import sys
import time
import types

import pytest

from ssd_jax.data.problems import TestCase
from ssd_jax.evals import sandbox_harness, sandbox_processes
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.sandbox_wire import (
  MAX_RELAYED_BYTES,
  NotData,
  decode_value,
  encode_value,
  read_message,
  write_message,
)
from ssd_jax.evals.verdicts import Verdict

LIMITS = SandboxLimits(timeout_s=5.0, cpu_time_s=5.0, memory_mb=512)
STACK_TEST = TestCase("stack", code="s = Stack()\ns.push(1)\ns.push(2)\nassert s.pop() == 2\nassert s.size() == 1")
STACK = "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n        self.items.append(x)\n"
STARTER = "import math\n\n\ndef helper(x):\n    return 2 * x\n\n\ndef f(x):\n    '''Twice x.'''\n"


def one_test(code: str, **kwargs) -> tuple[TestCase, ...]:
  return (TestCase("t", code=code, **kwargs),)


# name -> (job, expected verdict)
CASES = {
  "class_with_handles": (
    ExecutionJob(
      STACK
      + "    def pop(self):\n        return self.items.pop()\n    def size(self):\n        return len(self.items)\n",
      (STACK_TEST,),
    ),
    Verdict.PASSED,
  ),
  "class_wrong": (
    ExecutionJob(
      STACK + "    def pop(self):\n        return self.items[0]\n    def size(self):\n        return 2\n", (STACK_TEST,)
    ),
    Verdict.FAILED,
  ),
  "objects_compared": (
    ExecutionJob("class P:\n    pass\ndef make():\n    return P()\n", one_test("assert make() == make()")),
    Verdict.UNVERIFIABLE,
  ),
  "function_argument": (
    ExecutionJob("def apply(g, x):\n    return g(x)\n", one_test("assert apply(lambda x: x + 1, 2) == 3")),
    Verdict.UNVERIFIABLE,
  ),
  "module_level_value": (ExecutionJob("LIMIT = 2 + 3\n", one_test("assert LIMIT == 5")), Verdict.PASSED),
  "expected_exception": (
    ExecutionJob(
      "def f(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x\n",
      one_test("try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError('no ValueError')"),
    ),
    Verdict.PASSED,
  ),
  "exception_of_the_programs_own_type": (
    ExecutionJob(
      "class Mine(Exception):\n    pass\ndef f(x):\n    raise Mine('x')\n",
      one_test("try:\n    f(-1)\nexcept ValueError:\n    pass"),
    ),
    Verdict.ERROR,
  ),
  "helpers_come_from_the_problem": (  # the program redefines the helper the test relies on
    ExecutionJob(
      STARTER + "    return 0\n\n\ndef helper(x):\n    return 0\n", one_test("assert f(3) == helper(3)"), STARTER, "f"
    ),
    Verdict.FAILED,
  ),
  "helpers_come_from_the_problem_correct": (
    ExecutionJob(
      STARTER + "    return x + x\n", one_test("assert f(3) == helper(3) and math.isclose(f(0.5), 1.0)"), STARTER, "f"
    ),
    Verdict.PASSED,
  ),
  "test_output_compared": (
    ExecutionJob("def f(x):\n    print('noise')\n    return x * x\n", one_test("print(f(2))", expected_stdout="4")),
    Verdict.PASSED,
  ),
  "entry_point_missing": (
    ExecutionJob("def g(x):\n    return x\n", one_test("assert f(1) == 1"), "", "f"),
    Verdict.ERROR,
  ),
}


@pytest.fixture(scope="module")
def results():
  with Sandbox(LIMITS, workers=2) as sandbox:
    runs = sandbox.run_many([job for job, _ in CASES.values()])
  return dict(zip(CASES, runs))


@pytest.mark.parametrize("name", list(CASES))
def test_verdict(results, name):
  (run,) = results[name]
  assert run.verdict == CASES[name][1], run


@pytest.mark.parametrize(
  "value",
  [
    None,
    True,
    0,
    -(2**200),
    3**5000,
    1.5,
    -0.0,
    float("inf"),
    "text \u00e9 \ud800",
    b"\x00\xff",
    complex(1, -2),
    [1, (2, 3), {4}, frozenset({5})],
    {"a": [1], (1, 2): None, 3: {"x": 1.25}},
    (),
  ],
)
def test_wire_round_trip(value):
  decoded = decode_value(encode_value(value))
  assert decoded == value and type(decoded) is type(value)


def test_wire_nan_and_subclasses():
  assert math.isnan(decode_value(encode_value(float("nan"))))
  import collections

  counter = decode_value(encode_value(collections.Counter("aab")))
  assert counter == {"a": 2, "b": 1} and type(counter) is dict
  point = collections.namedtuple("Point", "x y")(1, 2)
  assert decode_value(encode_value(point)) == (1, 2)


def test_worker_and_checker_sources_can_make_themselves_undumpable():
  # Both scripts run as `python -I -S -c` with the wire source prepended; PR_GET_DUMPABLE (3) reads the flag.
  for source in (sandbox_processes.HARNESS_SOURCE, sandbox_processes.CHECKER_SOURCE):
    probe = "\nimport ctypes\nbefore = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\nmake_undumpable('probe')\n"
    probe += "print(before, ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))\n"
    script = source.replace('if __name__ == "__main__":', "if False:") + probe
    result = subprocess.run([sys.executable, "-I", "-S", "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["1", "0"], result.stderr


@pytest.mark.parametrize(
  "data",
  [["i", "zz"], ["q", 1], ["d", [["l", 1], 2]], ["s", ["l"]], ["h", 1], 1, 1.5, {"a": 1}, ["f", 3], []],
)
def test_wire_rejects_malformed_data(data):
  with pytest.raises(NotData):
    decode_value(data)


def test_wire_rejects_deep_nesting_and_objects():
  nested = []
  for _ in range(300):
    nested = [nested]
  with pytest.raises(NotData):
    encode_value(nested)
  with pytest.raises(NotData):
    encode_value(object())


def test_a_call_that_meets_a_gone_program_keeps_its_load_report(monkeypatch):
  """The checker's first call can reach the worker just after the program reported a failed load and exited.

  The worker must still relay the load report (and so its error message) before the exit: otherwise the
  verdict's message depends on timing, and SDPO's feedback, built from it, is not reproducible.
  """
  grader_r, grader_w = os.pipe()  # grader -> worker requests
  event_r, event_w = os.pipe()  # worker -> grader events
  reply_r, reply_w = os.pipe()  # program -> worker
  request_r, request_w = os.pipe()  # worker -> program
  load_report = {"loaded": False, "status": "error", "message": "IndentationError: unexpected indent"}
  write_message(reply_w, load_report)
  program = subprocess.Popen([sys.executable, "-c", "pass"])
  os.waitid(os.P_PID, program.pid, os.WEXITED | os.WNOWAIT)  # gone, not reaped: its pidfd is ready
  pidfd = os.pidfd_open(program.pid)
  os.close(reply_w)
  os.close(request_r)  # a gone program's end of the pipe: the relayed call meets a broken pipe
  write_message(grader_w, {"op": "rpc", "request": {"op": "resolve", "name": "f"}})

  calls = []

  def grader_request_first(read, write, error, timeout):  # as if the call came before the program's report
    calls.append(read)
    return ([sandbox_harness.REQUEST_FD], [], []) if len(calls) == 1 else select.select(read, write, error, timeout)

  monkeypatch.setattr(sandbox_harness, "REQUEST_FD", grader_r)
  monkeypatch.setattr(sandbox_harness, "EVENT_FD", event_w)
  monkeypatch.setattr(sandbox_harness, "select", types.SimpleNamespace(select=grader_request_first))
  try:
    try:
      ended = sandbox_harness.relay_calls(pidfd, reply_r, request_w, time.monotonic() + 10, 1 << 20)
    finally:
      program.wait()
      os.close(event_w)  # Before the read below: a missing report then reads as end of file, not a hang.
    assert ended == "exited"
    assert read_message(event_r, MAX_RELAYED_BYTES) == {"event": "reply", "data": load_report}
  finally:  # A failing run leaks no descriptors into the pytest process.
    for fd in (grader_r, grader_w, event_r, reply_r, request_w, pidfd):
      os.close(fd)
