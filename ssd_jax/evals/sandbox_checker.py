"""Trusted checker: runs a test's code against a program it never loads (stdlib only).

Started once per pool slot as ``python -I -S -B -c <sources of sandbox_wire, code_names, sandbox_standins and
this>`` outside the sandbox; fd 0 carries requests and replies from the grader, fd 1 carries messages back.
For each ``check`` request it forks a child that, under CPU-time and address-space limits taken from the
test's (decoding a program's data runs here, outside the sandbox: a set of colliding numbers alone could keep
a core busy):

1. runs the problem's trusted starter code (HumanEval's prompt: imports and helpers such as ``poly``);
2. replaces every global name the test code reads but does not define, and that the starter does not
   provide (or that is the entry point), by what the sandboxed program holds under that name: plain data
   is copied in, functions and classes become remote callables, other objects remote handles
   (``sandbox_standins``);
3. runs the test code; each remote call sends its arguments as data and gets data back (``sandbox_wire``),
   so the candidate's code never runs here and builtins, json or frames here are out of its reach;
4. reports ``completed``, ``failed`` (AssertionError), ``error``, ``memory``, or ``unverifiable`` when the
   test needs something data cannot carry (comparing a remote object, a non-data argument), with the time
   the check waited for a CPU.
"""

import ast
import builtins
import importlib
import io
import linecache
import math
import os
import resource
import signal
import sys
import traceback

if "write_message" not in globals():  # imported as a module; as `python -c` the grader prepends the sources
  from ssd_jax.data.code_names import names_read_not_bound
  from ssd_jax.evals.sandbox_standins import STATE, ProgramDied, Unverifiable, bind, remote, resolved
  from ssd_jax.evals.sandbox_wire import (
    MAX_RELAYED_BYTES,
    make_undumpable,
    read_message,
    run_delay_s,
    set_limit,
    write_message,
  )

MESSAGE_CHARS = 4000
STDOUT_CHARS = 1 << 20  # what a test's code may print and still be compared
TRACEBACK_LINES = 12


def build_namespace(request, tree):
  """Trusted starter code first, then the program's names the test needs."""
  namespace = {"__name__": "checker", "__builtins__": builtins}
  starter = request.get("starter") or ""
  if starter:
    try:
      exec(compile(starter, "starter.py", "exec"), namespace)
    except Exception:  # a starter that is not runnable on its own (e.g. LiveCodeBench's open method body)
      namespace = {"__name__": "checker", "__builtins__": builtins}
  entry_point = request.get("entry_point") or ""
  wanted = [
    n for n in names_read_not_bound(tree) if n == entry_point or (n not in namespace and not hasattr(builtins, n))
  ]
  # A standard module the test uses without importing (`math.isclose(...)`) is imported here: the program's
  # object of that name would run the check inside the sandbox, where it could answer anything.
  for name in [n for n in wanted if n != entry_point and n in sys.stdlib_module_names]:
    try:
      namespace[name] = importlib.import_module(name)
      wanted.remove(name)
    except ImportError:
      pass
  if wanted:
    for name, description in zip(
      wanted, resolved(remote({"op": "resolve", "target": None, "names": wanted}), len(wanted))
    ):
      if description[0] == "missing":
        namespace.pop(name, None)
      else:
        namespace[name] = bind(description, None, name)
  return namespace


def describe_failure(exc):
  """(status, message) for an exception that ended the test code."""
  if isinstance(exc, MemoryError):
    return "memory", f"MemoryError: {exc}"
  status = "failed" if type(exc) is AssertionError else "error"
  summary = traceback.TracebackException.from_exception(exc, limit=-TRACEBACK_LINES)
  summary.stack = traceback.StackSummary.from_list([f for f in summary.stack if f.filename == "test.py"])
  return status, "".join(summary.format()).rstrip("\n")[-MESSAGE_CHARS:]


def check(request):
  """Runs one test's code; returns the result message."""
  captured = io.StringIO()
  sys.stdout = captured
  status, message = "completed", ""
  try:
    linecache.cache["test.py"] = (0, None, request["code"].splitlines(True), "test.py")
    tree = ast.parse(request["code"], "test.py")
    namespace = build_namespace(request, tree)
    exec(compile(tree, "test.py", "exec"), namespace)
  except ProgramDied as exc:
    status, message = exc.status, str(exc)
  except Unverifiable:
    pass
  except BaseException as exc:
    status, message = describe_failure(exc)
  if STATE["died"] is not None:  # even if the test code caught it
    status, message = STATE["died"]
  elif STATE["unverifiable"] is not None:
    status, message = "unverifiable", STATE["unverifiable"]
  stdout = captured.getvalue()
  # A cut output is never compared (the grader gives ERROR), so a tail cannot hide a wrong head.
  return {
    "op": "result",
    "status": status,
    "message": message,
    "stdout": stdout[:STDOUT_CHARS],
    "stdout_truncated": len(stdout) > STDOUT_CHARS,
    "waited_s": run_delay_s(),
  }


def crash_result(wait_status, rusage, cpu_s):
  """The result of a check that ended without reporting one: past its CPU time, or crashed."""
  result = {"op": "result", "status": "error", "message": "the checker crashed", "stdout": ""}
  if os.WIFSIGNALED(wait_status):
    sig = os.WTERMSIG(wait_status)
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and rusage.ru_utime + rusage.ru_stime >= cpu_s):
      result.update(status="timeout", message=f"time limit exceeded (the check's CPU time, {cpu_s} s)")
  return result


def main():
  sys.set_int_max_str_digits(0)
  make_undumpable("checker")
  while True:
    request = read_message(0, MAX_RELAYED_BYTES)  # a test's code holds its inputs: LiveCodeBench's are megabytes
    if request is None:
      return
    limits = request["limits"]
    cpu_s = math.ceil(limits["timeout_s"]) + 1  # the test's wall-clock limit, as CPU time
    pid = os.fork()
    if pid == 0:
      try:
        set_limit(resource.RLIMIT_CPU, cpu_s, slack=1)
        set_limit(resource.RLIMIT_AS, limits["memory_bytes"])
        write_message(1, check(request))
        os._exit(0)
      finally:
        os._exit(1)
    _, wait_status, rusage = os.wait4(pid, 0)
    if wait_status != 0:
      write_message(1, crash_result(wait_status, rusage, cpu_s))


if __name__ == "__main__":
  main()
