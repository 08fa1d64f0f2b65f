"""The largest entries of a vector inside a Pallas (Triton) kernel, a reduction or two per entry.

Entries are taken one at a time, descending, the lowest position first among equal values,
until `need` are taken and the next is below the need-th (so every entry tied with the need-th
is taken too), or `cap` are. On a GPU each step is a reduction across the program's threads,
the cost that matters here; so when the values are bfloat16 numbers held in float32 (the low
16 bits of each float are zero, and so are those of its `order_key`), value and position share
one int32 (the key in the high bits, the inverted position in the low 16) and each step is a
single max. Float32 values take two (the max, then the lowest position holding it).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ssd_jax.kernels import truncation_ops as ops

_LOW = 2**16 - 1
# Below every packed entry (whose low bits are 65535 - position > 0): marks an entry taken.
_TAKEN = -(0x7F800000)  # order_key(-inf)


def _packed_steps(values, position):
  state = ops.order_key(values) | (_LOW - position)

  def largest(state):
    best = jnp.max(state)
    return ops.key_to_float(best & ~_LOW), _LOW - (best & _LOW)

  def remove(state, taken):
    return jnp.where(position == taken, _TAKEN, state)

  return state, largest, remove


def _plain_steps(values, position):
  def largest(state):
    values, position = state
    best = jnp.max(values)
    return best, jnp.min(jnp.where(values == best, position, ops.INT32_MAX))

  def remove(state, taken):
    values, position = state
    gone = position == taken
    return jnp.where(gone, -jnp.inf, values), jnp.where(gone, ops.INT32_MAX, position)

  return (values, position), largest, remove


def _flat_position(shape) -> jax.Array:
  """int32 of `shape`: each entry's position in row-major order (no reshape: a layout change on GPU)."""
  position = lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1)
  stride = shape[-1]
  for axis in range(len(shape) - 2, -1, -1):
    position = position + lax.broadcasted_iota(jnp.int32, shape, axis) * stride
    stride *= shape[axis]
  return position


def take_largest(values: jax.Array, need: jax.Array, shape: tuple[int, ...], *, packed: bool):
  """The largest entries of `values`, descending.

  Args:
    values: float32 array (any shape) of n entries; with `packed`, bfloat16 numbers (exact in
      16 bits) and n < 2**16 - 1.
    need: int32 scalar in [1, cap]: take at least this many, and every entry tied with the last.
    shape: the shape of the returned arrays; cap = its last dimension entries are taken at most.
    packed: one reduction per entry (see the module docstring).

  Returns:
    (values taken, float32 of `shape`; their row-major positions in `values`, int32 of `shape`;
    float32 scalar bound of every entry not taken). Slots past the count hold -inf at an invalid
    position (>= n); so does the bound when nothing is left.
  """
  cap = shape[-1]
  position = _flat_position(values.shape)
  slot = lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1)
  state, largest, remove = (_packed_steps if packed else _plain_steps)(values, position)

  def more(carry):
    j, best_value, kth = carry[1], carry[2], carry[4]
    return (j < cap) & ((j < need) | ((best_value == kth) & (best_value > -jnp.inf)))

  def take(carry):
    state, j, best_value, best_position, kth, values_taken, positions_taken = carry
    state = remove(state, best_position)
    return (
      state,
      j + 1,
      *largest(state),
      jnp.where(j == need - 1, best_value, kth),
      jnp.where(slot == j, best_value, values_taken),
      jnp.where(slot == j, best_position, positions_taken),
    )

  init = (
    state,
    jnp.int32(0),
    *largest(state),
    jnp.float32(jnp.inf),
    jnp.full(shape, -jnp.inf, jnp.float32),
    jnp.full(shape, ops.INT32_MAX, jnp.int32),
  )
  _, _, bound, _, _, values_taken, positions_taken = lax.while_loop(more, take, init)
  return values_taken, positions_taken, bound
