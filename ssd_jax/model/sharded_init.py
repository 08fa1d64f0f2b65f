"""Sharded model initialisation: parameters created directly in their shards, or only their shapes.

`abstract_state` gives shapes, dtypes and shardings without allocating (for ahead-of-time compiles and memory
plans); `create_sharded_model` materialises a randomly initialised model with every parameter born on its
devices, so a model larger than one host's memory never passes through one.
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh

from ssd_jax import sharding
from ssd_jax.model.transformer import Transformer


def abstract_state(cfg: Any, mesh: Mesh, rules: sharding.LogicalRules = sharding.DEFAULT_RULES, seed: int = 0):
  """Shapes, dtypes and shardings of a model's parameters without allocating them.

  Returns:
    (graphdef, state): state holds jax.ShapeDtypeStruct leaves carrying their NamedSharding, ready
    for `jax.jit(...).lower(...)` ahead-of-time compiles and memory planning.
  """
  abstract_model = nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(seed)))
  graphdef, state = nnx.split(abstract_model)
  shardings = sharding.state_shardings(state, mesh, rules)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
  return graphdef, state


def create_sharded_model(cfg: Any, mesh: Mesh, rules: sharding.LogicalRules = sharding.DEFAULT_RULES, seed: int = 0):
  """Initialises a Transformer whose parameters are created directly in their shards (no host copy)."""
  graphdef, abstract = abstract_state(cfg, mesh, rules, seed)
  shardings = jax.tree.map(lambda x: x.sharding, abstract)

  def init():
    return nnx.state(Transformer(cfg, rngs=nnx.Rngs(seed)))

  state = jax.jit(init, out_shardings=shardings)()
  return nnx.merge(graphdef, state)
