"""Correct programs that the grader failed through its own artefacts, not through what they compute.

A stdio program runs as ``python solution.py < input`` would: its threads and atexit handlers run before it
exits, with the exit status Python gives. Each case failed before the fix named in its comment.
"""

import json
import random

import pytest

from ssd_jax.data.livecodebench import _FUNCTIONAL_CHECK, LCB_PROGRAM_PREFIX
from ssd_jax.data.problems import TestCase
from ssd_jax.evals import sandbox_wire
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import Verdict

LIMITS = SandboxLimits(timeout_s=3.0, cpu_time_s=3.0, memory_mb=512, tmpfs_mb=16)
SUM = (TestCase("sum", stdin="2 3\n", expected_stdout="5\n"),)
READ_SUM = "a, b = map(int, input().split())\n"
SCRIPTS = {
  # name: (program, tests, expected verdict). The child ended with os._exit right after the module code: atexit
  # handlers never ran, and threads were killed. Now it shuts down as the interpreter does.
  "atexit_flushes_the_output": (
    "import atexit, io, sys\n_buffer = io.StringIO()\nsys.stdout = _buffer\n"
    "atexit.register(lambda: sys.__stdout__.write(_buffer.getvalue()))\n" + READ_SUM + "print(a + b)\n",
    SUM,
    Verdict.PASSED,
  ),
  "main_in_a_thread": (
    "import sys, threading, time\nsys.setrecursionlimit(1 << 25)\nthreading.stack_size(1 << 27)\n"
    "def main():\n    time.sleep(0.3)\n    a, b = map(int, sys.stdin.readline().split())\n    print(a + b)\n"
    "threading.Thread(target=main).start()\n",
    SUM,
    Verdict.PASSED,
  ),
  "threads_end_before_atexit_handlers_run": (
    "import atexit, threading, time\natexit.register(print, 'last')\n"
    + READ_SUM
    + "threading.Thread(target=lambda: (time.sleep(0.3), print(a + b))).start()\n",
    (TestCase("order", stdin="2 3\n", expected_stdout="5\nlast\n"),),
    Verdict.PASSED,
  ),
  "a_failing_atexit_handler_is_reported": (
    "import atexit\natexit.register(print, 5)\natexit.register(lambda: 1 / 0)\n",
    SUM,
    Verdict.PASSED,
  ),
  "a_thread_that_never_ends_times_out": (
    "import threading\nprint(5, flush=True)\nthreading.Thread(target=threading.Event().wait).start()\n",
    SUM,
    Verdict.TIMEOUT,
  ),
  # SystemExit ends a script normally whatever its code, as LiveCodeBench reads it; shutdown still runs.
  "sys_exit_with_a_status": ("import sys\nprint(5)\nsys.exit(2)\n", SUM, Verdict.PASSED),
  "sys_exit_after_atexit": ("import atexit, sys\natexit.register(print, 5)\nsys.exit('done')\n", SUM, Verdict.PASSED),
  # The worker's argv ['-c', '{"scratch": ...}'] was the program's: this opened a file named by its JSON.
  "argv_names_an_input_file": (
    "import sys\nassert sys.argv == ['solution.py'], sys.argv\nif len(sys.argv) > 1:\n"
    "    sys.stdin = open(sys.argv[1])\n" + READ_SUM + "print(a + b)\n",
    SUM,
    Verdict.PASSED,
  ),
  # The interpreter runs with -S, which leaves out site's exit() and quit(): NameError.
  "exit_builtin": (READ_SUM + "print(a + b)\nexit()\nprint('not reached')\n", SUM, Verdict.PASSED),
  "quit_builtin": (READ_SUM + "print(a + b)\nquit(0)\n", SUM, Verdict.PASSED),
  # The program ran in a bare dict, not a module in sys.modules: pickle could not find its own functions.
  "multiprocessing_pool": (
    "import multiprocessing as mp\ndef add(pair):\n    return pair[0] + pair[1]\n"
    "if __name__ == '__main__':\n"
    + "    "
    + READ_SUM
    + "    with mp.get_context('fork').Pool(2) as pool:\n        print(pool.map(add, [(a, b)])[0])\n",
    SUM,
    Verdict.PASSED,
  ),
  "pickle_own_objects": (
    "import pickle\nclass Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
    "def total(pair):\n    return pair.a + pair.b\n"
    + READ_SUM
    + "f, pair = pickle.loads(pickle.dumps((total, Pair(a, b))))\nassert f is total\nprint(f(pair))\n",
    SUM,
    Verdict.PASSED,
  ),
}
PICKLE_IN_CALLS = (
  "import pickle\nclass Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n"
  "def add(a, b):\n    pair = pickle.loads(pickle.dumps(Pair(a, b)))\n    return pair.a + pair.b\n"
)
ADD_TEST = (TestCase("add", code="assert add(2, 3) == 5"),)
CASES = {
  **SCRIPTS,
  "pickle_in_calls": (PICKLE_IN_CALLS, ADD_TEST, Verdict.PASSED),
  "after_all": (READ_SUM + "print(a + b)\n", SUM, Verdict.PASSED),  # the worker outlived the cases above
}


@pytest.fixture(scope="module")
def runs():
  with Sandbox(LIMITS, workers=1) as sandbox:
    assert sandbox.weak is None
    results = sandbox.run_many([ExecutionJob(program, tests) for program, tests, _ in CASES.values()])
  return dict(zip(CASES, results))


@pytest.mark.parametrize("name", list(CASES))
def test_verdict(runs, name):
  assert [run.verdict for run in runs[name]] == [CASES[name][2]], runs[name]


