"""The trusted checker's stand-ins for what a sandboxed program holds (stdlib only).

A test's code runs in the checker (``sandbox_checker``), outside the sandbox; every name it reads from the
program is bound here to a stand-in: plain data is decoded and copied in, a function or class becomes a
`RemoteCallable` that sends its arguments as data and returns data, any other object a `RemoteObject` handle
whose attributes are looked up in the sandbox. A stand-in never runs the program's code here, and a test that
needs more than data (comparing a remote object, passing a non-data argument) is flagged unverifiable. Its
source goes between ``sandbox_wire`` and ``sandbox_checker`` in the checker's ``python -c`` script.
"""

import builtins
import importlib
import os
import sys

if "write_message" not in globals():  # imported as a module; as `python -c` the grader prepends the sources
  from ssd_jax.evals.sandbox_wire import (
    MAX_RELAYED_BYTES,
    NotData,
    decode_value,
    encode_value,
    read_message,
    write_message,
  )

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
