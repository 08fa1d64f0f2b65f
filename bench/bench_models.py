"""What the CPU benchmarks share: the machine's name, a Qwen3-shaped model, SFT rows and interleaved timing.
No side effects on import.

`generation_throughput.py` pins its process when it starts, so the other benchmarks take these from here.
"""

from __future__ import annotations

import platform
import re
import statistics
import time
from pathlib import Path

import jax
import numpy as np

from ssd_jax.model import ModelConfig


def cpu_model() -> str:
  """The CPU's model name and its widest vector extension (XLA's CPU speed depends on both)."""
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      info = f.read()
  except OSError:
    return platform.processor() or platform.machine()
  name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
  flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
  vector = next((v for v in ("avx512f", "avx2", "sve", "neon") if flags and v in flags.group(1).split()), None)
  return ", ".join(filter(None, (name.group(1).strip() if name else platform.machine(), vector)))


def xla_cpu_threads() -> int:
  """Threads in XLA's CPU intra-op pool, counted by name once the CPU client has started.

  XLA sizes the pool from PJRT_NPROC, else from the CPUs the process may use when the client starts.
  """
  jax.devices("cpu")  # Starts the CPU client, which creates the pool.
  return sum("XLAEigen" in task.joinpath("comm").read_text() for task in Path("/proc/self/task").iterdir())


def same_threads(cpus: list[int], torch_threads: int) -> str:
  """The header's thread line, once XLA's CPU pool and torch are checked to have one thread per pinned CPU.

  Args:
    cpus: the CPUs the process is pinned to.
    torch_threads: `torch.get_num_threads()`.

  Raises:
    SystemExit: either side has another count, so unequal threading is never compared.
  """
  xla = xla_cpu_threads()
  if not xla == torch_threads == len(cpus):
    raise SystemExit(
      f"refusing to compare: pinned to CPUs {cpus}, but XLA's CPU pool has {xla} threads and torch {torch_threads}"
    )
  return f"threads: XLA CPU intra-op pool {xla} (PJRT_NPROC), torch intra-op {torch_threads}, on CPUs {cpus}"


def model_config(args) -> ModelConfig:
  """A random-weight Qwen3-shaped model from --hidden/--layers/--heads/--vocab (kv heads = heads / 2)."""
  return ModelConfig(
    vocab_size=args.vocab,
    hidden_size=args.hidden,
    intermediate_size=3 * args.hidden,
    num_layers=args.layers,
    num_heads=args.heads,
    num_kv_heads=args.heads // 2,
    head_dim=64,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    tie_embeddings=True,
    qk_norm=True,
    max_position_embeddings=4096,
    dtype="float32",
    param_dtype="float32",
  )


def sft_rows(tokens: np.ndarray) -> dict[str, np.ndarray]:
  """One sequence per row, loss on every position that has a next token."""
  batch, length = tokens.shape
  targets = np.concatenate([tokens[:, 1:], np.zeros((batch, 1), np.int32)], axis=1)
  loss_mask = np.ones((batch, length), np.int32)
  loss_mask[:, -1] = 0
  positions = np.broadcast_to(np.arange(length, dtype=np.int32), (batch, length)).copy()
  return dict(
    tokens=tokens, targets=targets, loss_mask=loss_mask, segment_ids=np.ones_like(tokens), positions=positions
  )


def interleaved(fns: dict, repeats: int) -> tuple[dict, dict]:
  """(compile-and-first-call seconds, median seconds of `repeats` interleaved calls) per name."""
  first, times = {}, {name: [] for name in fns}
  for name, fn in fns.items():
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first[name] = time.perf_counter() - start
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return first, {name: statistics.median(t) for name, t in times.items()}
