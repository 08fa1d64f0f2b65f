"""Trusted runner that executes inside a sandbox process (standard library only).

Run as ``python -s -B -P -c <this source> JOB_PATH``. The job file holds the program,
the tests (never their expected outputs), the limits and a per-run nonce; it is read
and deleted before any untrusted code runs. The runner then:

1. isolates itself: a private network namespace (when permitted), an unprivileged uid
   (when started as root, so RLIMIT_NPROC applies), resource limits, not dumpable;
2. runs each test in a forked child with its own process group, stdin, stdout file,
   CPU limit and wall-clock deadline, killed with SIGKILL when it overruns;
3. reports one JSON line per test on the result pipe, tagged with the nonce.

A test passes only if the child reports completion *after* the test code returned,
over a pipe that is not stdout; exiting early, printing markers, or overriding builtins
cannot produce that report. Expected outputs stay in the parent, which compares them.
"""

import ctypes
import errno
import json
import linecache
import os
import resource
import select
import signal
import sys
import time
import traceback

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
EXIT_NO_REPORT = 70
BLOCKED_AUDIT_PREFIXES = ("socket.", "ctypes.", "gc.get_", "sys.settrace", "sys.setprofile")
TRACEBACK_LINES = 12
MESSAGE_CHARS = 4000

_write = os.write
_exit = os._exit
_exec = exec
_compile = compile
_dumps = json.dumps
_AssertionError = AssertionError
_MemoryError = MemoryError
_SystemExit = SystemExit
_BaseException = BaseException


def isolate_network(libc):
  """Moves this process into an empty network namespace; returns how, or 'none'."""
  if libc.unshare(CLONE_NEWNET) == 0:
    return "netns"
  if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0:
    return "userns+netns"
  return "none"


def set_limit(which, soft, slack=0):
  """Sets soft and hard limits (hard = soft + slack), never above the current hard limit."""
  _, current_hard = resource.getrlimit(which)
  soft, hard = int(soft), int(soft) + int(slack)
  if current_hard != resource.RLIM_INFINITY:
    soft, hard = min(soft, current_hard), min(hard, current_hard)
  resource.setrlimit(which, (soft, hard))


def confine(job):
  """Applies network isolation, the unprivileged uid and the resource limits."""
  libc = ctypes.CDLL(None, use_errno=True)
  network = isolate_network(libc) if job["isolate_network"] else "none"
  if job["uid"] is not None:
    os.setgroups([])
    os.setgid(job["gid"])
    os.setuid(job["uid"])
  limits = job["limits"]
  set_limit(resource.RLIMIT_AS, limits["memory_bytes"])
  set_limit(resource.RLIMIT_FSIZE, limits["max_file_bytes"])
  set_limit(resource.RLIMIT_NOFILE, limits["max_open_files"])
  set_limit(resource.RLIMIT_NPROC, limits["nproc"])
  set_limit(resource.RLIMIT_CORE, 0)
  set_limit(resource.RLIMIT_CPU, max(1, limits["total_cpu_s"]), slack=1)
  libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
  libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphaned daemons come back to us to be reaped
  os.chdir(job["workdir"])
  os.umask(0o077)
  return network


def audit_guard(event, args):
  """Refuses sockets, ctypes, interpreter introspection of the harness, and tracing."""
  if event.startswith(BLOCKED_AUDIT_PREFIXES):
    raise PermissionError(f"sandbox: operation not permitted ({event})")


def describe_exception(exc):
  """Returns (status, message) for an exception raised by the program or its test."""
  if isinstance(exc, _MemoryError) or (isinstance(exc, OSError) and exc.errno == errno.ENOMEM):
    return "memory", "MemoryError: memory limit exceeded"
  status = "failed" if type(exc) is _AssertionError else "error"
  prefix = "output limit exceeded (file size limit)\n" if isinstance(exc, OSError) and exc.errno == errno.EFBIG else ""
  summary = traceback.TracebackException.from_exception(exc, limit=-TRACEBACK_LINES)
  summary.stack = traceback.StackSummary.from_list(  # hide the runner's own frames
    [frame for frame in summary.stack if frame.filename != "<string>"]
  )
  text = "".join(summary.format()).rstrip("\n").split("\n")
  return status, prefix + "\n".join(text[-TRACEBACK_LINES:])[-MESSAGE_CHARS:]


