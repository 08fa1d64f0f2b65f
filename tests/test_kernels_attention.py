"""Splash attention (Pallas interpreter on CPU) against a brute-force reference and the XLA path."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax import sharding
from ssd_jax.kernels import attention
from ssd_jax.model import ModelConfig, Transformer, presets
from ssd_jax.model.layers import dot_product_attention
from ssd_jax.model.transformer import segment_mask

BATCH, LENGTH, HEADS, KV_HEADS, HEAD_DIM = 4, 200, 4, 2, 32  # 200 is not a multiple of 128: padded.


def _packed_segments(batch: int, length: int, seed: int = 0) -> np.ndarray:
  """Rows of 1-3 packed segments followed by padding (id 0); row 0 is one full-length segment."""
  rng = np.random.default_rng(seed)
  seg = np.zeros((batch, length), np.int32)
  seg[0] = 1
  for row in range(1, batch):
    cuts = np.sort(rng.choice(np.arange(10, length - 10), size=3, replace=False))
    for i, (start, stop) in enumerate(zip([0, *cuts[:-1]], cuts)):
      seg[row, start:stop] = i + 1
  return seg


def _qkv(seed: int = 0, batch: int = BATCH):
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(batch, LENGTH, HEADS, HEAD_DIM)).astype(np.float32)
  k = rng.normal(size=(batch, LENGTH, KV_HEADS, HEAD_DIM)).astype(np.float32)
  v = rng.normal(size=(batch, LENGTH, KV_HEADS, HEAD_DIM)).astype(np.float32)
  return q, k, v


def _brute_force(q, k, v, seg):
  """Per row, per head loops in float64: softmax over earlier keys of the same non-zero segment."""
  b, t, h, d = q.shape
  group = h // k.shape[2]
  out = np.zeros(q.shape, np.float64)
  for row in range(b):
    for head in range(h):
      for i in range(t):
        keys = [j for j in range(i + 1) if seg[row, j] == seg[row, i] != 0]
        if not keys:
          continue
        scores = k[row, keys, head // group].astype(np.float64) @ q[row, i, head] / np.sqrt(d)
        p = np.exp(scores - scores.max())
        out[row, i, head] = (p / p.sum()) @ v[row, keys, head // group]
  return out


def test_splash_matches_brute_force_on_packed_rows():
  q, k, v = _qkv()
  seg = _packed_segments(BATCH, LENGTH)
  out = attention.splash_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(seg), block_size=128)
  assert out.shape == q.shape and out.dtype == jnp.float32
  real = seg != 0
  np.testing.assert_allclose(np.asarray(out)[real], _brute_force(q, k, v, seg)[real], atol=2e-5)


def _xla_reference(q, k, v, seg):
  return dot_product_attention(q, k, v, segment_mask(seg))


def test_splash_gradients_match_xla_attention():
  q, k, v = (jnp.asarray(x) for x in _qkv(seed=1, batch=1))
  seg = jnp.asarray(_packed_segments(2, LENGTH, seed=1)[1:])  # One row: packed segments, then padding.
  weights = jnp.asarray(np.random.default_rng(2).normal(size=q.shape), jnp.float32) * (seg != 0)[..., None, None]

  def loss(fn, q, k, v):
    return jnp.sum(fn(q, k, v, seg) * weights)  # Padding outputs carry no loss, as in training.

  splash = functools.partial(attention.splash_attention, block_size=128)
  got = jax.grad(functools.partial(loss, splash), argnums=(0, 1, 2))(q, k, v)
  want = jax.grad(functools.partial(loss, _xla_reference), argnums=(0, 1, 2))(q, k, v)
  for name, g, w in zip("qkv", got, want):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=5e-5, err_msg=f"d{name}")


@pytest.mark.parametrize("mesh_shape,batch", [({"fsdp": 4, "tensor": 2}, 4), ({"data": 2, "fsdp": 4}, 2)])
def test_sharded_splash_equals_unsharded(mesh_shape, batch):
  """Rows over the batch axes and heads over 'tensor'; a batch that does not divide is replicated."""
  q, k, v = (jnp.asarray(x) for x in _qkv(seed=3, batch=batch))
  seg = jnp.asarray(_packed_segments(batch, LENGTH, seed=3))
  want = attention.splash_attention(q, k, v, seg)
  mesh = sharding.make_mesh(mesh_shape)

  @jax.jit
  def sharded(q, k, v, seg):
    with sharding.use_rules(mesh):
      return attention.splash_attention(q, k, v, seg)

  np.testing.assert_allclose(np.asarray(sharded(q, k, v, seg)), np.asarray(want), atol=1e-6)


def test_splash_refuses_a_sharded_sequence():
  q, k, v = (jnp.asarray(x) for x in _qkv(batch=2))
  rules = (("batch", "fsdp"), ("length", "data")) + sharding.DEFAULT_RULES  # First rule for a name wins.
  with sharding.use_rules(sharding.make_mesh({"data": 2, "fsdp": 4}), rules):
    with pytest.raises(ValueError, match="'length'"):
      attention.splash_attention(q, k, v, jnp.ones((2, LENGTH), jnp.int32))
    assert attention.resolve_attention_impl("splash") == "splash"
    assert attention.resolve_attention_impl("auto") == "xla"


def test_bad_inputs_are_named():
  q, k, v = (jnp.asarray(x) for x in _qkv(batch=1))
  with pytest.raises(ValueError, match="segment_ids"):
    attention.splash_attention(q, k, v, jnp.ones((1, LENGTH + 1), jnp.int32))
  with pytest.raises(ValueError, match="kv_heads"):
    attention.splash_attention(q, k[:, :-1], v[:, :-1], jnp.ones((1, LENGTH), jnp.int32))
  with pytest.raises(ValueError, match="multiple of 128"):
    attention.padded_length_and_block(LENGTH, 100)
  with pytest.raises(ValueError, match="attention"):
    attention.resolve_attention_impl("flash")
  with pytest.raises(ValueError, match="ModelConfig.attention"):
    presets.get("tiny_qwen3", attention="flash")


@pytest.mark.parametrize(
  "length,block,want",
  [
    (7, 512, (128, 128)),
    (200, 512, (256, 256)),
    (1000, 512, (1024, 512)),
    (8192, 512, (8192, 512)),
    (640, 256, (768, 256)),
  ],
)
def test_padded_length_and_block(length, block, want):
  assert attention.padded_length_and_block(length, block) == want


def test_auto_is_xla_on_cpu():
  assert jax.default_backend() == "cpu"
  assert attention.resolve_attention_impl("auto") == "xla"
  with sharding.use_rules(sharding.make_mesh({"fsdp": 8})):
    assert attention.resolve_attention_impl("auto") == "xla"
  assert attention.resolve_attention_impl("xla") == "xla"
  assert ModelConfig.__dataclass_fields__["attention"].default == "auto"


def test_model_with_splash_matches_model_with_xla():
  cfg = presets.get("tiny_llama3", dtype="float32", param_dtype="float32", num_layers=1)
  xla_model = Transformer(cfg.replace(attention="xla"), rngs=nnx.Rngs(0))
  splash_model = Transformer(cfg.replace(attention="splash"), rngs=nnx.Rngs(0))
  length = 120  # One kernel block: the model's wiring is under test here, the kernel above.
  seg = _packed_segments(2, length, seed=4)
  tokens = jnp.asarray(np.random.default_rng(4).integers(0, cfg.vocab_size, seg.shape), jnp.int32)
  positions = jnp.asarray(np.tile(np.arange(length, dtype=np.int32), (2, 1)))
  want, _ = xla_model(tokens, positions, segment_ids=jnp.asarray(seg))
  got, _ = splash_model(tokens, positions, segment_ids=jnp.asarray(seg))
  real = seg != 0
  np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], atol=1e-5)
