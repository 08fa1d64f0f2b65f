"""Ahead-of-time compile of the sharded forward for a TPU topology (needs libtpu, not a TPU)."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.sharding import NamedSharding

from ssd_jax import sharding
from ssd_jax.model import KVCache, presets, sharded_init

pytestmark = pytest.mark.libtpu


def _topology_devices(name):
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

  return topologies.get_topology_desc(name, "tpu").devices


@pytest.mark.parametrize(
  "preset,mesh_shape",
  [
    ("tiny_qwen3", {"fsdp": 2, "tensor": 2}),
    ("tiny_llama3", {"fsdp": 2, "tensor": 2}),
    ("tiny_qwen3_moe", {"fsdp": 2, "expert": 2}),  # Megablox and ragged all-to-all under shard_map.
  ],
)
def test_forward_and_decode_compile_for_v5e(preset, mesh_shape):
  devices = _topology_devices("v5e:2x2")
  mesh = sharding.make_mesh(mesh_shape, devices=devices)
  # bfloat16, as on TPU. The MoE model names megablox: its tiny expert matrices are not whole 128-lane tiles,
  # which 'auto' leaves to the tiled matmul (the forward alone lowers either way).
  cfg = presets.get(preset, **({"moe_matmul": "megablox"} if "moe" in preset else {}))
  sharding.validate_mesh_for_model(mesh, cfg)
  graphdef, state = sharded_init.abstract_state(cfg, mesh)
  batch, length = 4, 64
  token_sharding = NamedSharding(mesh, sharding.logical_to_spec(("batch", "length")))
  tokens = jax.ShapeDtypeStruct((batch, length), jnp.int32, sharding=token_sharding)
  cache_shardings = KVCache.shardings(mesh)
  cache = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
    jax.eval_shape(lambda: KVCache.init(cfg, batch, 2 * length)),
    cache_shardings,
  )

  def forward(state, tokens, positions, cache):
    with sharding.use_rules(mesh):
      return nnx.merge(graphdef, state)(tokens, positions, cache=cache)

  lowered = jax.jit(forward, out_shardings=(None, cache_shardings)).lower(state, tokens, tokens, cache)
  if preset == "tiny_qwen3_moe":
    assert "ragged_all_to_all" in lowered.as_text() and "tpu_custom_call" in lowered.as_text()
  compiled = lowered.compile()
  assert compiled.memory_analysis() is not None
  logits_aval, cache_aval = compiled.out_info
  assert logits_aval.shape == (batch, length, cfg.vocab_size) and logits_aval.dtype == jnp.float32
  assert cache_aval.k.shape == cache.k.shape
