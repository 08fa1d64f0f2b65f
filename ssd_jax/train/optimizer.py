"""AdamW with linear warm-up, cosine decay, global-norm clipping and a weight-decay mask.

Gradient accumulation is not an optax wrapper here: the train step scans over micro-batches and applies
one update per step (see `ssd_jax.train.sft_step`); the config only carries the number of micro-batches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import optax

# Parameter-path names that never get weight decay: normalisation gains and biases.
_NO_DECAY_NAMES = ("bias", "scale")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW + schedule settings.

  Attributes:
    learning_rate: peak learning rate, reached at the end of warm-up.
    end_learning_rate: learning rate at `total_steps` after cosine decay.
    warmup_steps: steps of linear warm-up from 0 to `learning_rate`.
    total_steps: total optimizer updates; the cosine ends here and stays at `end_learning_rate` after.
    b1: Adam first-moment decay.
    b2: Adam second-moment decay.
    weight_decay: decoupled weight decay, applied to matrices only (not norms or biases).
    eps: Adam epsilon.
    grad_clip_norm: clip gradients to this global norm; 0 or None disables clipping.
    grad_accum_steps: micro-batches per optimizer update (the batch is split inside the step).
  """

  learning_rate: float
  end_learning_rate: float
  warmup_steps: int
  total_steps: int
  b1: float = 0.9
  b2: float = 0.95
  weight_decay: float = 0.1
  eps: float = 1e-8
  grad_clip_norm: float | None = 1.0
  grad_accum_steps: int = 1

  def __post_init__(self):
    if not self.learning_rate > 0:
      raise ValueError(f"OptimizerConfig.learning_rate must be > 0, got {self.learning_rate}")
    if not 0 <= self.end_learning_rate <= self.learning_rate:
      raise ValueError(
        "OptimizerConfig.end_learning_rate must be in [0, learning_rate="
        f"{self.learning_rate}], got {self.end_learning_rate}"
      )
    if self.total_steps < 1:
      raise ValueError(f"OptimizerConfig.total_steps must be >= 1, got {self.total_steps}")
    if not 0 <= self.warmup_steps <= self.total_steps:
      raise ValueError(
        f"OptimizerConfig.warmup_steps must be in [0, total_steps={self.total_steps}], got {self.warmup_steps}"
      )
    for name in ("b1", "b2"):
      value = getattr(self, name)
      if not 0 <= value < 1:
        raise ValueError(f"OptimizerConfig.{name} must be in [0, 1), got {value}")
    if self.weight_decay < 0:
      raise ValueError(f"OptimizerConfig.weight_decay must be >= 0, got {self.weight_decay}")
    if not self.eps > 0:
      raise ValueError(f"OptimizerConfig.eps must be > 0, got {self.eps}")
    if self.grad_clip_norm is not None and self.grad_clip_norm < 0:
      raise ValueError(f"OptimizerConfig.grad_clip_norm must be >= 0 or None, got {self.grad_clip_norm}")
    if self.grad_accum_steps < 1:
      raise ValueError(f"OptimizerConfig.grad_accum_steps must be >= 1, got {self.grad_accum_steps}")


@dataclasses.dataclass(frozen=True)
class Optimizer:
  """What the train step needs: the optax transformation, its schedule and the accumulation count."""

  tx: optax.GradientTransformation
  schedule: optax.Schedule
  grad_accum_steps: int


def make_schedule(config: OptimizerConfig) -> optax.Schedule:
  """Linear warm-up 0 -> peak over `warmup_steps`, then cosine peak -> end until `total_steps`.

  The value at step s is the learning rate of the update that step s performs (optax counts from 0).
  """
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=config.learning_rate,
    warmup_steps=config.warmup_steps,
    decay_steps=config.total_steps,
    end_value=config.end_learning_rate,
  )


def _path_names(path: tuple[Any, ...]) -> list[str]:
  """Readable names of a pytree key path, without nnx's trailing `.value` attribute."""
  names = []
  for key in path:
    if isinstance(key, jax.tree_util.DictKey):
      names.append(str(key.key))
    elif isinstance(key, jax.tree_util.GetAttrKey):
      names.append(key.name)
    elif isinstance(key, jax.tree_util.SequenceKey):
      names.append(str(key.idx))
    else:
      names.append(str(key))
  if names and names[-1] == "value":
    names.pop()
  return names


def decays_weight(path: tuple[Any, ...], leaf: Any) -> bool:
  """Whether the parameter at `path` gets weight decay: yes for matrices, no for norms and biases."""
  names = _path_names(path)
  if names and names[-1] in _NO_DECAY_NAMES:
    return False
  if any("norm" in name.lower() for name in names):
    return False
  return getattr(leaf, "ndim", 0) >= 2


def weight_decay_mask(params: Any) -> Any:
  """Boolean pytree like `params`: True where weight decay applies."""
  return jax.tree_util.tree_map_with_path(decays_weight, params)


def make_optimizer(config: OptimizerConfig) -> Optimizer:
  """Builds clip-by-global-norm -> AdamW(schedule, masked decay)."""
  schedule = make_schedule(config)
  adamw = optax.adamw(
    learning_rate=schedule,
    b1=config.b1,
    b2=config.b2,
    eps=config.eps,
    weight_decay=config.weight_decay,
    mask=weight_decay_mask,
  )
  if config.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), adamw)
  else:
    tx = adamw
  return Optimizer(tx=tx, schedule=schedule, grad_accum_steps=config.grad_accum_steps)
