"""Sandbox worker: runs untrusted programs inside the isolated tree and reports only data (stdlib only).

Started once per pool slot as ``python -I -S -B -c <sandbox_wire source + this source>`` inside bubblewrap;
fd 0 carries requests from the grader, fd 1 carries events back, fd 2 is its log. It never decides a
verdict. For each ``run`` request it forks one child that loads the program and then either

- ``mode="script"``: runs it as ``__main__`` on a stdin file; the worker returns the exit status and the
  captured stdout/stderr, which the grader compares; or
- ``mode="calls"``: serves ``resolve`` and ``call`` requests that the trusted checker sends (relayed by
  the grader): names are looked up in the program's namespace, arguments arrive as plain data, and results
  leave as plain data or as opaque object handles (``sandbox_wire``).

Whatever the program does to its own interpreter (patching json, walking frames, replacing builtins) can
change only the data it returns, which is exactly what an honest program could return. After each run the
worker kills every other process of the sandbox, wipes /tmp, /dev/shm and /dev/mqueue, and exits (to be
replaced by a fresh sandbox) if anything it cannot wipe remains (SysV IPC objects, survivors).
"""

import builtins
import errno
import json
import linecache
import os
import resource
import select
import shutil
import signal
import sys
import time
import traceback

if "write_message" not in globals():  # imported as a module; as `python -c` the grader prepends sandbox_wire
  from ssd_jax.evals.sandbox_wire import NotData, decode_value, encode_value, read_frame, read_message, write_message

REQUEST_FD, EVENT_FD = 0, 1
WIPED_DIRS = ("/tmp", "/dev/shm", "/dev/mqueue")
SYSV_IPC_TABLES = ("/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem")
PRELOADED_MODULES = (  # imported once here so forked children (and LiveCodeBench's import prefix) start fast
  "string re datetime collections heapq bisect copy math random statistics itertools functools operator io "
  "json typing fractions decimal array dataclasses enum"
).split()
PR_SET_DUMPABLE = 4
CONFIG = {"scratch": "/tmp", "pid_namespace": True}  # main() reads it from argv
TRACEBACK_LINES = 12
MESSAGE_CHARS = 4000


def set_limit(which, soft, slack=0):
  """Sets soft and hard limits (hard = soft + slack), never above the current hard limit."""
  _, current_hard = resource.getrlimit(which)
  soft, hard = int(soft), int(soft) + int(slack)
  if current_hard != resource.RLIM_INFINITY:
    soft, hard = min(soft, current_hard), min(hard, current_hard)
  resource.setrlimit(which, (soft, hard))


def confine_child(limits):
  """Resource limits of one test process (and everything it starts)."""
  set_limit(resource.RLIMIT_AS, limits["memory_bytes"])
  set_limit(resource.RLIMIT_FSIZE, limits["max_file_bytes"])
  set_limit(resource.RLIMIT_NOFILE, limits["max_open_files"])
  set_limit(resource.RLIMIT_NPROC, limits["nproc"])
  set_limit(resource.RLIMIT_CORE, 0)
  set_limit(resource.RLIMIT_CPU, max(1, limits["cpu_time_s"]), slack=1)


