"""What one program could leave in the sandbox worker for the next: its limits, scheduling and PIDs, and sysctls.

A test process runs under the worker's uid, so it may lower the worker's resource limits (``prlimit``), its
priority, CPU affinity and scheduling policy, raise its OOM score, and write the namespace's writable sysctls
(the IPC limits, for one). The next program inherits or reads all of these: a program could slow or starve
the ones after it, or pass them a value (a sample telling the next what the oracle of a multi-assert test
confirmed). The worker snapshots them before any program and compares after each; any difference, or a
program that started processes or threads of its own (the namespace's PID counter would carry their count),
replaces the sandbox. Standard library only: its source goes into the worker's ``python -c`` script.
"""

import os
import resource

SYSCTL_DIRS = ("/proc/sys/kernel", "/proc/sys/fs/mqueue", "/proc/sys/user")
OWN_FILES = ("/proc/self/oom_score_adj", "/proc/self/autogroup")
LAST_PID = "/proc/sys/kernel/ns_last_pid"
RLIMITS = tuple(getattr(resource, name) for name in sorted(dir(resource)) if name.startswith("RLIMIT_"))


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


def worker_state(sysctls):
  """This process's limits and scheduling, and what ``sysctls`` and its own tunable files hold."""
  state = [resource.getrlimit(limit) for limit in RLIMITS]
  state += [os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0), os.sched_getparam(0).sched_priority]
  state.append(sorted(os.sched_getaffinity(0)))
  return state + [_read(path) for path in sysctls + OWN_FILES]


def last_pid():
  """The PID the namespace gave last (a thread's included); None where it cannot be read."""
  try:
    return int(_read(LAST_PID))
  except ValueError:
    return None
