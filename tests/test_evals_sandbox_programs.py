"""Nothing carries from one program to the next on a slot: memory, the worker's limits and scheduling, sysctls, PIDs.

Each case runs an earlier program and then a later one on a one-worker pool; the later one prints what it
can find of the earlier, and passes only if it finds nothing (every case fails on a worker that forks test
processes from its own long-lived memory and keeps its state across programs).
"""

import logging
import socket
import textwrap

import pytest

from ssd_jax.data.problems import TestCase
from ssd_jax.evals import sandbox_processes
from ssd_jax.evals.sandbox import Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import Verdict

LIMITS = SandboxLimits(timeout_s=20.0, cpu_time_s=15.0, memory_mb=512, max_processes=64, max_file_mb=1, tmpfs_mb=16)
MARKER = "earlier-program-7f3a9c51"


def _later(body: str, expected: str) -> tuple[str, TestCase]:
  return textwrap.dedent(body), TestCase("later", stdin="", expected_stdout=expected)


SCAN_MEMORY = _later(
  """
  import ctypes, re
  # A pattern, not the marker itself, which would then be in this program's own memory.
  needle = re.compile(rb"earlier-program-[0-9a-f]{8}")
  found = False
  with open("/proc/self/maps") as maps:
      regions = [line.split() for line in maps]
  for fields in regions:
      start, end = (int(x, 16) for x in fields[0].split("-"))
      # Anonymous and heap memory (file mappings past their file's end raise SIGBUS when read).
      if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] not in ("[heap]", "[stack]")):
          continue
      try:
          found |= needle.search(ctypes.string_at(start, end - start)) is not None
      except Exception:
          pass
  print("found" if found else "clean")
  """,
  "clean\n",
)
READ_STATE = _later(
  """
  import ctypes, os, platform, resource
  ioprio = {"x86_64": 252, "aarch64": 31}.get(platform.machine())
  print(resource.prlimit(1, resource.RLIMIT_MSGQUEUE)[0], resource.prlimit(1, 10)[0],  # 10: RLIMIT_LOCKS
        os.getpriority(os.PRIO_PROCESS, 1), sorted(os.sched_getaffinity(0)),
        ioprio and ctypes.CDLL(None).syscall(ioprio, 1, 1), len(open("/proc/net/tcp").readlines()))
  """,
  "",  # the value a fresh sandbox shows, read below
)
# A TCP connection closed by its client waits in TIME_WAIT after every process is gone.
TIME_WAIT = """
import socket
server = socket.create_server(("127.0.0.1", 0))
client = socket.create_connection(server.getsockname())
peer, _ = server.accept()
client.close()
peer.close()
server.close()
"""


def _run(sandbox: Sandbox, earlier: str, later: tuple[str, TestCase]):
  program, test = later
  sandbox.run(earlier, [TestCase("earlier", stdin="", expected_stdout="")])
  return sandbox.run(program, [test])[0]


def test_a_program_cannot_find_an_earlier_one_in_memory():
  earlier = f'SOLUTION = "{MARKER}"\nprint(SOLUTION)\n'
  with Sandbox(LIMITS, workers=1) as sandbox:
    run = _run(sandbox, earlier, SCAN_MEMORY)
  assert run.verdict == Verdict.PASSED, run


@pytest.mark.parametrize(
  "change",
  [
    "resource.prlimit(1, resource.RLIMIT_MSGQUEUE, (12345, resource.prlimit(1, resource.RLIMIT_MSGQUEUE)[1]))",
    "os.setpriority(os.PRIO_PROCESS, 1, 19)",
    "os.sched_setaffinity(1, {sorted(os.sched_getaffinity(1))[0]})",
    "resource.prlimit(1, 10, (777, resource.prlimit(1, 10)[1]))",  # RLIMIT_LOCKS, which resource does not name
    # ioprio_set(a process, pid 1, class idle).
    "import ctypes, platform\nnumber = {'x86_64': 251, 'aarch64': 30}[platform.machine()]\n"
    "assert ctypes.CDLL(None).syscall(number, 1, 1, 3 << 13) == 0",
    TIME_WAIT,
  ],
)
def test_a_program_cannot_leave_state_in_the_worker_for_the_next(change):
  program, test = READ_STATE
  with Sandbox(LIMITS, workers=1) as sandbox:
    fresh = sandbox.run(program, [test])[0]
    after = _run(sandbox, f"import os, resource\n{change}\n", READ_STATE)
  assert fresh.verdict == after.verdict == Verdict.FAILED  # the expected output is empty; stdout is what counts
  assert after.stdout == fresh.stdout, (change, fresh.stdout, after.stdout)