def describe_exception(exc):
  """(status, message) for an exception the program raised."""
  if isinstance(exc, MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
    return "memory", "MemoryError: memory limit exceeded"
  if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
    return "error", "output limit exceeded (file size limit)"
  try:
    summary = traceback.TracebackException.from_exception(exc, limit=-TRACEBACK_LINES)
    summary.stack = traceback.StackSummary.from_list([f for f in summary.stack if f.filename != "<string>"])
    text = "".join(summary.format()).rstrip("\n").split("\n")
    return "error", "\n".join(text[-TRACEBACK_LINES:])[-MESSAGE_CHARS:]
  except BaseException:  # a hostile __str__ must not decide anything
    return "error", "exception (could not be formatted)"


def load_program(source, as_main):
  """Compiles and runs the program; returns its namespace."""
  linecache.cache["solution.py"] = (0, None, source.splitlines(True), "solution.py")
  code = compile(source, "solution.py", "exec", dont_inherit=True)
  namespace = {"__name__": "__main__" if as_main else "solution", "__builtins__": builtins}
  exec(code, namespace)
  return namespace


class Served:
  """The program's side of the call protocol: looks names up, calls them, returns data or handles."""

  def __init__(self, namespace):
    self.namespace = namespace
    self.objects = {}

  def handle_of(self, obj):
    handle = len(self.objects) + 1
    self.objects[handle] = obj
    return handle

  def object_of(self, handle):
    if handle not in self.objects:
      raise NotData(f"unknown object handle {handle}")
    return self.objects[handle]

  def lookup(self, target, name):
    if target is None:
      return self.namespace[name]
    return getattr(self.object_of(target), name)

  def describe(self, target, name):
    try:
      obj = self.lookup(target, name)
    except (KeyError, AttributeError):
      return ["missing"]
    if isinstance(obj, type):
      return ["class"]
    if type(obj).__name__ == "module":
      return ["module", str(getattr(obj, "__name__", ""))]
    if callable(obj):
      return ["function"]
    return ["value", encode_value(obj, self.handle_of)]

  def answer(self, request):
    op, target = request.get("op"), request.get("target")
    if op == "resolve":
      return {"resolved": [self.describe(target, name) for name in request["names"]]}
    if op == "call":
      function = self.lookup(target, request["name"])
      args = decode_value(request["args"], self.object_of)
      kwargs = decode_value(request["kwargs"], self.object_of)
      return {"value": encode_value(function(*args, **kwargs), self.handle_of)}
    return {"raised": "ProtocolError", "message": f"unknown request {op!r}"}

  def serve(self, request_fd, reply_fd):
    while True:
      request = read_message(request_fd)
      if request is None:
        return
      try:
        reply = self.answer(request)
      except BaseException as exc:  # the program's exceptions become data for the checker
        status, message = describe_exception(exc)
        reply = {"raised": type(exc).__name__ if type(exc).__module__ == "builtins" else "Exception"}
        reply.update(status=status, message=message)
      try:
        write_message(reply_fd, reply)
      except BaseException:  # an unencodable reply (e.g. a str subclass lying about itself)
        write_message(reply_fd, {"raised": "TypeError", "status": "error", "message": "reply is not plain data"})


def child_main(job, stdin_fd, out_fd, err_fd, request_fd, reply_fd):
  """Body of the forked test process. Never returns."""
  try:
    os.setsid()
    for fd, target in ((stdin_fd, 0), (out_fd, 1), (err_fd, 2)):
      os.dup2(fd, target)
    keep = {0, 1, 2, request_fd, reply_fd}
    for fd in [int(name) for name in os.listdir("/proc/self/fd")]:
      if fd not in keep:
        try:
          os.close(fd)
        except OSError:
          pass
    confine_child(job["limits"])
    as_main = job["mode"] == "script"
    status, message = "completed", ""
    try:
      namespace = load_program(job["program"], as_main)
    except SystemExit as exc:  # LiveCodeBench accepts exit() from a script
      if not as_main:
        status, message = "error", f"SystemExit({exc.code!r}) while loading the program"
    except BaseException as exc:
      status, message = describe_exception(exc)
    if not as_main:
      write_message(reply_fd, {"loaded": status == "completed", "status": status, "message": message})
      if status == "completed":
        Served(namespace).serve(request_fd, reply_fd)
    else:
      sys.stdout.flush()
      if status != "completed":
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        os._exit(3 if status == "memory" else 1)
    os._exit(0)
  except BaseException:
    pass
  os._exit(1)


def read_capped(path, cap):
  try:
    with open(path, "rb") as f:
      data = f.read(cap + 1)
  except OSError:
    return "", False
  return data[:cap].decode("utf-8", "replace"), len(data) > cap


def exit_status(wait_status, rusage, limits, timed_out):
  """(status, message) from how the test process ended."""
  if timed_out:
    return "timeout", "time limit exceeded (wall clock)"
  if os.WIFSIGNALED(wait_status):
    sig = os.WTERMSIG(wait_status)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and rusage.ru_utime + rusage.ru_stime >= limits["cpu_time_s"]):
      return "timeout", f"time limit exceeded (CPU time, {signal.Signals(sig).name})"
    if sig == signal.SIGXFSZ:
      return "error", "output limit exceeded (file size limit)"
    return "error", f"program crashed ({signal.Signals(sig).name})"
  code = os.WEXITSTATUS(wait_status)
  if code == 0:
    return "completed", ""
  if code == 3:
    return "memory", "MemoryError: memory limit exceeded"
  return "error", f"program exited with status {code}"


