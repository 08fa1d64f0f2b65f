"""Trusted checker: runs a test's code against a program it never loads (stdlib only).

Started once per pool slot as ``python -I -S -B -c <sandbox_wire source + this source>`` outside the sandbox;
fd 0 carries requests and replies from the grader, fd 1 carries messages back. For each ``check`` request it
forks a child that, under CPU-time and address-space limits taken from the test's (decoding a program's data
runs here, outside the sandbox: a set of colliding numbers alone could keep a core busy):

1. runs the problem's trusted starter code (HumanEval's prompt: imports and helpers such as ``poly``);
2. replaces every global name the test code reads but does not define, and that the starter does not
   provide (or that is the entry point), by what the sandboxed program holds under that name: plain data
   is copied in, functions and classes become remote callables, other objects remote handles;
3. runs the test code; each remote call sends its arguments as data and gets data back (``sandbox_wire``),
   so the candidate's code never runs here and builtins, json or frames here are out of its reach;
4. reports ``completed``, ``failed`` (AssertionError), ``error``, ``memory``, or ``unverifiable`` when the
   test needs something data cannot carry (comparing a remote object, a non-data argument).
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

if "write_message" not in globals():  # imported as a module; as `python -c` the grader prepends both sources
  from ssd_jax.data.code_names import names_read_not_bound
  from ssd_jax.evals.sandbox_wire import (
    MAX_RELAYED_BYTES,
    NotData,
    decode_value,
    encode_value,
    make_undumpable,
    read_message,
    set_limit,
    write_message,
  )

MESSAGE_CHARS = 4000
STDOUT_CHARS = 1 << 20  # what a test's code may print and still be compared
TRACEBACK_LINES = 12
# Raised again under their own type, so a test can expect them (`pytest.raises(ValueError)`-style); never the
# ones that steer the test's control flow: a program's StopIteration inside `map(f, ...)` would end the test's
# loop as if it had finished.
_BUILTIN_EXCEPTIONS = {
  name: value
  for name, value in vars(builtins).items()
  if isinstance(value, type)
  and issubclass(value, Exception)
  and name not in ("AssertionError", "StopIteration", "StopAsyncIteration")
}


class Unverifiable(BaseException):
  """The test used the program in a way that plain data cannot carry."""


class ProgramDied(BaseException):
  """The sandboxed program ended (crash, limit, early exit) before the test finished."""

  def __init__(self, status, message):
    super().__init__(message)
    self.status = status


class CandidateError(Exception):
  """An exception of a type that only exists in the program (its name and message are kept)."""


STATE = {"unverifiable": None, "died": None}


def flag_unverifiable(reason):
  if STATE["unverifiable"] is None:
    STATE["unverifiable"] = reason
  raise Unverifiable(reason)


def program_failed(status, message):
  """Records that the program can no longer answer (the first reason wins) and raises ProgramDied."""
  if status not in ("error", "timeout", "memory"):  # never "completed", whatever a message claims
    status = "error"
  STATE["died"] = STATE["died"] or (status, str(message))
  raise ProgramDied(*STATE["died"])


def remote(request):
  """Sends one request to the program (through the grader); returns the program's reply (a dict).

  The grader wraps what the program sent as ``{"program": reply}`` and speaks for itself only with
  ``{"died": status}``; nothing the program sends can pose as the grader.
  """
  if STATE["died"] is not None:  # nothing can answer any more
    raise ProgramDied(*STATE["died"])
  write_message(1, {"op": "rpc", "request": request})
  try:
    message = read_message(0, MAX_RELAYED_BYTES)
  except NotData as exc:
    program_failed("error", str(exc))
  if message is None:
    os._exit(1)
  if "died" in message:
    program_failed(message["died"], message.get("message", ""))
  reply = message.get("program")
  if not isinstance(reply, dict):
    program_failed("error", "the program sent a malformed reply")
  return reply


def from_program(data):
  try:
    return decode_value(data, RemoteObject)
  except NotData as exc:
    program_failed("error", f"the program returned malformed data: {exc}")


def resolved(reply, count):
  """The ``count`` name descriptions of a resolve reply, each a non-empty list starting with its kind."""
  descriptions = reply.get("resolved")
  if (
    not isinstance(descriptions, list)
    or len(descriptions) != count
    or not all(isinstance(d, list) and d and isinstance(d[0], str) for d in descriptions)
  ):
    program_failed("error", "the program sent a malformed resolve reply")
  return descriptions


# Standard modules whose import does something (prints, opens a browser, starts a demo): the program may name
# one, and this process runs outside the sandbox.
_IMPORT_SIDE_EFFECTS = ("this", "antigravity", "idlelib", "turtledemo")


def _importable_here(module):
  return module in sys.stdlib_module_names and module not in _IMPORT_SIDE_EFFECTS


def bind(description, target, name):
  """The local stand-in for what the program holds under ``name``."""
  kind = description[0]
  if kind in ("function", "class"):
    return RemoteCallable(target, name)
  if kind == "value" and len(description) == 2:
    return from_program(description[1])
  if kind == "module" and len(description) == 2 and _importable_here(description[1]):
    return importlib.import_module(description[1])
  return Opaque(f"{name} is a {kind} the test cannot use as data")


class RemoteCallable:
  """A function (or class, or method) of the program; calling it sends data and returns data."""

  __slots__ = ("_target", "_name")

  def __init__(self, target, name):
    self._target, self._name = target, name

  def __call__(self, *args, **kwargs):
    handle_of = lambda obj: (
      obj._handle
      if type(obj) is RemoteObject
      else flag_unverifiable(f"argument of type {type(obj).__name__} passed to {self._name} is not plain data")
    )
    request = {"op": "call", "target": self._target, "name": self._name}
    request.update(args=encode_value(args, handle_of), kwargs=encode_value(kwargs, handle_of))
    reply = remote(request)
    if "raised" in reply:
      message = str(reply.get("message", ""))
      if reply.get("status") == "memory":
        raise MemoryError(message)
      raise _BUILTIN_EXCEPTIONS.get(str(reply["raised"]), CandidateError)(message)
    if "value" not in reply:
      program_failed("error", "the program sent a reply without a value")
    return from_program(reply["value"])


def _refuse(self, *args, **kwargs):
  flag_unverifiable(f"the test compares or inspects {self!s}, an object that is not plain data")


class Opaque:
  """A program object the test may pass back to the program but not inspect here."""

  def __init__(self, label):
    object.__setattr__(self, "_label", label)

  def __str__(self):
    return object.__getattribute__(self, "_label")

  __repr__ = __str__


for _dunder in "eq ne lt le gt ge hash bool len iter contains getitem call add sub mul int float index".split():
  setattr(Opaque, f"__{_dunder}__", _refuse)


class RemoteObject(Opaque):
  """An object that stays in the sandbox (e.g. a ``Solution()``); attributes are looked up there."""

  def __init__(self, handle):
    super().__init__(f"a program object (handle {handle})")
    object.__setattr__(self, "_handle", handle)

  def __getattr__(self, name):
    if name.startswith("__"):
      raise AttributeError(name)
    (description,) = resolved(remote({"op": "resolve", "target": self._handle, "names": [name]}), 1)
    if description[0] == "missing":
      raise AttributeError(f"program object has no attribute {name!r}")
    return bind(description, self._handle, name)


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
