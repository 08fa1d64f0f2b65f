"""A digest of what a file or directory holds, for the fingerprints of stages that read it by path.

A config names a checkpoint or problem file by path; a file replaced at the same path (a newer checkpoint
copied over `model.hf_dir`, an edited problem file) must not let a resumed run mix what the old and new files
made. The digest covers names, sizes and bytes, not paths or times, so the same files copied to another
machine (every TPU VM copies the model to its own disk) give the same digest.

Files up to `whole_bytes` are read whole; larger ones (weights) by their first MiB (a safetensors or GGUF
header: every tensor's name, dtype and shape) and a 64 KiB sample every 32 MiB, so a 60 GB checkpoint costs
about 120 MB of reads. Training changes nearly every block of a weight file; a change confined to bytes between
samples goes unseen.
"""

from __future__ import annotations

import hashlib
import os

_HEAD_BYTES = 1 << 20
_SAMPLE_BYTES = 64 << 10
_SAMPLE_EVERY = 32 << 20
WHOLE_BYTES = 64 << 20

# (real path, size, mtime_ns, whole_bytes) -> digest: a run fingerprints its stages several times.
_cache: dict[tuple[str, int, int, int], str] = {}


def _file_digest(path: str, size: int, whole_bytes: int) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    if size <= whole_bytes:
      while chunk := f.read(1 << 20):
        digest.update(chunk)
    else:
      digest.update(f.read(_HEAD_BYTES))
      for offset in range(_HEAD_BYTES, size, _SAMPLE_EVERY):
        f.seek(offset)
        digest.update(f.read(_SAMPLE_BYTES))
      f.seek(max(size - _SAMPLE_BYTES, 0))
      digest.update(f.read(_SAMPLE_BYTES))
  return digest.hexdigest()


def _cached_file_digest(path: str, whole_bytes: int) -> str:
  stat = os.stat(path)
  key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, whole_bytes)
  if key not in _cache:
    _cache[key] = f"{stat.st_size}:{_file_digest(path, stat.st_size, whole_bytes)}"
  return _cache[key]


def content_signature(path: str, *, whole_bytes: int = WHOLE_BYTES) -> str:
  """A 16-hex-digit digest of the file at `path`, or of every file under the directory at `path`.

  Names starting with '.' (download caches, lock files) are left out. A path that does not exist gives
  'absent' (the stage that reads it reports that).

  Args:
    path: a file or directory.
    whole_bytes: files up to this size are read whole; larger ones are sampled.
  """
  if not os.path.exists(path):
    return "absent"
  digest = hashlib.sha256()
  if os.path.isfile(path):
    digest.update(_cached_file_digest(path, whole_bytes).encode())
  else:
    for root, dirs, files in os.walk(path):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      for name in sorted(f for f in files if not f.startswith(".")):
        full = os.path.join(root, name)
        relative = os.path.relpath(full, path)
        digest.update(f"{relative}\0{_cached_file_digest(full, whole_bytes)}\0".encode())
  return digest.hexdigest()[:16]
