"""What the CPU benchmarks share: the machine's name, a Qwen3-shaped model, SFT rows and interleaved timing.
No side effects on import.

`generation_throughput.py` pins its process when it starts, so the other benchmarks take these from here.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ssd_jax.model import ModelConfig
from ssd_jax.sampling.params import SamplingParams


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


@dataclasses.dataclass(frozen=True)
class Timing:
  """One side's interleaved calls.

  Attributes:
    first: seconds of the first call (compile, warm-up), not among `times`.
    times: seconds of each timed call.
    out: the last call's return value.
  """

  first: float
  times: tuple[float, ...]
  out: Any

  @property
  def median(self) -> float:
    return statistics.median(self.times)

  def spread(self, scale: float = 1.0, digits: int = 3) -> str:
    """'min-max' of the timed calls in seconds x `scale`, printed next to the median."""
    return f"{min(self.times) * scale:.{digits}f}-{max(self.times) * scale:.{digits}f}"


def timed_call(fn) -> tuple[float, Any]:
  """(seconds, result) of one call of `fn`, waiting for its JAX arrays."""
  start = time.perf_counter()
  out = jax.block_until_ready(fn())
  return time.perf_counter() - start, out


def interleaved(fns: dict, repeats: int) -> dict[str, Timing]:
  """Each callable once apart (compile, warm-up), then `repeats` rounds calling each once, timed.

  Every round starts with the next side in turn, so no side always runs first (or right after another).
  Returns a `Timing` per name, in `fns`' order.
  """
  names, first, out = list(fns), {}, {}
  for name in names:
    first[name], out[name] = timed_call(fns[name])
  times = {name: [] for name in names}
  for round_ in range(repeats):
    for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
      seconds, out[name] = timed_call(fns[name])
      times[name].append(seconds)
  return {name: Timing(first[name], tuple(times[name]), out[name]) for name in names}


def print_sides(timing: dict[str, Timing], work: float, unit: str, label: str = "") -> None:
  """Prints each side's rate (`work` / median, in `unit`) with its median, min-max and first call, then ratios.

  The first side is ours; each ratio is another side's median over ours (above 1: ours is faster), and
  the first of several others is the headline (the strongest baseline comes first).
  """
  prefix = f"[{label}] " if label else ""
  width = max(map(len, timing))
  for name, t in timing.items():
    print(
      f"{prefix}{name:{width}s} {work / t.median:10.1f} {unit} (median {t.median:.3f} s, min-max {t.spread()} s; "
      f"first call {t.first:.1f} s, not counted)"
    )
  ours, *others = timing
  for i, name in enumerate(others):
    headline = " <- headline" if i == 0 and len(others) > 1 else ""
    print(f"{prefix}ratio ({ours} / {name}): {timing[name].median / timing[ours].median:.2f}x{headline}")


# Peak HBM bandwidth in bytes/s by device kind (public spec sheets), for the roofline fraction.
PEAK_HBM_BYTES_PER_S = {
  "H100": 3.35e12,
  "H200": 4.8e12,
  "A100": 2.0e12,
  "TPU v5 lite": 8.19e11,
  "TPU v5e": 8.19e11,
  "TPU v5p": 2.765e12,
  "TPU v5": 2.765e12,
  "TPU v6 lite": 1.64e12,
  "TPU v4": 1.2e12,
}


def peak_bandwidth(device) -> float | None:
  """The datasheet HBM bandwidth (bytes/s) of a device kind, the longest matching name first; None if unknown."""
  kind = device.device_kind
  for name in sorted(PEAK_HBM_BYTES_PER_S, key=len, reverse=True):
    if name in kind:
      return PEAK_HBM_BYTES_PER_S[name]
  return None


def add_sampling_flags(parser, *, temperature: float = 1.6, top_k: int = 20, top_p: float = 0.8) -> None:
  """--temperature, --top_k, --top_p and --min_p (defaults: the SSD paper's training setting); `sampling_params`
  reads them back."""
  parser.add_argument("--temperature", type=float, default=temperature)
  parser.add_argument("--top_k", type=int, default=top_k)
  parser.add_argument("--top_p", type=float, default=top_p)
  parser.add_argument("--min_p", type=float, default=0.0)


def sampling_params(args) -> SamplingParams:
  """The decoding parameters of the flags `add_sampling_flags` added."""
  return SamplingParams(args.temperature, args.top_k, args.top_p, args.min_p)
