"""The `toy` section: the SSD paper's lock/fork toy run by the `toy` stage (see `ssd_jax.tasks.ssd_toy`)."""

from __future__ import annotations

import math

import ml_collections

from ssd_jax.config.schema import Check


def add_sections(c: ml_collections.ConfigDict) -> None:
  t = ml_collections.ConfigDict()
  t.pattern = "LLFLLFLL"  # One letter per position: L (lock) or F (fork).
  t.lock_right = 0.8  # A lock's right token; the rest is a Zipf tail over the distractors.
  t.fork_branches = "0.4,0.25,0.15,0.1"  # A fork's branches; the rest is the distractor tail.
  t.num_distractors = 60
  # Synthesis decoding (T_train and the truncation); the evaluation keeps the same truncation over a T_eval grid.
  t.train_temperature = 1.0
  t.top_k = 20
  t.top_p = 0.8
  t.eval_top_k = 20
  t.eval_top_p = 0.8
  t.eval_temperatures = "0.5,0.7,0.8,0.9,1.0,1.1,1.2,1.4,1.6,2.0,2.5,3.0"
  t.ks = "1,8"
  t.corpus_size = 8192  # Pre-training sequences drawn from the toy's distributions.
  t.pretrain_steps = 200
  t.pretrain_learning_rate = 3e-3
  t.num_samples = 4096  # One sample per prompt at T_train (every prompt is the start token).
  t.sft_steps = 100
  t.sft_learning_rate = 1e-3
  t.batch_size = 128
  c.toy = t


def _floats(text: str) -> list[float]:
  try:
    return [float(x) for x in text.split(",") if x.strip()]
  except ValueError:
    return []


def checks() -> list[Check]:
  return [
    Check("toy.pattern", lambda v: bool(v) and set(v) <= {"L", "F"}, "a non-empty string of L (lock) and F (fork)"),
    Check("toy.lock_right", lambda v: 0 < v < 1, "a probability in (0, 1)"),
    Check(
      "toy.fork_branches",
      lambda v: len(_floats(v)) >= 2 and min(_floats(v)) > 0 and sum(_floats(v)) < 1,
      "comma-separated positive probabilities, at least 2, summing below 1",
    ),
    Check("toy.num_distractors", lambda v: v >= 1, "at least 1 distractor"),
    Check("toy.top_p", lambda v: 0 < v <= 1, "top_p in (0, 1] (1 means off)"),
    Check("toy.train_temperature", lambda v: 0 < v < math.inf, "a finite temperature > 0"),
    Check("toy.eval_top_p", lambda v: 0 < v <= 1, "top_p in (0, 1] (1 means off)"),
    Check(
      "toy.eval_temperatures",
      lambda v: bool(_floats(v)) and all(0 < t < math.inf for t in _floats(v)),
      "finite temperatures > 0",
    ),
    Check(
      "toy.ks",
      lambda v: bool(_floats(v)) and all(1 <= k < math.inf and k == int(k) for k in _floats(v)),
      "k values >= 1",
    ),
    *[
      Check(f"toy.{name}", lambda v: v >= 1, "an integer >= 1")
      for name in ("corpus_size", "pretrain_steps", "num_samples", "sft_steps", "batch_size")
    ],
    *[
      Check(f"toy.{name}", lambda v: 0 < v < math.inf, "a finite rate > 0")
      for name in ("pretrain_learning_rate", "sft_learning_rate")
    ],
  ]
