"""The test process's side of the sandbox: confines itself, loads the untrusted program and serves calls.

The worker (``sandbox_harness``) forks one such process per test and supervises it from outside; this
code runs after the fork, inside the process that executes the program, so nothing here decides a
verdict: it only reports what the program did (a load report, replies to the checker's calls, its exit
status). A script runs as ``python solution.py < input`` would: as ``__main__`` with that argv, and ended as
the interpreter ends it (threads joined, atexit handlers run, streams flushed; a SystemExit ends it normally,
as LiveCodeBench reads it). Standard
library only: its source goes between ``sandbox_wire`` and ``sandbox_harness`` in the worker's ``python -c``
script.
"""

import _sitebuiltins
import atexit
import builtins
import errno
import linecache
import os
import resource
import sys
import traceback
import types

if "write_message" not in globals():  # imported as a module; as `python -c` the grader prepends sandbox_wire
  from ssd_jax.evals.sandbox_wire import (
    MAX_RELAYED_BYTES,
    NotData,
    decode_value,
    encode_value,
    read_message,
    set_limit,
    write_message,
  )

TRACEBACK_LINES = 12
MESSAGE_CHARS = 4000


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


def prepare_interpreter():
  """What ``python solution.py`` has and the worker's interpreter (``-I -S -c``) lacks: its argv, exit() and quit()."""
  sys.argv = ["solution.py"]
  builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")  # as the site module sets them
  builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


def load_program(source, name):
  """Compiles and runs the program as module ``name``, registered in sys.modules; returns the module.

  A real module there (``__main__`` for a script) is where pickle looks the program's functions and classes
  up, so that pickling them (multiprocessing) works as natively.
  """
  linecache.cache["solution.py"] = (0, None, source.splitlines(True), "solution.py")
  code = compile(source, "solution.py", "exec", dont_inherit=True)
  module = types.ModuleType(name)
  module.__file__, module.__builtins__ = "solution.py", builtins
  sys.modules[name] = module
  exec(code, vars(module))
  return module


def finish_script(status):
  """Ends a script as the interpreter does once its module code has run; returns the exit status.

  In Py_FinalizeEx's order: waits for the non-daemon threads (threading's own shutdown hook, which also runs
  its atexit-like callbacks), runs the atexit handlers (atexit prints their exceptions), flushes the standard
  streams (a failure exits with 120). A thread that never ends runs into the worker's wall-clock deadline.
  """
  threading = sys.modules.get("threading")
  if threading is not None:
    try:
      threading._shutdown()  # pylint: disable=protected-access
    except BaseException:  # Python reports it and goes on
      traceback.print_exc()
  atexit._run_exitfuncs()  # pylint: disable=protected-access
  for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
    try:
      if stream is not None and not getattr(stream, "closed", False):
        stream.flush()
    except BaseException as exc:
      status = 120
      try:
        sys.stderr.write(describe_exception(exc)[1] + "\n")
      except BaseException:
        pass
  return status


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
      request = read_message(request_fd, MAX_RELAYED_BYTES)  # the grader's, relayed by the worker
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
    prepare_interpreter()
    as_main = job["mode"] == "script"
    status, message, exit_status = "completed", "", 0
    try:
      module = load_program(job["program"], "__main__" if as_main else "solution")
    except SystemExit as exc:  # LiveCodeBench accepts exit() from a script, whatever its code
      if not as_main:
        status, message = "error", f"SystemExit({exc.code!r}) while loading the program"
    except BaseException as exc:
      status, message = describe_exception(exc)
    if not as_main:
      write_message(reply_fd, {"loaded": status == "completed", "status": status, "message": message})
      if status == "completed":
        Served(vars(module)).serve(request_fd, reply_fd)
      os._exit(0)
    if status != "completed":  # printed before shutting down, as Python prints an uncaught exception
      sys.stderr.write(message + "\n")
      exit_status = 3 if status == "memory" else 1
    os._exit(finish_script(exit_status))
  except BaseException:
    pass
  os._exit(1)
