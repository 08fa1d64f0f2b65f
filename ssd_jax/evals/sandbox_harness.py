"""Sandbox worker: runs untrusted programs inside the isolated tree and reports only data (stdlib only).

Started once per pool slot as ``python -I -S -B -c <sources of sandbox_wire, sandbox_program and this>``
inside bubblewrap; fd 0 carries requests from the grader, fd 1 carries events back, fd 2 is its log. It
never decides a verdict. When a program begins (``program``) the worker forks that program's own process,
which reads the program's requests until it ends (``end_program``): no message of a program ever enters the
worker's memory, so a test process, forked from its program's process, inherits nothing of another program
(``sandbox_state`` has what else the worker checks and clears between programs). For each ``run`` request the program's
process forks one child (``sandbox_program``) that loads the program and then either

- ``mode="script"``: runs it as ``__main__`` on a stdin file; the worker returns the exit status and the
  captured stdout/stderr, which the grader compares; or
- ``mode="calls"``: serves ``resolve`` and ``call`` requests that the trusted checker sends (relayed by
  the grader): names are looked up in the program's namespace, arguments arrive as plain data, and results
  leave as plain data or as opaque object handles (``sandbox_wire``).

Whatever the program does to its own interpreter (patching json, walking frames, replacing builtins) can
change only the data it returns, which is exactly what an honest program could return. After each run the
program's process kills every other process of the sandbox but the worker, and wipes /tmp, /dev/shm and
/dev/mqueue; the sandbox is replaced by a fresh one if anything it cannot wipe remains (SysV IPC objects,
survivors) or a program changed what ``sandbox_state`` compares.
"""

import json
import os
import select
import signal
import sys
import time

if "child_main" not in globals():  # imported as a module; as `python -c` the grader prepends the sources
  from ssd_jax.evals.sandbox_program import child_main
  from ssd_jax.evals.sandbox_state import kill_others, last_pid, wipe, worker_state, writable_sysctls
  from ssd_jax.evals.sandbox_wire import (
    MAX_RELAYED_BYTES,
    SHOWN_TEXT_CHARS,
    NotData,
    deny_keyring_syscalls,
    make_undumpable,
    read_frame,
    read_message,
    run_delay_s,
    write_message,
  )

REQUEST_FD, EVENT_FD = 0, 1
PRELOADED_MODULES = (  # imported once here so forked children (and LiveCodeBench's import prefix) start fast
  "string re datetime collections heapq bisect copy math random statistics itertools functools operator io "
  "json typing fractions decimal array dataclasses enum"
).split()
CONFIG = {"scratch": "/tmp", "pid_namespace": True}  # main() reads it from argv
RECYCLE = 255  # exit status of a program's process whose sandbox must be replaced


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
      try:  # re-encoded, a reply may grow (JSON escapes, float reprs) past what the grader reads
        write_message(EVENT_FD, {"event": "reply", "data": reply}, limit=MAX_RELAYED_BYTES)
      except NotData:
        return "overflow"
    if REQUEST_FD in ready:  # also after a reply: a program that never stops replying cannot starve requests
      request = read_message(REQUEST_FD, MAX_RELAYED_BYTES)
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
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the program gets Python's usual KeyboardInterrupt
    child_main(job, stdin_fd, out_fd, err_fd, request_r, reply_w)
  for fd in (stdin_fd, out_fd, err_fd, request_r, reply_w):
    os.close(fd)
  pidfd = os.pidfd_open(pid)
  if job["mode"] == "calls":
    ended = relay_calls(pidfd, reply_r, request_w, deadline, limits["max_reply_bytes"])
  else:
    ended = "exited" if select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0] else "timeout"
  kill_group(pid)
  # Before wait4 reaps it; only of a test that started no process or thread (the last PID given is its own):
  # its own work could have crowded it, and theirs is not counted.
  waited_s = run_delay_s(pid) if CONFIG["pid_namespace"] and last_pid() == pid else None
  _, wait_status, rusage = os.wait4(pid, 0)
  for fd in (pidfd, reply_r, request_w):
    os.close(fd)
  if ended == "finish":
    status, message = "completed", ""
  elif ended == "overflow":
    too_large = f"over {limits['max_reply_bytes']} bytes, or {MAX_RELAYED_BYTES} as relayed"
    status, message = "error", f"a reply was malformed or too large ({too_large})"
  else:
    status, message = exit_status(wait_status, rusage, limits, ended == "timeout")
  cap = limits["max_output_bytes"]
  kill_others(CONFIG["pid_namespace"])  # first, so that nothing rewrites the output files while they are read
  stdout, truncated = read_capped(f"{scratch}/.stdout", cap)
  stderr, _ = read_capped(f"{scratch}/.stderr", min(cap, SHOWN_TEXT_CHARS))
  clean = wipe(CONFIG["pid_namespace"], CONFIG["scratch"])
  event = {"event": "end", "status": status, "message": message, "stdout": stdout, "stdout_truncated": truncated}
  event.update(stderr=stderr, duration_s=time.monotonic() - start, waited_s=waited_s, recycle=not clean)
  try:
    write_message(EVENT_FD, event, limit=MAX_RELAYED_BYTES)
  except NotData:  # output that JSON escapes grow past what the grader reads (control characters): never compared
    event.update(stdout=stdout[:SHOWN_TEXT_CHARS], stdout_truncated=True)
    write_message(EVENT_FD, event)
  return clean


