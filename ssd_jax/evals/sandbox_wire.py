"""Wire format between the grader and sandboxed programs: framed JSON messages and plain-data values.

Standard library only: this source is also prepended to the sandbox worker and the checker, which run as
``python -c`` without the package. A value crosses the boundary as JSON with tags, so that decoding it
executes nothing and yields only built-in data (no ``eval``, no pickle):

  None, True, False, "text"           themselves
  int            ["i", hex digits]    (hex: linear-time and not subject to the int-to-str digit limit)
  float          ["f", float.hex()]   (exact, including inf and nan)
  complex        ["c", real hex, imag hex]
  bytes          ["b", latin-1 text]
  list / tuple   ["l", item, ...] / ["t", item, ...]
  set / frozenset ["s", item, ...] / ["z", item, ...]
  dict           ["d", [key, value], ...]
  object handle  ["h", id]            (an object that stays in the sandbox, e.g. a Solution instance)

Subclasses of these types (bool excepted) travel as their base type: a namedtuple as a tuple, a Counter as
a dict. Anything else cannot be encoded.
"""

import json
import os
import resource
import select
import struct
import time

MAX_MESSAGE_BYTES = 32 << 20  # a program's reply (and so any one value it returns) larger than this is refused
# Every other message: what the grader sends (a call's arguments, a test's stdin and code) and what it reads,
# including a program's reply as the worker re-encodes it (JSON escapes and float reprs may grow it several-fold:
# the worker refuses one that would exceed this).
MAX_RELAYED_BYTES = 64 << 20
MAX_DEPTH = 200
SHOWN_TEXT_CHARS = 64 * 1024  # of text that is only shown, never compared: stderr read, each text a TestRun keeps
_HEADER = struct.Struct(">I")
_PAGE = 4096  # PIPE_BUF on Linux: a pipe that selects writable has room for this much


def set_limit(which, soft, slack=0):
  """Sets soft and hard limits (hard = soft + slack), never above the current hard limit."""
  _, current_hard = resource.getrlimit(which)
  soft, hard = int(soft), int(soft) + int(slack)
  if current_hard != resource.RLIM_INFINITY:
    soft, hard = min(soft, current_hard), min(hard, current_hard)
  resource.setrlimit(which, (soft, hard))


def make_undumpable(who):
  """Makes this process non-dumpable (prctl PR_SET_DUMPABLE 0), or exits naming `who`: where programs share
  our uid (a weak sandbox), ptrace or /proc/<pid>/fd of a dumpable process would let them read its memory or
  write its replies."""
  import ctypes  # pylint: disable=g-import-not-at-top

  if ctypes.CDLL(None).prctl(4, 0, 0, 0, 0) != 0:  # 4: PR_SET_DUMPABLE
    raise SystemExit(f"{who}: prctl(PR_SET_DUMPABLE, 0) failed")


def run_delay_s(pid="self"):
  """Seconds process `pid` was ready to run but waited for a CPU (the kernel's run_delay, a zombie's too);
  None where the kernel does not keep it (no file, or zeros: its time on a CPU is never 0 either)."""
  try:
    with open(f"/proc/{pid}/schedstat") as f:
      on_cpu_ns, waited_ns = (int(field) for field in f.read().split()[:2])
  except (OSError, ValueError):
    return None
  return waited_ns / 1e9 if on_cpu_ns else None


# Machine -> (its seccomp audit arch, syscall numbers of add_key, request_key, keyctl).
_KEYRING_SYSCALLS = {"x86_64": (0xC000003E, (248, 249, 250)), "aarch64": (0xC00000B7, (217, 218, 219))}


def keyring_syscalls():
  """The running machine's (add_key, request_key, keyctl) syscall numbers, or None for a machine not known."""
  import platform  # pylint: disable=g-import-not-at-top

  known = _KEYRING_SYSCALLS.get(platform.machine())
  return None if known is None else known[1]


def deny_keyring_syscalls():
  """Installs a seccomp filter on this process and all it starts: the kernel keyring calls fail with EPERM, and
  every call through another ABI (i386, x32), which numbers them differently, with ENOSYS. The keyrings are
  the one kernel state no namespace separates: a program could read the grader's session keys or leave keys for
  the next program. Returns None, or why the filter could not be installed."""
  import ctypes  # pylint: disable=g-import-not-at-top
  import platform  # pylint: disable=g-import-not-at-top

  known = _KEYRING_SYSCALLS.get(platform.machine())
  if known is None:
    return f"no keyring filter for machine {platform.machine()!r}"
  audit_arch, numbers = known
  load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
  allow, eperm, enosys = 0x7FFF0000, 0x00050001, 0x00050026  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | errno
  checks = [(jge, 0x40000000)] if platform.machine() == "x86_64" else []  # x32 calls set bit 30
  checks += [(jeq, number) for number in numbers]
  program = [(load, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, enosys), (load, 0, 0, 0)]
  deny = len(program) + len(checks) + 1
  program += [(op, deny - (len(program) + i) - 1, 0, k) for i, (op, k) in enumerate(checks)]
  program += [(ret, 0, 0, allow), (ret, 0, 0, eperm)]
  code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *instruction) for instruction in program))

  class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

  libc = ctypes.CDLL(None, use_errno=True)
  prog = SockFprog(len(program), ctypes.addressof(code))
  ulong = ctypes.c_ulong
  if libc.prctl(38, ulong(1), ulong(0), ulong(0), ulong(0)) != 0:  # 38: PR_SET_NO_NEW_PRIVS
    return f"prctl(PR_SET_NO_NEW_PRIVS) failed: errno {ctypes.get_errno()}"
  if libc.prctl(22, ulong(2), ctypes.byref(prog), ulong(0), ulong(0)) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    return f"prctl(PR_SET_SECCOMP) failed: errno {ctypes.get_errno()}"
  return None


