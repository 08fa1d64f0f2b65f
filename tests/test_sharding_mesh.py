"""Mesh construction, logical rules, and sharded == unsharded model results on 8 CPU devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssd_jax import sharding
from ssd_jax.model import KVCache, Transformer, hf, presets, sharded_init

MESH_SHAPE = {"data": 2, "fsdp": 2, "tensor": 2}


def test_make_mesh_absorbs_remaining_devices():
  mesh = sharding.make_mesh({"fsdp": -1, "tensor": 2})
  assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "expert": 1, "tensor": 2}
  with pytest.raises(ValueError, match="multiplies to 12, but there are 8 devices"):
    sharding.make_mesh({"data": 3, "tensor": 4})
  with pytest.raises(ValueError, match="Unknown mesh axes"):
    sharding.make_mesh({"model": 8})


def test_logical_to_spec_uses_each_mesh_axis_once():
  assert sharding.logical_to_spec(("embed", "mlp")) == P("fsdp", "tensor")
  assert sharding.logical_to_spec(("batch", "length", "embed")) == P(("data", "fsdp", "expert"), None, None)
  with pytest.raises(ValueError, match="'nonsense' has no sharding rule"):
    sharding.logical_to_spec(("nonsense",))


def test_validate_mesh_names_the_indivisible_field():
  cfg = presets.get("qwen3_8b")  # 8 kv heads.
  sharding.validate_mesh_for_model({"fsdp": 4, "tensor": 8}, cfg)
  with pytest.raises(ValueError, match="num_kv_heads=8"):
    sharding.validate_mesh_for_model({"fsdp": 1, "tensor": 16}, cfg)
  with pytest.raises(ValueError, match="num_heads=4"):
    sharding.validate_mesh_for_model({"tensor": 8}, presets.get("tiny_qwen3"))


def _forward(graphdef, state, tokens, positions, segment_ids):
  return nnx.merge(graphdef, state)(tokens, positions, segment_ids=segment_ids)[0]


def test_sharded_forward_and_grad_equal_single_device():
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  mesh = sharding.make_mesh(MESH_SHAPE)
  sharded = sharded_init.create_sharded_model(cfg, mesh, seed=3)
  reference = Transformer(cfg, rngs=nnx.Rngs(3))
  q_proj = sharded.layers[0].attn.q_proj[...]
  assert q_proj.sharding.spec == P("fsdp", "tensor", None)
  # Same initialisation up to float rounding of jit vs eager; the comparison below uses identical weights.
  np.testing.assert_allclose(np.asarray(q_proj), np.asarray(reference.layers[0].attn.q_proj[...]), rtol=1e-6)
  nnx.update(reference, jax.device_get(nnx.state(sharded)))

  rng = np.random.default_rng(0)
  tokens = rng.integers(0, cfg.vocab_size, (8, 16)).astype(np.int32)
  positions = np.broadcast_to(np.arange(16), (8, 16)).astype(np.int32)
  segments = (np.arange(16)[None] < rng.integers(1, 17, (8, 1))).astype(np.int32)
  batch = sharding.shard_batch((tokens, positions, segments), mesh, ("batch", "length"))
  assert batch[0].sharding.spec == P(("data", "fsdp", "expert"), None)

  def loss(state, *args):
    return jnp.mean(_forward(graphdef, state, *args) ** 2)

  graphdef, state = nnx.split(sharded)
  with sharding.use_rules(mesh):
    logits = jax.jit(_forward, static_argnums=0)(graphdef, state, *batch)
    grads = jax.jit(jax.grad(loss))(state, *batch)
  ref_state = jax.device_put(nnx.state(reference), jax.devices()[0])
  ref_logits = jax.jit(_forward, static_argnums=0)(graphdef, ref_state, tokens, positions, segments)
  ref_grads = jax.jit(jax.grad(loss))(ref_state, tokens, positions, segments)
  assert logits.sharding.spec[0] == ("data", "fsdp")  # XLA drops the size-1 expert axis.
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref_logits), atol=1e-5, rtol=0)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, rtol=1e-4)


def test_sharded_load_and_cached_decode(tmp_path):
  cfg = presets.get("tiny_llama3", dtype="float32", param_dtype="float32")
  model = Transformer(cfg, rngs=nnx.Rngs(5))
  hf.save_hf(model, cfg, str(tmp_path))
  mesh = sharding.make_mesh(MESH_SHAPE)
  loaded, _ = hf.load_hf(str(tmp_path), mesh=mesh, dtype="float32", param_dtype="float32")
  o_proj = loaded.layers[1].attn.o_proj[...]
  assert o_proj.sharding == NamedSharding(mesh, P("tensor", None, "fsdp"))
  np.testing.assert_array_equal(np.asarray(o_proj), np.asarray(model.layers[1].attn.o_proj[...]))

  tokens = jnp.asarray(np.random.default_rng(2).integers(0, 512, (4, 6)), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(6, dtype=jnp.int32), (4, 6))
  cache = jax.device_put(KVCache.init(cfg, 4, 8), KVCache.shardings(mesh))
  graphdef, state = nnx.split(loaded)

  @jax.jit
  def prefill(state, tokens, positions, cache):
    return nnx.merge(graphdef, state)(tokens, positions, cache=cache)

  with sharding.use_rules(mesh):
    logits, cache = prefill(state, tokens, positions, cache)
  ref, _ = model(tokens, positions)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), atol=1e-5, rtol=0)
  rows_and_heads = P(None, None, ("data", "fsdp", "expert"), "tensor")
  assert cache.k.sharding.is_equivalent_to(NamedSharding(mesh, rows_and_heads), 6)