def test_a_writable_sysctl_does_not_carry_to_the_next_program():
  read = "print(open('/proc/sys/kernel/msgmax').read().strip())\n"
  write = "open('/proc/sys/kernel/msgmax', 'w').write('4242')\n"
  with Sandbox(LIMITS, workers=1) as sandbox:
    fresh = sandbox.run(read, [TestCase("read", stdin="", expected_stdout="")])[0]
    after = _run(sandbox, write, (read, TestCase("read", stdin="", expected_stdout="")))
  assert after.stdout == fresh.stdout != "4242\n"


def test_pids_do_not_count_what_an_earlier_program_started():
  forks = "import os\nfor _ in range({n}):\n    if os.fork() == 0:\n        os._exit(0)\n    os.wait()\n"
  pid = "import os\nprint(os.getpid())\n"
  seen = []
  for n in (5, 40):
    with Sandbox(LIMITS, workers=1) as sandbox:
      seen.append(_run(sandbox, forks.format(n=n), (pid, TestCase("pid", stdin="", expected_stdout=""))).stdout)
  assert seen[0] == seen[1], seen


def test_pids_do_not_count_the_tests_an_earlier_program_ran():
  # Stopping at the first failure runs one test of a wrong program and five of a right one.
  tests = [TestCase(f"t{i}", stdin=f"{i}\n", expected_stdout=f"{i}\n") for i in range(5)]
  pid = "import os\nprint(os.getpid())\n"
  seen = []
  for earlier in ("print(input())\n", "print(-1)\n"):
    with Sandbox(LIMITS, workers=1) as sandbox:
      runs = sandbox.run(earlier, tests, stop_on_failure=True)
      seen.append((sum(run.verdict != Verdict.SKIPPED for run in runs), sandbox.run(pid, tests[:1])[0].stdout))
  assert [ran for ran, _ in seen] == [5, 1] and seen[0][1] == seen[1][1], seen


def test_without_the_pid_counter_every_program_gets_a_fresh_sandbox_and_says_so(monkeypatch, caplog):
  echo = [TestCase("echo", stdin="1\n", expected_stdout="1\n")]
  with Sandbox(LIMITS, workers=1) as sandbox:
    if sandbox.weak:
      pytest.skip(f"a weak sandbox does not count PIDs: {sandbox.weak}")
    assert sandbox.run("print(input())\n", echo)[0].verdict == Verdict.PASSED
    assert sandbox.worker_pids  # the worker stays for the next program
  unreadable = sandbox_processes.HARNESS_SOURCE.replace('"/proc/sys/kernel/ns_last_pid"', '"/proc/sys/kernel/absent"')
  assert unreadable != sandbox_processes.HARNESS_SOURCE
  monkeypatch.setattr(sandbox_processes, "HARNESS_SOURCE", unreadable)
  sandbox_processes._warn_no_pid_counter.cache_clear()
  with caplog.at_level(logging.WARNING), Sandbox(LIMITS, workers=1) as sandbox:
    for _ in range(3):
      assert sandbox.run("print(input())\n", echo)[0].verdict == Verdict.PASSED
      assert not sandbox.worker_pids  # replaced: the next program starts a fresh one
  assert sum("ns_last_pid" in record.getMessage() for record in caplog.records) == 1, caplog.text


def test_sockets_the_host_opens_do_not_replace_the_sandbox():
  """sockstat's TCP alloc, orphan and mem count the host's sockets: the worker once saw them as the program's."""
  echo = [TestCase("echo", stdin="1\n", expected_stdout="1\n")]
  with Sandbox(LIMITS, workers=1) as sandbox:
    if sandbox.weak:
      pytest.skip(f"a weak sandbox shares the host's network namespace: {sandbox.weak}")
    sandbox.start()  # the worker's baseline, before the host's sockets
    workers = sandbox.worker_pids
    host_sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(4)]
    try:
      for _ in range(2):
        assert sandbox.run("print(input())\n", echo)[0].verdict == Verdict.PASSED
        assert sandbox.worker_pids == workers
    finally:
      for host_socket in host_sockets:
        host_socket.close()


def test_a_host_with_more_cpus_than_a_uid_block_gets_a_full_pool_not_an_error(monkeypatch):
  """TPU VM hosts have 100-200+ CPUs; a pool's user ids come in one block of 64."""
  monkeypatch.setattr("ssd_jax.evals.sandbox.os.cpu_count", lambda: 208)
  with Sandbox(SandboxLimits(timeout_s=5, cpu_time_s=5), allow_weak_sandbox=True) as pool:
    assert pool.workers == 64
    (result,) = pool.run("print(input())", [TestCase("echo", stdin="ok\n", expected_stdout="ok\n")])
    assert result.verdict == Verdict.PASSED
  with pytest.raises(ValueError, match="workers must be at most 64, got 65"):
    Sandbox(SandboxLimits(), workers=65)
