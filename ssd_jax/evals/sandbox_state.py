"""What one program could leave in the sandbox worker for the next, and clearing it after each program.

A test process runs under the worker's uid, so it may lower the worker's resource limits (``prlimit``), its
priority, I/O priority, CPU affinity and scheduling policy, raise its OOM score, write the namespace's
writable sysctls (the IPC limits, for one), and leave sockets (a closed TCP connection waits 60 s in
TIME_WAIT, its addresses readable in /proc/net/tcp) and traffic counters in the network namespace. The next
program inherits or reads all of these: a program could slow or starve the ones after it, or pass them a
value (a sample telling the next what the oracle of a multi-assert test confirmed). The worker snapshots them
before any program and compares after each; any difference, or a program that started processes or threads of
its own (the namespace's PID counter would carry their count), replaces the sandbox. Processes and files it
can clear (`kill_others`, `wipe`) are cleared after each run, and a sandbox where any remain is replaced too.
Standard library only: its source goes into the worker's ``python -c`` script.
"""

import ctypes
import os
import platform
import re
import resource
import shutil
import signal
import time

SYSCTL_DIRS = ("/proc/sys/kernel", "/proc/sys/fs/mqueue", "/proc/sys/user")
NET_FILES = tuple(
  f"/proc/self/net/{name}"
  for name in (
    "tcp tcp6 udp udp6 udplite udplite6 raw raw6 unix packet netlink sockstat sockstat6 snmp snmp6 netstat"
  ).split()
)
OWN_FILES = ("/proc/self/oom_score_adj", "/proc/self/autogroup")
# sockstat's TCP orphan, alloc and mem and UDP mem count the whole host's sockets, not the namespace's
# (net/ipv4/proc.c): any host socket opened or closed would replace the sandbox after every program.
HOST_WIDE_SOCKSTAT = re.compile(r"\b(orphan|alloc|mem) \d+")
LAST_PID = "/proc/sys/kernel/ns_last_pid"
WIPED_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
SYSV_IPC_TABLES = ("/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem")
_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}  # syscall numbers: Python has no ioprio wrapper


def _rlimits():
  """Every resource limit the kernel has, by number: Python's resource module names only some (not RLIMIT_LOCKS)."""
  numbers = []
  while True:
    try:
      resource.getrlimit(len(numbers))
    except ValueError:
      return tuple(numbers)
    numbers.append(len(numbers))


RLIMITS = _rlimits()


def io_priority():
  """This process's I/O priority (``ioprio_get``); None on an architecture whose syscall number is not known."""
  number = _IOPRIO_GET.get(platform.machine())
  return None if number is None else ctypes.CDLL(None, use_errno=True).syscall(number, 1, 0)  # 1: a process, 0: self


def writable_sysctls():
  """The sysctl files this process may write (so may a program): the namespaced ones, found once."""
  found = []
  for directory in SYSCTL_DIRS:
    for root, _, files in os.walk(directory):
      found += [path for path in (os.path.join(root, name) for name in files) if os.access(path, os.W_OK)]
  return tuple(sorted(set(found) - {LAST_PID}))  # which every fork moves: `last_pid` accounts for it


def _read(path):
  try:
    with open(path) as f:
      return f.read()
  except OSError as exc:
    return f"unreadable: {exc.errno}"


def worker_state(namespaced):
  """This process's limits, scheduling and tunable files; with `namespaced` (its sandbox's own sysctls, and
  the network files then describe its own namespace), what those hold too. Outside a sandbox's namespaces they
  are the host's, which other processes change."""
  state = [resource.getrlimit(limit) for limit in RLIMITS]
  state += [
    os.getpriority(os.PRIO_PROCESS, 0),
    io_priority(),
    os.sched_getscheduler(0),
    os.sched_getparam(0).sched_priority,
  ]
  state.append(sorted(os.sched_getaffinity(0)))
  files = OWN_FILES + (namespaced + NET_FILES if namespaced is not None else ())
  return state + [_namespace_part(path, _read(path)) for path in files]


def _namespace_part(path, text):
  """`text` of `path` without the host-wide counters of /proc/self/net/sockstat."""
  return HOST_WIDE_SOCKSTAT.sub(r"\1", text) if path == "/proc/self/net/sockstat" else text


def last_pid():
  """The PID the namespace gave last (a thread's included); None where it cannot be read."""
  try:
    return int(_read(LAST_PID))
  except ValueError:
    return None


def other_processes():
  """Processes of the namespace but this one and the worker (its init, pid 1)."""
  me = os.getpid()
  return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in (me, 1)]


def kill_others(own_namespace):
  """Kills and reaps every other process of the sandbox (only in its own PID namespace, `own_namespace`)."""
  for _ in range(100 if own_namespace else 0):
    if not other_processes():
      return
    try:
      os.kill(-1, signal.SIGKILL)  # every process of the namespace but ourselves and its init
    except OSError:
      pass
    while True:
      try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
          break
      except ChildProcessError:
        break
    time.sleep(0.001)


def wipe(own_namespace, scratch):
  """Wipes the sandbox's writable places; False if anything remains (processes, files, SysV IPC objects).

  Outside a PID namespace (a weak sandbox) only the test's process group was killed, and only the
  private `scratch` directory is wiped.
  """
  wiped = WIPED_DIRS if own_namespace else (scratch,)
  for directory in wiped:
    try:
      entries = list(os.scandir(directory))
    except OSError:
      continue
    for entry in entries:
      try:
        if entry.is_dir(follow_symlinks=False):
          shutil.rmtree(entry.path, ignore_errors=True)
        else:
          os.unlink(entry.path)
      except OSError:
        pass
  ipc_left = False
  for table in SYSV_IPC_TABLES if own_namespace else ():
    try:
      with open(table) as f:
        ipc_left |= len(f.read().strip().splitlines()) > 1
    except OSError:
      pass
  leftovers = any(os.path.isdir(d) and os.listdir(d) for d in wiped)
  return not ((own_namespace and other_processes()) or ipc_left or leftovers)