class NotData(TypeError):
  """A value that is not plain data (or is malformed on the wire)."""


def encode_value(value, handle_of=None, depth=0):
  """Plain-data value -> JSON-ready tagged structure; ``handle_of(obj)`` maps other objects to an id."""
  if depth > MAX_DEPTH:
    raise NotData("value nested too deeply")
  if value is None or value is True or value is False or type(value) is str:
    return value
  if isinstance(value, bool):
    return bool(value)
  if isinstance(value, int):
    return ["i", format(int(value), "x")]
  if isinstance(value, float):
    return ["f", float(value).hex()]
  if isinstance(value, str):
    return str(value)
  if isinstance(value, complex):
    return ["c", value.real.hex(), value.imag.hex()]
  if isinstance(value, (bytes, bytearray)):
    return ["b", bytes(value).decode("latin-1")]
  for kind, tag in ((list, "l"), (tuple, "t"), (frozenset, "z"), (set, "s")):
    if isinstance(value, kind):
      return [tag] + [encode_value(item, handle_of, depth + 1) for item in value]
  if isinstance(value, dict):
    return ["d"] + [
      [encode_value(k, handle_of, depth + 1), encode_value(v, handle_of, depth + 1)] for k, v in value.items()
    ]
  if handle_of is not None:
    return ["h", handle_of(value)]
  raise NotData(f"a {type(value).__module__}.{type(value).__qualname__} is not plain data")


def _hex_float(text):
  if not isinstance(text, str):
    raise NotData("malformed float")
  return float.fromhex(text)


def decode_value(data, object_of=None, depth=0):
  """Tagged structure -> value, building only built-in types; ``object_of(id)`` resolves handles."""
  if depth > MAX_DEPTH:
    raise NotData("value nested too deeply")
  if data is None or isinstance(data, (bool, str)):
    return data
  if not isinstance(data, list) or not data or not isinstance(data[0], str):
    raise NotData(f"malformed value {type(data).__name__}")
  tag, items = data[0], data[1:]
  try:
    if tag == "i" and len(items) == 1 and isinstance(items[0], str):
      return int(items[0], 16)
    if tag == "f" and len(items) == 1:
      return _hex_float(items[0])
    if tag == "c" and len(items) == 2:
      return complex(_hex_float(items[0]), _hex_float(items[1]))
    if tag == "b" and len(items) == 1 and isinstance(items[0], str):
      return items[0].encode("latin-1")
    if tag in ("l", "t", "s", "z"):
      decoded = [decode_value(item, object_of, depth + 1) for item in items]
      return {"l": list, "t": tuple, "s": set, "z": frozenset}[tag](decoded)
    if tag == "d":
      pairs = []
      for pair in items:
        if not isinstance(pair, list) or len(pair) != 2:
          raise NotData("malformed dict entry")
        pairs.append((decode_value(pair[0], object_of, depth + 1), decode_value(pair[1], object_of, depth + 1)))
      return dict(pairs)
    if tag == "h" and object_of is not None and len(items) == 1 and type(items[0]) is int:
      return object_of(items[0])
  except (ValueError, TypeError, OverflowError, UnicodeError) as exc:  # unhashable keys, bad hex, ...
    raise NotData(f"malformed value: {exc}") from None
  raise NotData(f"malformed value with tag {tag!r}")


def write_message(fd, message, deadline=None, limit=None):
  """Writes one length-prefixed JSON message to a blocking file descriptor.

  With ``deadline`` (time.monotonic()), it writes a pipe-buffer page at a time once the pipe has room, and
  raises TimeoutError past the deadline: a reader that stops reading cannot hold the writer forever. With
  ``limit``, a message whose encoding exceeds it raises NotData before anything is written.
  """
  text = json.dumps(message, separators=(",", ":"))  # ASCII: as many bytes as characters
  if limit is not None and len(text) > limit:
    raise NotData(f"message of {len(text)} bytes exceeds the {limit}-byte limit")
  payload = text.encode()
  for part in (_HEADER.pack(len(payload)), payload):  # apart: a large payload is not copied once more
    view = memoryview(part)
    while view:
      if deadline is None:
        view = view[os.write(fd, view) :]
      elif select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
        view = view[os.write(fd, view[:_PAGE]) :]  # writable means a page fits: this write does not block
      else:
        raise TimeoutError("the reader took no message before the deadline")


def read_exact(fd, size, deadline=None):
  """Reads exactly ``size`` bytes; None at end of file; TimeoutError past ``deadline`` (time.monotonic())."""
  chunks, remaining = [], size
  while remaining:
    if deadline is not None and not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
      raise TimeoutError("no complete message before the deadline")
    chunk = os.read(fd, min(remaining, 1 << 20))
    if not chunk:
      return None
    chunks.append(chunk)
    remaining -= len(chunk)
  return b"".join(chunks)


def read_frame(fd, limit, deadline=None):
  """Reads one length-prefixed payload as bytes; None at end of file; NotData when over ``limit``."""
  header = read_exact(fd, _HEADER.size, deadline)
  if header is None:
    return None
  (size,) = _HEADER.unpack(header)
  if size > limit:
    raise NotData(f"message of {size} bytes exceeds the {limit}-byte limit")
  return read_exact(fd, size, deadline)


def read_message(fd, limit):
  """Reads one length-prefixed JSON message; None at end of file."""
  payload = read_frame(fd, limit)
  if payload is None:
    return None
  try:
    return json.loads(payload)
  except (ValueError, RecursionError) as exc:
    raise NotData(f"malformed message: {exc}") from None
