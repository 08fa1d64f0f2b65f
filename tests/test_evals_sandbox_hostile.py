"""Hostile programs get the right verdict, leave nothing running, and do not disturb others."""

import os
import pathlib
import socket
import textwrap

import pytest

from ssd_jax.data.problems import TestCase
from ssd_jax.evals import process_reaper
from ssd_jax.evals.sandbox import MAX_UID_BLOCKS, SANDBOX_UID_BASE, UID_BLOCK_SIZE, ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import Verdict

SECRET = "hunter2-do-not-leak"
LIMITS = SandboxLimits(
  timeout_s=3.0, cpu_time_s=1.0, memory_mb=256, max_processes=8, max_file_mb=1, max_output_bytes=4096
)
ADD_TEST = (TestCase("add", code="assert add(1, 2) == 3"),)
WRONG_ADD = "def add(a, b):\n    return 0\n"
FORGED = '{"nonce": "0", "status": "completed", "message": "", "stdout_offset": 0, "event": "done"}'


def hostile_programs(sentinel_dir: pathlib.Path, port: int):
  """(name, program, tests, allowed verdicts) for each hostile program."""
  sentinel = sentinel_dir / "keep.txt"
  cases = {
    "fork_bomb": (
      "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
      ADD_TEST,
      {Verdict.TIMEOUT},
    ),
    "memory_bomb": ("x = []\nwhile True:\n    x.append(' ' * 5 * 10**7)\n", ADD_TEST, {Verdict.MEMORY}),
    "one_huge_allocation": ("x = bytearray(2 * 1024**3)\n", ADD_TEST, {Verdict.MEMORY}),
    "infinite_loop": ("while True:\n    pass\n", ADD_TEST, {Verdict.TIMEOUT}),
    "sleep_forever": ("import time\ntime.sleep(10**6)\n", ADD_TEST, {Verdict.TIMEOUT}),
    "cpu_spin_ignoring_signals": (
      "import signal\nfor s in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP):\n"
      "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    pass\n",
      ADD_TEST,
      {Verdict.TIMEOUT},
    ),
    "deep_recursion": ("def f(n):\n    return f(n + 1)\nf(0)\n", ADD_TEST, {Verdict.ERROR}),
    "deep_recursion_unlimited": (
      "import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
      ADD_TEST,
      {Verdict.ERROR, Verdict.MEMORY, Verdict.TIMEOUT},
    ),
    "write_outside_workdir": (
      f"open({str(sentinel_dir / 'pwned.txt')!r}, 'w').write('x')\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "write_to_parent_dir": ("open('../pwned.txt', 'w').write('x')\n", ADD_TEST, {Verdict.ERROR}),
    "delete_files": (f"import os\nos.remove({str(sentinel)!r})\n", ADD_TEST, {Verdict.ERROR}),
    "read_environment_secrets": (
      "import os\ndef add(a, b):\n    return a + b\n",
      (TestCase("no_secret", code=f"import os\nassert {SECRET!r} not in str(os.environ)"),),
      {Verdict.PASSED},
    ),
    "scan_proc_environ_for_secrets": (
      "import os\nfound = 0\nfor pid in os.listdir('/proc'):\n    try:\n"
      f"        found += {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read()\n"
      "    except OSError:\n        pass\nprint(found)\n",
      (TestCase("nothing_found", stdin="", expected_stdout="0"),),
      {Verdict.PASSED},
    ),
    "open_socket": (
      f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "raw_socket_via_os": (
      "import _socket\ns = _socket.socket()\ns.connect(('127.0.0.1', %d))\n" % port,
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "kill_parent": (
      "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)\n",
      ADD_TEST,
      {Verdict.ERROR, Verdict.TIMEOUT},
    ),
    "kill_everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n", ADD_TEST, {Verdict.ERROR, Verdict.TIMEOUT}),
    "flood_stdout": ("while True:\n    print('x' * 1000)\n", ADD_TEST, {Verdict.ERROR}),
    "huge_file": ("open('big.bin', 'wb').write(b'0' * (64 * 1024**2))\n", ADD_TEST, {Verdict.ERROR, Verdict.MEMORY}),
    "exhaust_file_descriptors": ("fs = [open('/dev/null') for _ in range(100000)]\n", ADD_TEST, {Verdict.ERROR}),
    "os_exit_before_tests": ("import os\nos._exit(0)\n", ADD_TEST, {Verdict.ERROR}),
    "sys_exit_before_tests": ("import sys\nsys.exit(0)\n", ADD_TEST, {Verdict.ERROR}),
    "override_assertion_error": (
      WRONG_ADD + "import builtins\nclass AssertionError(Exception):\n    pass\nbuiltins.AssertionError = "
      "AssertionError\n",
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "override_builtins": (
      WRONG_ADD + "__builtins__ = {'AssertionError': Exception}\n",
      ADD_TEST,
      {Verdict.FAILED, Verdict.ERROR},
    ),
    "forge_success_marker": (
      "import os, sys\n" + f"line = {FORGED!r}\nprint(line)\nsys.stderr.write(line)\nsys.stdout.flush()\n"
      "for fd in range(3, 64):\n    try:\n        os.write(fd, (line + '\\n').encode())\n"
      "    except OSError:\n        pass\nos._exit(0)\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "atexit_forgery": (
      WRONG_ADD + f"import atexit, os\natexit.register(lambda: os.write(1, {FORGED!r}.encode()))\n",
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "trace_to_skip_asserts": ("import sys\nsys.settrace(lambda *a: None)\n" + WRONG_ADD, ADD_TEST, {Verdict.ERROR}),
    "exception_with_exiting_str": (
      "import os\nclass E(Exception):\n    def __str__(self):\n        os._exit(0)\ndef add(a, b):\n    raise E()\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "ctypes_syscalls": ("import ctypes\nctypes.CDLL(None).unshare(0)\n", ADD_TEST, {Verdict.ERROR}),
    "inspect_harness_memory": ("import gc\ngc.get_objects()\n", ADD_TEST, {Verdict.ERROR}),
    "spawn_daemon": (
      "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n"
      "    os._exit(0)\ndef add(a, b):\n    return a + b\n",
      ADD_TEST,
      {Verdict.PASSED},
    ),
    "background_shell_job": (
      "import os\nos.system('sleep 1000 &')\ndef add(a, b):\n    return a + b\n",
      ADD_TEST,
      {Verdict.PASSED},
    ),
  }
  return cases


GOOD_JOBS = [
  ExecutionJob("def add(a, b):\n    return a + b\n", ADD_TEST),
  ExecutionJob("print(sum(map(int, input().split())))\n", (TestCase("sum", stdin="2 3\n", expected_stdout="5\n"),)),
]


def _sandbox_survivors():
  if os.geteuid() != 0:
    return []
  uids = range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + MAX_UID_BLOCKS * UID_BLOCK_SIZE)
  return process_reaper.live_processes(lambda p: p.info["uids"].real in uids)


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
  sentinel_dir = tmp_path_factory.mktemp("sentinel")
  sentinel_dir.chmod(0o755)
  (sentinel_dir / "keep.txt").write_text("keep")
  listener = socket.socket()
  listener.bind(("127.0.0.1", 0))
  listener.listen(8)
  listener.setblocking(False)
  os.environ["SSD_TEST_SECRET"] = SECRET
  try:
    cases = hostile_programs(sentinel_dir, listener.getsockname()[1])
    jobs = [ExecutionJob(program, tests) for program, tests, _ in cases.values()]
    with Sandbox(LIMITS, workers=2) as sandbox:
      results = sandbox.run_many(GOOD_JOBS + jobs + GOOD_JOBS)
    try:
      accepted = listener.accept()
    except BlockingIOError:
      accepted = None
  finally:
    del os.environ["SSD_TEST_SECRET"]
    listener.close()
  good = results[: len(GOOD_JOBS)] + results[-len(GOOD_JOBS) :]
  hostile = dict(zip(cases, results[len(GOOD_JOBS) : -len(GOOD_JOBS)]))
  return {"cases": cases, "hostile": hostile, "good": good, "accepted": accepted, "sentinel_dir": sentinel_dir}


def test_battery_is_large_enough(battery):
  assert len(battery["cases"]) >= 25


@pytest.mark.parametrize("name", list(hostile_programs(pathlib.Path("/x"), 1)))
def test_hostile_program_verdict(battery, name):
  _, _, allowed = battery["cases"][name]
  runs = battery["hostile"][name]
  assert all(run.verdict in allowed for run in runs), (name, runs)


def test_no_secret_leaks_into_output(battery):
  for runs in battery["hostile"].values():
    for run in runs:
      assert SECRET not in run.stdout + run.stderr + run.message


def test_good_programs_unaffected(battery):
  for runs in battery["good"]:
    assert [run.verdict for run in runs] == [Verdict.PASSED] * len(runs)


def test_files_and_network_untouched(battery):
  assert (battery["sentinel_dir"] / "keep.txt").read_text() == "keep"
  assert not (battery["sentinel_dir"] / "pwned.txt").exists()
  assert battery["accepted"] is None


def test_no_sandbox_process_survives(battery):
  assert _sandbox_survivors() == []


def test_flood_output_is_capped(battery):
  (run,) = battery["hostile"]["flood_stdout"]
  assert len(run.stdout) <= LIMITS.max_output_bytes
  assert "output limit" in run.message


@pytest.mark.skipif(os.geteuid() != 0, reason="stray /tmp files are traced by the sandbox uid")
def test_files_left_in_tmp_are_removed():
  program = "open('/tmp/ssd_sandbox_stray_marker', 'w').write('x')\ndef add(a, b):\n    return a + b\n"
  with Sandbox(LIMITS, workers=1) as sandbox:
    (run,) = sandbox.run(program, ADD_TEST)
  assert run.verdict == Verdict.PASSED
  assert not pathlib.Path("/tmp/ssd_sandbox_stray_marker").exists()


def test_timeout_message_and_stdio_comparison_in_parent():
  program = textwrap.dedent("""
        import sys
        data = sys.stdin.read().split()
        print(int(data[0]) * 2)
    """)
  tests = (TestCase("double", stdin="21\n", expected_stdout="42"), TestCase("wrong", stdin="1\n", expected_stdout="3"))
  with Sandbox(LIMITS, workers=1) as sandbox:
    runs = sandbox.run(program, tests)
    skipped = sandbox.run(program, tests[::-1], stop_on_failure=True)
  assert [r.verdict for r in runs] == [Verdict.PASSED, Verdict.FAILED]
  assert "expected '3', got '2'" in runs[1].message
  assert [r.verdict for r in skipped] == [Verdict.FAILED, Verdict.SKIPPED]
