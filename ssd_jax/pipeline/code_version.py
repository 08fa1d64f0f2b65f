"""Which code made a stage's outputs: the installed package version and, in a git checkout, its commit.

Stage records keep it beside their fingerprint, not in it: a run patched since may resume what it finished.
A run that reuses stages other code made says so, and the report names the code of the stages it compares.
The commit is read from the checkout's files (no git process); edits not committed do not show in it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pathlib
from collections.abc import Mapping

PACKAGE = "ssd_jax"
_PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]
# The directory holding the package's source: a git checkout when the package is installed from one (editable).
_SOURCE_ROOT = _PACKAGE_DIR.parent


def _read(path: str) -> str:
  with open(path) as f:
    return f.read().strip()


def git_revision(root: str | os.PathLike) -> str | None:
  """The commit checked out in `root` when it is a git checkout, else None (also for a branch without commits)."""
  git = os.path.join(root, ".git")
  try:
    if os.path.isfile(git):  # A worktree or submodule: the file names its git directory.
      git = os.path.join(root, _read(git).removeprefix("gitdir:").strip())
    head = _read(os.path.join(git, "HEAD"))
    if not head.startswith("ref:"):
      return head or None  # A detached HEAD holds the commit itself.
    ref = head.removeprefix("ref:").strip()
    # A worktree keeps its HEAD but shares the branches of the main git directory.
    commondir = os.path.join(git, "commondir")
    common = os.path.join(git, _read(commondir)) if os.path.isfile(commondir) else git
    for directory in dict.fromkeys((git, common)):
      if os.path.isfile(os.path.join(directory, ref)):
        return _read(os.path.join(directory, ref))
    with open(os.path.join(common, "packed-refs")) as f:
      for line in f:
        commit, _, name = line.strip().partition(" ")
        if name == ref:
          return commit
  except OSError:
    pass
  return None


@functools.cache
def current() -> dict[str, str]:
  """This process's code: {'version': the package version, 'revision': its commit, when a git checkout}."""
  try:
    code = {"version": importlib.metadata.version(PACKAGE)}
  except importlib.metadata.PackageNotFoundError:  # Run from a source tree that was never installed.
    code = {"version": "unknown"}
  revision = git_revision(_SOURCE_ROOT)
  if revision:
    code["revision"] = revision
  return code


@functools.cache
def source_digest() -> str:
  """A digest of the package's Python sources as they are on disk (committed or not), 16 hex digits."""
  digest = hashlib.sha256()
  for path in sorted(_PACKAGE_DIR.rglob("*.py")):
    digest.update(f"{path.relative_to(_PACKAGE_DIR).as_posix()}\0".encode() + path.read_bytes() + b"\0")
  return digest.hexdigest()[:16]


def describe(code: Mapping[str, str] | None) -> str:
  """'ssd_jax 0.1.0 (git 88cf91f0a1b2)'; for None (a record older than the versions), says so."""
  if code is None:
    return "code that did not record its version"
  revision = code.get("revision")
  return f"{PACKAGE} {code.get('version', 'unknown')}" + (f" (git {revision[:12]})" if revision else "")


def by_code(codes: Mapping[str, Mapping[str, str] | None]) -> str:
  """Stage name -> its code, as 'pretrain, eval by ssd_jax 0.1.0 (git 88cf91f0a1b2); sft by ...'."""
  groups: dict[str, list[str]] = {}
  for stage, code in codes.items():
    groups.setdefault(describe(code), []).append(stage)
  return "; ".join(f"{', '.join(stages)} by {what}" for what, stages in groups.items())
