"""Decoding sections: `sampling` (synthesis, T_train) and `eval_sampling` (evaluation, T_eval)."""

from __future__ import annotations

import math

import ml_collections

from ssd_jax.config.schema import Check


def sampling_section(*, temperature: float, top_k: int, top_p: float, n: int) -> ml_collections.ConfigDict:
  s = ml_collections.ConfigDict()
  s.temperature = temperature  # 0 means greedy.
  s.top_k = top_k  # <= 0 means off.
  s.top_p = top_p  # 1 means off.
  s.min_p = 0.0  # 0 means off.
  s.n = n  # Samples per prompt.
  s.max_new_tokens = 256
  s.batch_size = 8  # Rows per sampler call.
  return s


def add_sections(c: ml_collections.ConfigDict) -> None:
  c.sampling = sampling_section(temperature=1.0, top_k=0, top_p=1.0, n=1)
  c.eval_sampling = sampling_section(temperature=1.0, top_k=0, top_p=1.0, n=8)


def sampling_checks(prefix: str) -> list[Check]:
  return [
    Check(f"{prefix}.temperature", lambda v: 0 <= v < math.inf, "a finite temperature >= 0 (0 means greedy)"),
    Check(f"{prefix}.top_k", lambda v: True, "an int (<= 0 means off)"),
    Check(f"{prefix}.top_p", lambda v: 0 < v <= 1, "top_p in (0, 1] (1 means off)"),
    Check(f"{prefix}.min_p", lambda v: 0 <= v < 1, "min_p in [0, 1) (0 means off)"),
    Check(f"{prefix}.n", lambda v: v >= 1, "at least 1 sample per prompt"),
    Check(f"{prefix}.max_new_tokens", lambda v: v >= 1, "at least 1 new token"),
    Check(f"{prefix}.batch_size", lambda v: v >= 1, "a batch size >= 1"),
  ]


def checks() -> list[Check]:
  return [*sampling_checks("sampling"), *sampling_checks("eval_sampling")]
