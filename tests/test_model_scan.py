"""Stacked, scanned layers (ModelConfig.scan_layers) equal the unstacked model: outputs, cache, grads, HF files."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from ssd_jax import sharding
from ssd_jax.model import KVCache, Transformer, hf, presets
from ssd_jax.model.layer_stack import stack_layers, unstack_layers

NUM_LAYERS = 3


def _pair(preset: str, **overrides):
  """(unstacked, stacked) models holding the same weights."""
  cfg = presets.get(preset, dtype="float32", param_dtype="float32", num_layers=NUM_LAYERS, **overrides)
  plain = Transformer(cfg, rngs=nnx.Rngs(0))
  stacked = Transformer(cfg.replace(scan_layers=True), rngs=nnx.Rngs(1))
  nnx.update(stacked.layers, stack_layers([nnx.state(plain.layers[i]) for i in range(NUM_LAYERS)]))
  top = {k: v for k, v in nnx.state(plain).items() if k != "layers"}
  nnx.update(stacked, top)
  return plain, stacked


def _inputs(batch=2, length=16, seed=0):
  rng = np.random.default_rng(seed)
  tokens = jnp.asarray(rng.integers(0, 512, (batch, length)), jnp.int32)
  seg = np.ones((batch, length), np.int32)
  seg[1, 6:] = 2
  seg[1, 13:] = 0
  positions = jnp.asarray(np.tile(np.arange(length, dtype=np.int32), (batch, 1)))
  return tokens, positions, jnp.asarray(seg)


def test_stacked_parameters_carry_a_layers_axis():
  _, stacked = _pair("tiny_qwen3")
  q_proj = nnx.state(stacked.layers)["attn"]["q_proj"]
  assert q_proj.shape == (NUM_LAYERS, 64, 4, 32)
  assert q_proj.get_metadata("out_sharding") == ("layers", "embed", "heads", "head_dim")
  mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
  specs = sharding.state_shardings(nnx.state(stacked), mesh)
  assert specs["layers"]["attn"]["q_proj"].get_value().spec == PartitionSpec(None, "fsdp", "tensor", None)
  back = unstack_layers(nnx.state(stacked.layers), NUM_LAYERS)
  assert back[1]["attn"]["q_proj"].get_metadata("out_sharding") == ("embed", "heads", "head_dim")


@pytest.mark.parametrize("preset", ["tiny_qwen3", "tiny_llama3"])
def test_stacked_forward_and_decode_equal_unstacked(preset):
  plain, stacked = _pair(preset)
  tokens, positions, seg = _inputs()
  want, _ = plain(tokens, positions, segment_ids=seg)
  got, _ = stacked(tokens, positions, segment_ids=seg)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)

  cache = KVCache.init(plain.cfg, 2, 24)
  valid = (seg != 0).astype(jnp.int32)  # A cache takes valid/padding marks, not packed segments.
  want, want_cache = plain(tokens, positions, segment_ids=valid, cache=cache)
  got, got_cache = stacked(tokens, positions, segment_ids=valid, cache=cache)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
  np.testing.assert_allclose(np.asarray(got_cache.k), np.asarray(want_cache.k), atol=1e-5)
  step = (tokens[:, :1], positions[:, :1] + 16)
  want, want_cache = plain(*step, cache=want_cache)
  got, got_cache = stacked(*step, cache=got_cache)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
  assert int(got_cache.index) == int(want_cache.index) == 17


def test_stacked_decode_writes_the_cache_in_place():
  """A decode step of the scanned model needs no second copy of the cache (it did when the cache was scanned over)."""
  _, stacked = _pair("tiny_qwen3")
  graphdef, state = nnx.split(stacked)
  cache = KVCache.init(stacked.cfg, 4, 4096)

  def step(state, cache, tokens):
    positions = jnp.broadcast_to(cache.index, tokens.shape)
    return nnx.merge(graphdef, state)(tokens, positions, cache=cache)[1]

  compiled = jax.jit(step, donate_argnums=1).lower(state, cache, jnp.zeros((4, 1), jnp.int32)).compile()
  cache_bytes = cache.k.nbytes + cache.v.nbytes
  # Slicing every layer's cache out of the stack and back into a new one took 1.35x the cache in temporaries.
  assert compiled.memory_analysis().temp_size_in_bytes < cache_bytes / 8


@pytest.mark.parametrize("remat", ["none", "full", "dots"])
def test_stacked_gradients_equal_unstacked(remat):
  plain, stacked = _pair("tiny_qwen3", remat=remat)
  tokens, positions, seg = _inputs(seed=1)

  def loss(model):
    logits, _ = model(tokens, positions, segment_ids=seg)
    return jnp.sum(jax.nn.log_softmax(logits)[..., 7] * (seg != 0))

  want = nnx.grad(loss)(plain)
  got = nnx.grad(loss)(stacked)
  want_layers = stack_layers([want["layers"][i] for i in range(NUM_LAYERS)])
  for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got["layers"]), jax.tree.leaves(want_layers)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-5, err_msg=jax.tree_util.keystr(path))
  np.testing.assert_allclose(np.asarray(got["embed"].get_value()), np.asarray(want["embed"].get_value()), atol=1e-5)


@pytest.mark.parametrize("preset", ["tiny_qwen3", "tiny_llama3"])
def test_hf_files_are_the_same_for_both_layouts(tmp_path, preset):
  plain, stacked = _pair(preset)
  hf.save_hf(plain, plain.cfg, str(tmp_path / "plain"))
  hf.save_hf(stacked, stacked.cfg, str(tmp_path / "stacked"))
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

  plain_files = load_file(str(tmp_path / "plain" / "model.safetensors"))
  stacked_files = load_file(str(tmp_path / "stacked" / "model.safetensors"))
  assert sorted(plain_files) == sorted(stacked_files)
  for name, tensor in plain_files.items():
    np.testing.assert_array_equal(stacked_files[name], tensor, err_msg=name)

  mesh = sharding.make_mesh({"fsdp": 4, "tensor": 2})
  loaded, cfg = hf.load_hf(str(tmp_path / "plain"), mesh=mesh, dtype="float32", param_dtype="float32", scan_layers=True)
  assert cfg.scan_layers
  q_proj = nnx.state(loaded.layers)["attn"]["q_proj"].get_value()
  assert q_proj.sharding.spec == PartitionSpec(None, "fsdp", "tensor", None)
  np.testing.assert_array_equal(np.asarray(q_proj), np.asarray(nnx.state(stacked.layers)["attn"]["q_proj"].get_value()))
  tokens, positions, seg = _inputs(seed=2)
  want, _ = plain(tokens, positions, segment_ids=seg)
  got, _ = loaded(tokens, positions, segment_ids=seg)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