def relay_calls(pidfd, reply_fd, request_fd, deadline, cap):
  """Forwards requests from the grader to the child and its replies back until one side ends.

  Returns why it stopped: "timeout", "finish" (the checker is done), "exited" or "overflow".
  """
  while True:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      return "timeout"
    ready, _, _ = select.select([REQUEST_FD, reply_fd, pidfd], [], [], remaining)
    if reply_fd in ready:
      try:
        payload = read_frame(reply_fd, cap, deadline)  # a program that stalls mid-message runs into the deadline
        reply = None if payload is None else json.loads(payload)
      except TimeoutError:
        return "timeout"
      except (NotData, ValueError, RecursionError):
        return "overflow"
      if reply is None:
        return "exited"
      write_message(EVENT_FD, {"event": "reply", "data": reply})
    elif REQUEST_FD in ready:
      request = read_message(REQUEST_FD)
      if request is None:
        sys.exit(0)
      if request.get("op") == "finish":
        return "finish"
      try:
        write_message(request_fd, request["request"])
      except OSError:  # the child is gone: forward what it wrote first (its load report), then see its exit
        continue
    elif pidfd in ready:
      return "exited"


def run(job):
  """Runs one test of one program; sends the 'end' event."""
  limits = job["limits"]
  start = time.monotonic()
  deadline = start + limits["timeout_s"]
  scratch = CONFIG["scratch"]
  with open(f"{scratch}/.stdin", "w", encoding="utf-8") as f:
    f.write(job.get("stdin") or "")
  stdin_fd = os.open(f"{scratch}/.stdin", os.O_RDONLY)
  out_fd = os.open(f"{scratch}/.stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
  err_fd = os.open(f"{scratch}/.stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
  request_r, request_w = os.pipe()
  reply_r, reply_w = os.pipe()
  pid = os.fork()
  if pid == 0:
    child_main(job, stdin_fd, out_fd, err_fd, request_r, reply_w)
  for fd in (stdin_fd, out_fd, err_fd, request_r, reply_w):
    os.close(fd)
  pidfd = os.pidfd_open(pid)
  if job["mode"] == "calls":
    ended = relay_calls(pidfd, reply_r, request_w, deadline, limits["max_reply_bytes"])
  else:
    ended = "exited" if select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0] else "timeout"
  kill_group(pid)
  _, wait_status, rusage = os.wait4(pid, 0)
  for fd in (pidfd, reply_r, request_w):
    os.close(fd)
  if ended == "finish":
    status, message = "completed", ""
  elif ended == "overflow":
    status, message = "error", f"a reply was malformed or exceeded {limits['max_reply_bytes']} bytes"
  else:
    status, message = exit_status(wait_status, rusage, limits, ended == "timeout")
  cap = limits["max_output_bytes"]
  kill_others()  # first, so that nothing rewrites the output files while they are read
  stdout, truncated = read_capped(f"{scratch}/.stdout", cap)
  stderr, _ = read_capped(f"{scratch}/.stderr", cap)
  clean = wipe()
  event = {"event": "end", "status": status, "message": message, "stdout": stdout, "stdout_truncated": truncated}
  event.update(stderr=stderr, duration_s=time.monotonic() - start, recycle=not clean)
  write_message(EVENT_FD, event)
  if not clean:
    sys.exit(0)


def kill_group(pgid):
  try:
    os.killpg(pgid, signal.SIGKILL)
  except OSError:
    pass


def other_processes():
  me = os.getpid()
  return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != me]


def kill_others():
  """Kills and reaps every other process of the sandbox (only in our own PID namespace)."""
  for _ in range(100 if CONFIG["pid_namespace"] else 0):
    if not other_processes():
      return
    try:
      os.kill(-1, signal.SIGKILL)  # every process of the namespace but ourselves (its init)
    except OSError:
      pass
    while True:
      try:
        if os.waitpid(-1, os.WNOHANG)[0] == 0:
          break
      except ChildProcessError:
        break
    time.sleep(0.001)


def wipe():
  """Wipes the sandbox's writable places; False if anything remains (processes, files, SysV IPC objects).

  Outside a PID namespace (a weak sandbox) only the test's process group was killed, and only the
  private scratch directory is wiped.
  """
  own_namespace = CONFIG["pid_namespace"]
  wiped = WIPED_DIRS if own_namespace else (CONFIG["scratch"],)
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


def main():
  CONFIG.update(json.loads(sys.argv[1]))
  for name in PRELOADED_MODULES:
    __import__(name)
  import ctypes

  if ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:  # programs of our uid must not ptrace us
    raise SystemExit("sandbox worker: prctl(PR_SET_DUMPABLE, 0) failed")
  os.chdir(CONFIG["scratch"])
  os.umask(0o077)
  write_message(EVENT_FD, {"event": "ready", "pid": os.getpid(), "uid": os.getuid(), "python": sys.version})
  while True:
    request = read_message(REQUEST_FD)
    if request is None:
      return
    if request.get("op") == "run":
      run(request)


if __name__ == "__main__":
  main()
