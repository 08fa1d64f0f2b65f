"""Decoding parameters for truncated sampling, as one config or as per-row arrays.

`SamplingParams` is what a config or a sample record stores. `RowParams` is what the
sampler and the kernel consume: one value per row of the batch, so rows with different
decoding settings share one call.

"Off" values (see the truncation contract in the design notes):
  * temperature 0 -> greedy (argmax, no randomness);
  * top_k <= 0 or top_k >= vocab -> no top-k;
  * top_p >= 1 -> no top-p;
  * min_p == 0 -> no min-p.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SamplingParams:
  """One set of decoding parameters.

  Attributes:
    temperature: divides the logits; 0 means greedy decoding.
    top_k: keep the k most likely tokens; <= 0 disables it.
    top_p: keep the smallest most-likely prefix whose mass reaches top_p; 1 disables it.
    min_p: drop tokens whose probability is below min_p times the largest; 0 disables it.
  """

  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  min_p: float = 0.0

  def __post_init__(self):
    if not math.isfinite(self.temperature) or self.temperature < 0:
      raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
    if isinstance(self.top_k, bool) or int(self.top_k) != self.top_k:
      raise ValueError(f"top_k must be an integer (<= 0 = off), got {self.top_k!r}")
    if not 0.0 < self.top_p <= 1.0:
      raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
    if not 0.0 <= self.min_p < 1.0:
      raise ValueError(f"min_p must be in [0, 1) (0 = off), got {self.min_p!r}")

  @property
  def greedy(self) -> bool:
    return self.temperature == 0.0

  def rows(self, batch: int) -> RowParams:
    """Broadcasts these parameters to `batch` rows."""
    return as_row_params([self] * batch)


class RowParams(NamedTuple):
  """Per-row decoding parameters (a pytree of arrays).

  Attributes:
    temperature: float32 [batch].
    top_k: int32 [batch].
    top_p: float32 [batch].
    min_p: float32 [batch].
  """

  temperature: jax.Array
  top_k: jax.Array
  top_p: jax.Array
  min_p: jax.Array

  @property
  def batch(self) -> int:
    return self.temperature.shape[0]


ParamsLike = SamplingParams | RowParams | Sequence[SamplingParams]


def as_row_params(params: ParamsLike, batch: int | None = None) -> RowParams:
  """Turns one config, a list of per-row configs, or `RowParams` into `RowParams`.

  Args:
    params: a `SamplingParams` (needs `batch`), one `SamplingParams` per row, or
      `RowParams` (returned with dtypes fixed; concrete values are checked as
      `SamplingParams` checks them, traced ones cannot be).
    batch: the number of rows; checked against per-row inputs when given.

  Returns:
    RowParams with float32/int32 arrays of shape [batch].

  Raises:
    ValueError: shapes that disagree, or a concrete value `SamplingParams` refuses (naming its row).
  """
  if isinstance(params, SamplingParams):
    if batch is None:
      raise ValueError("batch is required to broadcast a single SamplingParams")
    params = [params] * batch
  if isinstance(params, RowParams):
    rows = RowParams(
      temperature=jnp.asarray(params.temperature, jnp.float32),
      top_k=jnp.asarray(params.top_k, jnp.int32),
      top_p=jnp.asarray(params.top_p, jnp.float32),
      min_p=jnp.asarray(params.min_p, jnp.float32),
    )
    shapes = {name: tuple(value.shape) for name, value in rows._asdict().items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 1:
      raise ValueError(f"RowParams fields must all have shape [batch], got {shapes}")
    if not any(isinstance(value, jax.core.Tracer) for value in rows):
      # Out-of-range values would not fail: the paths would each read them their own way.
      for row, values in enumerate(zip(*(np.asarray(value).tolist() for value in rows))):
        try:
          SamplingParams(*values)
        except ValueError as e:
          raise ValueError(f"RowParams row {row}: {e}") from None
  else:
    params = list(params)
    if not all(isinstance(p, SamplingParams) for p in params):
      raise TypeError("expected SamplingParams, a sequence of them, or RowParams")
    rows = RowParams(
      temperature=jnp.asarray(np.array([p.temperature for p in params], np.float32)),
      top_k=jnp.asarray(np.array([p.top_k for p in params], np.int32)),
      top_p=jnp.asarray(np.array([p.top_p for p in params], np.float32)),
      min_p=jnp.asarray(np.array([p.min_p for p in params], np.float32)),
    )
  if batch is not None and rows.batch != batch:
    raise ValueError(f"params have {rows.batch} rows but the batch has {batch}")
  return rows