def run_child(job, test, report_fd):
  """Body of the forked test process: runs program then test code. Never returns."""
  status, message, test_stdout_offset = "error", "", 0
  try:
    linecache.cache["solution.py"] = (0, None, job["program"].splitlines(True), "solution.py")
    program = _compile(job["program"], "solution.py", "exec", dont_inherit=True, optimize=0)
    test_code = None
    if test["code"]:
      linecache.cache["test.py"] = (0, None, test["code"].splitlines(True), "test.py")
      test_code = _compile(test["code"], "test.py", "exec", dont_inherit=True, optimize=0)
    sys.addaudithook(audit_guard)
    run_as_main = test_code is None
    namespace = {"__name__": "__main__" if run_as_main else "solution", "__builtins__": __builtins__}
    try:
      _exec(program, namespace)
    except _SystemExit as exc:
      if not run_as_main or exc.code not in (None, 0):
        raise
    if test_code is not None:
      sys.stdout.flush()
      test_stdout_offset = os.lseek(1, 0, os.SEEK_CUR)
      _exec(test_code, namespace)
    status = "completed"
  except _SystemExit as exc:
    status, message = "error", f"SystemExit({exc.code!r}) before the tests finished"
  except _BaseException as exc:  # the verdict must cover every way untrusted code can fail
    try:
      status, message = describe_exception(exc)
    except _BaseException:
      status, message = "error", "exception (could not be formatted)"
  try:
    sys.stdout.flush()
    sys.stderr.flush()
  except _BaseException:
    pass
  record = {"nonce": job["nonce"], "status": status, "message": message, "stdout_offset": test_stdout_offset}
  try:
    _write(report_fd, _dumps(record).encode()[:65536])
  finally:
    _exit(0)


def open_stdin(index, data):
  if data is None:
    return os.open(os.devnull, os.O_RDONLY)
  path = f".stdin_{index}"
  with open(path, "w", encoding="utf-8") as f:
    f.write(data)
  fd = os.open(path, os.O_RDONLY)
  os.unlink(path)
  return fd


def read_capped(path, offset, cap):
  try:
    with open(path, "rb") as f:
      f.seek(offset)
      data = f.read(cap + 1)
    os.unlink(path)
  except OSError:
    return "", False
  return data[:cap].decode("utf-8", "replace"), len(data) > cap


def wait_child(pid, report_fd, deadline):
  """Collects the child's report until it exits or the deadline passes.

  Returns (report bytes, wait status, rusage, timed_out).
  """
  pidfd = os.pidfd_open(pid)
  watched, chunks, size, timed_out = [pidfd, report_fd], [], 0, False
  while True:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      timed_out = True
      kill_group(pid)
      break
    ready, _, _ = select.select(watched, [], [], remaining)
    if report_fd in ready:
      data = os.read(report_fd, 65536)
      if not data:
        watched.remove(report_fd)
      elif size < 65536:
        chunks.append(data)
        size += len(data)
    if pidfd in ready:
      break
  _, wait_status, rusage = os.wait4(pid, 0)
  os.close(pidfd)
  kill_group(pid)  # whatever the test left in its process group goes too
  os.set_blocking(report_fd, False)
  try:
    chunks.append(os.read(report_fd, 65536))
  except OSError:
    pass
  return b"".join(chunks), wait_status, rusage, timed_out


def kill_leftovers(exclusive_uid):
  """Kills every other process of this sandbox's uid (daemons included) and reaps them."""
  if exclusive_uid:  # kill(-1) reaches every process of our uid but us; only safe when the uid is ours alone
    try:
      os.kill(-1, signal.SIGKILL)
    except OSError:
      pass
  while True:  # as subreaper we inherit orphans; wait until none is left
    try:
      pid, _ = os.waitpid(-1, 0 if exclusive_uid else os.WNOHANG)
    except ChildProcessError:
      return
    if pid == 0:
      return


