"""Flags the benchmarks share, kept apart from `bench_models` (which imports jax): scripts parse them before
pinning their process, and pin before any library starts a thread pool."""

from __future__ import annotations

import argparse


def add_model_flags(parser: argparse.ArgumentParser, batch: int) -> None:
  """The random Qwen3-shaped model both sides build (`bench_models`), and the batch it runs."""
  parser.add_argument("--hidden", type=int, default=256)
  parser.add_argument("--layers", type=int, default=4)
  parser.add_argument("--heads", type=int, default=4)
  parser.add_argument("--vocab", type=int, default=32_768)
  parser.add_argument("--batch", type=int, default=batch)