def test_a_failing_atexit_handler_is_reported(runs):
  assert "ZeroDivisionError" in runs["a_failing_atexit_handler_is_reported"][0].stderr


def _functional_test(n: int) -> TestCase:
  """LiveCodeBench's 'Maximum Sum Queries' sizes: three arrays of n values up to 1e9 (about 5 MB of code)."""
  rng = random.Random(0)
  nums1, nums2 = ([rng.randint(1, 10**9) for _ in range(n)] for _ in range(2))
  queries = [[rng.randint(1, 10**9), rng.randint(1, 10**9)] for _ in range(n)]
  inputs = "\n".join(json.dumps(x) for x in (nums1, nums2, queries))
  output = json.dumps([max(nums1) + max(nums2), n])
  return TestCase(f"n={n}", code=_FUNCTIONAL_CHECK.format(inputs=inputs, output=output, func_name="maximumSumQueries"))


LARGE_CALLS = LCB_PROGRAM_PREFIX + (
  "class Solution:\n    def maximumSumQueries(self, nums1, nums2, queries):\n"
  "        return [max(nums1) + max(nums2), len(queries)]\n"
)
LARGE_REPLY = "def squares(n):\n    return [i * i for i in range(n)]\n"
REPLY_LENGTH = 600_000  # about 9 MB tagged: over the old 4 MiB frames
LARGE_REPLY_TEST = (
  TestCase("squares", code=f"assert squares({REPLY_LENGTH}) == [i * i for i in range({REPLY_LENGTH})]"),
)
# A reply within max_reply_bytes that the worker's re-encoding (ensure_ascii) grows past what the grader reads:
# the grader once stopped the slot over it; now it is the program's error, and the worker stays.
GROWING_REPLY = (
  "import functools, json\njson.dumps = functools.partial(json.dumps, ensure_ascii=False)\n"
  f"def add(a, b):\n    return '\\u00e9' * {sandbox_wire.MAX_RELAYED_BYTES // 6 + 1024}\n"
)
OVER_LIMIT_REPLY = f"def add(a, b):\n    return 'x' * {sandbox_wire.MAX_MESSAGE_BYTES + 1}\n"


def test_large_arguments_and_replies_pass_and_over_limit_replies_fail_on_the_same_worker():
  """A call request over 4 MiB once killed the worker ('Broken pipe'): its frames were capped at 4 MiB."""
  limits = SandboxLimits(timeout_s=20.0, cpu_time_s=20.0, memory_mb=1024, tmpfs_mb=16)
  jobs = [
    ExecutionJob(LARGE_CALLS, (_functional_test(100_000),), entry_point="maximumSumQueries"),
    ExecutionJob(LARGE_REPLY, LARGE_REPLY_TEST),
    ExecutionJob(GROWING_REPLY, ADD_TEST),
    ExecutionJob(OVER_LIMIT_REPLY, ADD_TEST),
    ExecutionJob("def add(a, b):\n    return a + b\n", ADD_TEST),
  ]
  assert len(jobs[0].tests[0].code) > 4 << 20
  with Sandbox(limits, workers=1) as sandbox:
    sandbox.start()
    workers = sandbox.worker_pids
    large_calls, large_reply, growing, over_limit, after = sandbox.run_many(jobs)
    assert sandbox.worker_pids == workers  # no reply stopped the slot
  assert [run.verdict for run in large_calls + large_reply + after] == [Verdict.PASSED] * 3, (large_calls, large_reply)
  for run in growing + over_limit:
    assert run.verdict == Verdict.ERROR and "too large" in run.message, run


def test_a_large_output_passes_and_one_escaping_past_the_wire_limit_is_an_output_error():
  """An end event over 8 MiB (about 8 MiB of output, JSON-escaped) once stopped the slot."""
  lines = 550_000  # 10.5 MB of 19-digit numbers
  big = (TestCase("big", stdin=f"{lines}\n", expected_stdout="".join(f"{10**18 + i}\n" for i in range(lines))),)
  escaping = sandbox_wire.MAX_RELAYED_BYTES // 6 + 1024  # each control character is escaped as \u0001
  limits = SandboxLimits(timeout_s=20.0, cpu_time_s=20.0, max_output_bytes=escaping + (1 << 20), tmpfs_mb=32)
  jobs = [
    ExecutionJob("print('\\n'.join(str(10**18 + i) for i in range(int(input()))))\n", big),
    ExecutionJob(f"print('\\x01' * {escaping})\n", SUM),
  ]
  with Sandbox(limits, workers=1) as sandbox:
    sandbox.start()
    workers = sandbox.worker_pids
    (large,), (escaped,) = sandbox.run_many(jobs)
    assert sandbox.worker_pids == workers
  assert large.verdict == Verdict.PASSED, large.message
  assert escaped.verdict == Verdict.ERROR and "output limit" in escaped.message, escaped.message


def test_an_expected_output_past_the_default_cap_is_read_whole():
  # 3.3 MB expected against the default 2 MiB cap: the cap follows the test (twice its expected output).
  expected = "1234567890\n" * 300_000
  test = TestCase("long", stdin="", expected_stdout=expected)
  with Sandbox(SandboxLimits(timeout_s=20.0, cpu_time_s=20.0), workers=1) as sandbox:
    right, too_long = (
      sandbox.run(program, [test])[0]
      for program in (
        "import sys\nsys.stdout.write('1234567890\\n' * 300_000)\n",
        "import sys\nsys.stdout.write('1234567890\\n' * 700_000)\n",
      )
    )
  assert right.verdict == Verdict.PASSED, right
  assert too_long.verdict == Verdict.ERROR and "output limit" in too_long.message, too_long