def kill_group(pgid):
  try:
    os.killpg(pgid, signal.SIGKILL)
  except OSError:
    pass


def classify(report, wait_status, rusage, timed_out, job):
  """Turns the child's report and exit status into (status, message, stdout offset)."""
  status, message = classify_exit(wait_status, rusage, timed_out, job)
  if status is not None:
    return status, message, 0
  try:
    record = json.loads(report.decode("utf-8", "replace"))
    if record.get("nonce") == job["nonce"]:
      return str(record["status"]), str(record["message"])[:MESSAGE_CHARS], int(record["stdout_offset"])
  except (ValueError, KeyError, TypeError, AttributeError):
    pass
  code = os.WEXITSTATUS(wait_status)
  return "error", f"program exited (status {code}) before the tests finished", 0


def classify_exit(wait_status, rusage, timed_out, job):
  """Verdicts decided by how the child ended; (None, '') when its report decides."""
  if timed_out:
    return "timeout", "time limit exceeded (wall clock)"
  if os.WIFSIGNALED(wait_status):
    sig = os.WTERMSIG(wait_status)
    cpu_used = rusage.ru_utime + rusage.ru_stime
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_used >= job["limits"]["cpu_time_s"]):
      return "timeout", f"time limit exceeded (CPU time, {signal.Signals(sig).name})"
    if sig == signal.SIGXFSZ:
      return "error", "output limit exceeded (file size limit)"
    return "error", f"program crashed ({signal.Signals(sig).name})"
  return None, ""


def run_test(job, index, test, result_fd):
  """Forks one test process and returns its report record."""
  limits = job["limits"]
  stdin_fd = open_stdin(index, test["stdin"])
  out_path, err_path = f".stdout_{index}", f".stderr_{index}"
  out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
  err_fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
  report_r, report_w = os.pipe()
  start = time.monotonic()
  pid = os.fork()
  if pid == 0:
    try:
      os.setpgid(0, 0)
      os.close(result_fd)
      os.close(report_r)
      for fd, target in ((stdin_fd, 0), (out_fd, 1), (err_fd, 2)):
        os.dup2(fd, target)
        os.close(fd)
      set_limit(resource.RLIMIT_CPU, max(1, limits["cpu_time_s"]), slack=1)
      run_child(job, test, report_w)
    finally:
      _exit(EXIT_NO_REPORT)
  for fd in (stdin_fd, out_fd, err_fd, report_w):
    os.close(fd)
  report, wait_status, rusage, timed_out = wait_child(pid, report_r, start + limits["timeout_s"])
  os.close(report_r)
  kill_leftovers(exclusive_uid=job["uid"] is not None)
  status, message, offset = classify(report, wait_status, rusage, timed_out, job)
  cap = limits["max_output_bytes"]
  stdout, stdout_truncated = read_capped(out_path, offset, cap)
  stderr, _ = read_capped(err_path, 0, cap)
  return {
    "nonce": job["nonce"],
    "index": index,
    "status": status,
    "message": message,
    "stdout": stdout,
    "stdout_truncated": stdout_truncated,
    "stderr": stderr,
    "duration_s": time.monotonic() - start,
  }


def main():
  job_path = sys.argv[1]
  with open(job_path, encoding="utf-8") as f:
    job = json.load(f)
  os.unlink(job_path)
  result_fd = job["result_fd"]
  network = confine(job)
  _write(result_fd, (_dumps({"nonce": job["nonce"], "event": "started", "network": network}) + "\n").encode())
  for index, test in enumerate(job["tests"]):
    record = run_test(job, index, test, result_fd)
    _write(result_fd, (_dumps(record) + "\n").encode())
  _write(result_fd, (_dumps({"nonce": job["nonce"], "event": "done"}) + "\n").encode())


if __name__ == "__main__":
  main()
