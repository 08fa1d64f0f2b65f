"""The EMA teacher: an exponential moving average of the student's parameters.

After each optimizer step, teacher <- (1 - rate) * teacher + rate * student, computed in float32 and
stored in the teacher's dtype. The teacher keeps the student's shardings, so the update is elementwise
on each device with no communication.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def check_rate(rate: float) -> None:
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f"EMA rate must be in [0, 1] (fraction of the student mixed in per step), got {rate}")


def ema_update(teacher: Any, student: Any, rate: float | jax.Array) -> Any:
  """One EMA step.

  Args:
    teacher: parameter pytree.
    student: parameter pytree of the same structure and shapes.
    rate: weight of the student, in [0, 1] (0 keeps the teacher, 1 copies the student).

  Returns:
    A pytree like `teacher`: (1 - rate) * teacher + rate * student, in the teacher's dtypes.
  """
  if isinstance(rate, (int, float)):
    check_rate(rate)
  rate = jnp.asarray(rate, jnp.float32)

  def mix(t, s):
    if t.shape != s.shape:
      raise ValueError(f"teacher and student shapes differ: {t.shape} vs {s.shape}")
    t32, s32 = t.astype(jnp.float32), s.astype(jnp.float32)
    return (t32 + rate * (s32 - t32)).astype(t.dtype)

  return jax.tree.map(mix, teacher, student)


class EmaUpdater:
  """`update(teacher, student) -> teacher`, jitted once, donating the old teacher's buffers.

  The output keeps the teacher's shardings (the elementwise update needs no others).
  """

  def __init__(self, rate: float):
    check_rate(rate)
    self.rate = float(rate)
    self._jitted = jax.jit(lambda t, s: ema_update(t, s, self.rate), donate_argnums=0)

  def __call__(self, teacher: Any, student: Any) -> Any:
    return self._jitted(teacher, student)


def copy_params(params: Any) -> Any:
  """Fresh buffers with the same values and shardings (the frozen or EMA teacher's starting point)."""
  return jax.tree.map(jnp.copy, params)
