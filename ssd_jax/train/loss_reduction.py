"""Masked sums: losses come as (sum, count) so they add up across micro-batches and devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def masked_sum(values: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Sums per-token values over the tokens the mask selects.

  Args:
    values: float [batch, length] per-token losses.
    mask: bool or float [batch, length]; 0 / False drops a token, a float acts as a weight.

  Returns:
    (sum, count): float32 scalars, sum of mask * values and sum of mask. The loss is
    sum / count once the pairs of all micro-batches and devices are added.
  """
  if values.shape != mask.shape:
    raise ValueError(f"mask shape {mask.shape} must equal the per-token shape {values.shape}")
  weight = mask.astype(jnp.float32)
  # `where`, not a product alone: values at dropped tokens may be inf or NaN (e.g. padding).
  total = jnp.sum(jnp.where(weight != 0, weight * values.astype(jnp.float32), 0.0))
  return total, jnp.sum(weight)
