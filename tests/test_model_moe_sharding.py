"""Mixture of experts on 8 CPU devices: expert parallelism (all-to-all dispatch) equals one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax import sharding
from ssd_jax.model import ModelConfig, Transformer, presets
from ssd_jax.model.expert_dispatch import moe_layout, routed_experts
from ssd_jax.model.router_stats import capture_router_stats, load_balancing_loss

TINY_MOE = ModelConfig(
  vocab_size=128,
  hidden_size=32,
  intermediate_size=64,
  num_layers=2,
  num_heads=4,
  num_kv_heads=2,
  head_dim=8,
  num_experts=8,
  num_experts_per_tok=2,
  moe_intermediate_size=16,
  norm_topk_prob=True,
  router_aux_loss_coef=0.01,
  dtype="float32",
  param_dtype="float32",
)


def _loss(graphdef, state, tokens, positions, segments):
  with capture_router_stats() as captured:
    logits, _ = nnx.merge(graphdef, state)(tokens, positions, segment_ids=segments)
  aux = load_balancing_loss(captured.total())
  return jnp.mean(jax.nn.log_softmax(logits)[..., 3] * segments) + TINY_MOE.router_aux_loss_coef * aux, (logits, aux)


def _batch(seed=0, batch=8, length=12):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, TINY_MOE.vocab_size, (batch, length)).astype(np.int32)
  positions = np.broadcast_to(np.arange(length), (batch, length)).astype(np.int32)
  segments = (np.arange(length)[None] < rng.integers(3, length + 1, (batch, 1))).astype(np.int32)
  return tokens, positions, segments


@pytest.mark.parametrize(
  "mesh_shape", [{"data": 2, "expert": 4}, {"fsdp": 2, "expert": 2, "tensor": 2}], ids=["data_expert", "fsdp_expert_tp"]
)
@pytest.mark.parametrize("scan", [False, True], ids=["loop", "scan"])
def test_expert_parallel_forward_and_gradients_equal_one_device(mesh_shape, scan):
  cfg = TINY_MOE.replace(scan_layers=scan)
  graphdef, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  mesh = sharding.make_mesh(mesh_shape)
  sharded_state = sharding.shard_state(state, mesh)
  gate = sharded_state["layers"]["mlp"]["gate_proj"] if scan else sharded_state["layers"][0]["mlp"]["gate_proj"]
  assert gate.get_value().sharding.spec[-3] == "expert"
  tokens, positions, segments = _batch()
  batch = sharding.shard_batch((tokens, positions, segments), mesh, ("batch", "length"))
  grad_fn = jax.jit(jax.value_and_grad(_loss, argnums=1, has_aux=True), static_argnums=0)
  with sharding.use_rules(mesh):
    (loss, (logits, aux)), grads = grad_fn(graphdef, sharded_state, *batch)
  (ref_loss, (ref_logits, ref_aux)), ref_grads = grad_fn(graphdef, state, tokens, positions, segments)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref_logits), atol=1e-5, rtol=0)
  np.testing.assert_allclose(float(aux), float(ref_aux), rtol=1e-6)
  np.testing.assert_allclose(float(loss), float(ref_loss), rtol=1e-6)
  for (path, got), want in zip(jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(ref_grads)):
    np.testing.assert_allclose(
      np.asarray(got), np.asarray(want), atol=1e-6, rtol=1e-4, err_msg=jax.tree_util.keystr(path)
    )


def test_decode_layout_runs_the_experts_without_gathering_their_weights():
  """Under `mesh.decode_weights=tensor` the expert weights are replicated over fsdp: the experts must read them
  as placed (before, they were sliced over fsdp and all-gathered back on every decode step)."""
  graphdef, state = nnx.split(Transformer(TINY_MOE, rngs=nnx.Rngs(0)))
  mesh = sharding.make_mesh({"fsdp": 2, "expert": 2, "tensor": 2})
  weight_rules = sharding.decode_weight_rules(sharding.DEFAULT_RULES, "tensor")
  decode_state = sharding.shard_state(state, mesh, weight_rules)
  tokens, positions, segments = _batch()
  forward = jax.jit(lambda s, *b: nnx.merge(graphdef, s)(*b[:2], segment_ids=b[2])[0])
  with sharding.use_rules(mesh, sharding.DEFAULT_RULES, weight_rules):
    compiled = forward.lower(decode_state, tokens, positions, segments).compile()
    logits = forward(decode_state, tokens, positions, segments)
  expert_shapes = {f"f32[{e},{d},{f}]" for e, d, f in ((4, 32, 8), (4, 8, 32), (4, 16, 8), (4, 8, 16))}
  gathers = [line for line in compiled.as_text().splitlines() if "all-gather(" in line]
  assert not [g for g in gathers if any(shape in g.split("all-gather(")[0] for shape in expert_shapes)], gathers
  want = forward(state, tokens, positions, segments)
  np.testing.assert_allclose(np.asarray(logits), np.asarray(want), atol=1e-5, rtol=0)


def _reference_experts(x, expert_index, weights, w_gate, w_up, w_down):
  """Each (token, choice) through its expert, one at a time, in float64."""
  x, w_gate, w_up, w_down = (np.asarray(a, np.float64) for a in (x, w_gate, w_up, w_down))
  out = np.zeros_like(x)
  for n, k in np.ndindex(*expert_index.shape):
    e = expert_index[n, k]
    gate, up = x[n] @ w_gate[e], x[n] @ w_up[e]
    out[n] += weights[n, k] * ((gate / (1 + np.exp(-gate)) * up) @ w_down[e])
  return out


@pytest.mark.parametrize("mesh_shape", [None, {"data": 2, "expert": 4}, {"fsdp": 2, "expert": 2, "tensor": 2}])
def test_no_token_dropped_when_every_token_picks_one_expert(mesh_shape):
  rng = np.random.default_rng(1)
  tokens, experts, top_k, d, f = 64, 8, 2, 16, 8
  x = rng.standard_normal((tokens, d)).astype(np.float32)
  w_gate, w_up = (rng.standard_normal((experts, d, f)).astype(np.float32) * 0.3 for _ in range(2))
  w_down = rng.standard_normal((experts, f, d)).astype(np.float32) * 0.3
  # Every token's first choice is expert 5 (all on one device under expert parallelism).
  expert_index = np.stack([np.full(tokens, 5), rng.integers(0, experts, tokens)], axis=1).astype(np.int32)
  weights = rng.uniform(0.1, 1.0, (tokens, top_k)).astype(np.float32)
  args = [jnp.asarray(a) for a in (x, expert_index, weights, w_gate, w_up, w_down)]
  # A fresh function per case: jit's trace cache does not see `use_rules`, so a shared one would replay the
  # one-device trace of the first case.
  dispatch = jax.jit(lambda *a: routed_experts(*a))
  if mesh_shape is None:
    out = dispatch(*args)
  else:
    mesh = sharding.make_mesh(mesh_shape)
    with sharding.use_rules(mesh):
      out = dispatch(*args)
      assert "all_to_all" in dispatch.lower(*args).as_text()  # The tokens really travel to their experts.
  want = _reference_experts(x, expert_index, weights, w_gate, w_up, w_down)
  assert np.all(np.abs(np.asarray(out)).sum(-1) > 0)
  np.testing.assert_allclose(np.asarray(out), want, atol=1e-4, rtol=1e-4)


def test_moe_layout_names_dispatch_and_kernel():
  cfg = presets.get("qwen3_30b_a3b")
  layout = moe_layout(cfg, {"fsdp": 8, "expert": 4}, sharding.DEFAULT_RULES, "tpu")
  assert layout["dispatch"] == "ragged_all_to_all" and layout["grouped_matmul"] == "megablox"
  assert layout["experts_per_device"] == 32 and layout["receive_buffer_rows_per_local_token"] == 32
  assert moe_layout(cfg, {"fsdp": 8}, sharding.DEFAULT_RULES, "cpu")["dispatch"].startswith("none")
  # tensor 4 leaves each device 768 / 4 = 192 hidden units, not whole 128-lane tiles: the kernel is tiled.
  split = moe_layout(cfg, {"fsdp": 2, "expert": 4, "tensor": 4}, sharding.DEFAULT_RULES, "tpu")
  assert split["grouped_matmul"] == "tiled"
  assert moe_layout(presets.get("qwen3_4b"), {"fsdp": 8}, sharding.DEFAULT_RULES, "tpu") == {}