def kill_group(pgid):
  try:
    os.killpg(pgid, signal.SIGKILL)
  except OSError:
    pass


def serve_program():
  """The program's own process: runs its tests until the program ends. Returns its exit status.

  Every program takes one PID per test, so the PID counter tells the next program nothing of how many tests
  this one ran (a test skipped after a failure takes a short-lived thread's): the status is that count, which
  the worker checks, or RECYCLE.
  """
  ran = 0
  while True:
    request = read_message(REQUEST_FD, MAX_RELAYED_BYTES)
    if request is None or request.get("op") == "end_program":  # None: the grader is gone
      break
    if request.get("op") == "run":  # a "finish" or "rpc" that came after its test ended is dropped
      ran += 1
      if not run(request):
        return RECYCLE
  taken = max(ran, int(request.get("tests", 0)) if request is not None else 0)
  if taken >= RECYCLE:
    return RECYCLE
  if taken > ran:
    # Imported here, in the program's process only: the worker and the test processes it forks stay without it.
    import threading  # pylint: disable=g-import-not-at-top

    for _ in range(taken - ran):
      thread = threading.Thread(target=int)
      thread.start()
      thread.join()
  return taken


def run_program(sysctls, baseline):
  """Forks the program's process, waits for it, and says whether the sandbox may serve another program."""
  first_pid = last_pid()
  pid = os.fork()
  if pid == 0:
    status = RECYCLE
    try:
      status = serve_program()
    finally:
      os._exit(status)
  while True:  # orphans of the program's tests come to us, the namespace's init, and are reaped meanwhile
    done, wait_status = os.wait()
    if done == pid:
      break
  kill_others(CONFIG["pid_namespace"])
  exited = os.WEXITSTATUS(wait_status) if os.WIFEXITED(wait_status) else RECYCLE
  started = 1 + exited  # outside a PID namespace the counter is the host's, and no program's
  if CONFIG["pid_namespace"]:
    last = last_pid()
    started = None if None in (first_pid, last) else last - first_pid  # unreadable: the sandbox is replaced
  return (
    wipe(CONFIG["pid_namespace"], CONFIG["scratch"])
    and exited != RECYCLE
    and started == 1 + exited
    and worker_state(sysctls) == baseline
  )


def main():
  CONFIG.update(json.loads(sys.argv[1]))
  # As its namespace's init the worker gets only the signals it handles; Python handles SIGINT, which a
  # program could send to restart the slot.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  for name in PRELOADED_MODULES:
    __import__(name)
  make_undumpable("sandbox worker")
  keyrings = deny_keyring_syscalls()  # before any program: they inherit it
  os.chdir(CONFIG["scratch"])
  os.umask(0o077)
  sysctls = writable_sysctls() if CONFIG["pid_namespace"] else None  # a weak sandbox shares the host's
  baseline = worker_state(sysctls)
  ready = {"event": "ready", "pid": os.getpid(), "uid": os.getuid(), "python": sys.version, "keyrings": keyrings}
  ready["pid_counter"] = last_pid() is not None  # without it every program is followed by a fresh sandbox
  write_message(EVENT_FD, ready)
  while True:
    request = read_message(REQUEST_FD, MAX_RELAYED_BYTES)  # only "program": the program's own process reads the rest
    if request is None or request.get("op") != "program":
      return
    clean = run_program(sysctls, baseline)
    try:
      write_message(EVENT_FD, {"event": "program_end", "recycle": not clean})
    except OSError:  # the grader has already stopped this sandbox
      return
    if not clean:
      return


if __name__ == "__main__":
  main()
