"""Config validation, published preset sizes, RoPE scaling and remat policies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax.model import ModelConfig, Transformer, presets
from ssd_jax.model.layers import rope_inverse_frequencies


@pytest.mark.parametrize(
  "name,params",
  [
    ("llama3p1_8b", 8_030_261_248),
    ("llama3p2_1b", 1_235_814_400),
    ("qwen3_8b", 8_190_735_360),
    ("qwen3_4b", 4_022_468_096),
    ("qwen3_0p6b", 596_049_920),
    ("qwen3_30b_a3b", 30_532_122_624),
  ],
)
def test_presets_match_published_parameter_counts(name, params):
  cfg = presets.get(name)
  assert cfg.num_params == params
  assert cfg.vocab_size == (151_936 if name.startswith("qwen3") else 128_256)


def test_qwen3_30b_a3b_active_parameters():
  assert presets.get("qwen3_30b_a3b").num_active_params == 3_353_032_704  # "3.3B activated".


@pytest.mark.parametrize(
  "preset,overrides",
  [("tiny_llama3", {}), ("tiny_qwen3_moe", {}), ("tiny_qwen3_moe", {"num_layers": 3, "mlp_only_layers": (1,)})],
)
def test_tiny_preset_param_tree_matches_num_params(preset, overrides):
  cfg = presets.get(preset, **overrides)
  state = nnx.state(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0))))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state)) == cfg.num_params


def test_invalid_configs_name_the_field():
  base = presets.get("tiny_qwen3")
  with pytest.raises(ValueError, match="num_kv_heads=3"):
    base.replace(num_kv_heads=3)
  with pytest.raises(ValueError, match="remat"):
    base.replace(remat="sometimes")
  with pytest.raises(ValueError, match="hidden_size"):
    base.replace(hidden_size=0)
  with pytest.raises(ValueError, match="dtype='floaty'"):
    base.replace(dtype="floaty")
  with pytest.raises(ValueError, match="Unknown model preset 'qwen9'"):
    presets.get("qwen9")


def test_invalid_moe_configs_name_the_field():
  moe = presets.get("tiny_qwen3_moe")
  with pytest.raises(ValueError, match="num_experts_per_tok must be in"):
    moe.replace(num_experts_per_tok=9)
  with pytest.raises(ValueError, match="moe_intermediate_size"):
    moe.replace(moe_intermediate_size=0)
  with pytest.raises(ValueError, match="mlp_only_layers has indices outside"):
    moe.replace(mlp_only_layers=[2])
  with pytest.raises(ValueError, match="moe_matmul"):
    moe.replace(moe_matmul="loop")
  with pytest.raises(ValueError, match="scan_layers needs every layer alike"):
    moe.replace(num_layers=4, decoder_sparse_step=2, scan_layers=True)
  mixed = moe.replace(num_layers=4, decoder_sparse_step=2, mlp_only_layers=[3])
  assert [mixed.is_moe_layer(i) for i in range(4)] == [False, True, False, False]


def test_llama3_rope_scaling_against_formula():
  cfg = presets.get("llama3p1_8b")
  scaled = rope_inverse_frequencies(cfg)
  plain = rope_inverse_frequencies(cfg.replace(rope_scaling=None))
  wavelen = 2 * np.pi / plain
  high = wavelen < 8192 / 4  # Short wavelengths are untouched.
  low = wavelen > 8192 / 1  # Long ones are divided by the factor.
  np.testing.assert_array_equal(scaled[high], plain[high])
  np.testing.assert_allclose(scaled[low], plain[low] / 8, rtol=1e-6)
  mid = ~high & ~low
  assert mid.any() and np.all((scaled[mid] < plain[mid]) & (scaled[mid] > plain[mid] / 8))


@pytest.mark.parametrize("policy", ["full", "dots"])
def test_remat_gradients_equal_plain(policy):
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  remat_graphdef, _ = nnx.split(Transformer(cfg.replace(remat=policy), rngs=nnx.Rngs(0)))
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 512, (2, 8)), jnp.int32)
  positions = jnp.broadcast_to(jnp.arange(8, dtype=jnp.int32), (2, 8))

  def loss(state, graphdef):
    logits, _ = nnx.merge(graphdef, state)(tokens, positions)
    return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

  def jaxpr_text(graphdef):
    return str(jax.make_jaxpr(loss, static_argnums=1)(state, graphdef))

  assert "remat" in jaxpr_text(remat_graphdef) and "remat" not in jaxpr_text(graphdef)
  grad = jax.jit(jax.grad(loss), static_argnums=1)
  plain, remat = grad(state, graphdef), grad(state, remat_graphdef)
  for got, want in zip(jax.tree.leaves(remat), jax.tree.leaves(plain)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6, rtol=1e-5)


def test_bfloat16_default_keeps_float32_logits():
  cfg = presets.get("tiny_llama3")
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  assert model.layers[0].mlp.up_proj[...].dtype == jnp.bfloat16
  logits, _ = model(jnp.zeros((1, 4), jnp.int32), jnp.arange(4, dtype=jnp.int32)[None])
  assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
  assert isinstance(cfg, ModelConfig) and cfg.compute_dtype == jnp.bfloat16
