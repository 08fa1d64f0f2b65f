"""The MoE router load-balancing term in the SFT and teacher-student losses (student forward only)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax.model import Transformer, presets
from ssd_jax.model.router_stats import RouterStats, capture_router_stats, load_balancing_loss
from ssd_jax.train.distill_batch import pack_distill_batch
from ssd_jax.train.distill_step import distill_loss
from ssd_jax.train.distillation_loss import DivergenceConfig
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.router_loss import router_loss_sum, router_metrics
from ssd_jax.train.sft_step import make_sft_step, sft_loss
from ssd_jax.train.train_state import init_train_state

COEF = 0.25
# Compiled once per model: the MoE forward run op by op costs several times its compile.
_sft_loss = jax.jit(sft_loss, static_argnums=1, static_argnames="chunk_size")
_distill_loss = jax.jit(distill_loss, static_argnums=2, static_argnames="divergence")


def _split(coef, seed=0):
  cfg = presets.get("tiny_qwen3_moe", dtype="float32", param_dtype="float32", router_aux_loss_coef=coef)
  return nnx.split(Transformer(cfg, rngs=nnx.Rngs(seed)))


def _aux(graphdef, params, tokens, positions, segment_ids):
  with capture_router_stats() as captured:
    nnx.merge(graphdef, params).hidden(tokens, positions, segment_ids=segment_ids)
  return load_balancing_loss(captured.total())


def _sft_batch(rows=2, seed=0):
  rng = np.random.default_rng(seed)
  tokens = jnp.asarray(rng.integers(1, 512, (rows, 10)), jnp.int32)
  segment_ids = jnp.asarray((np.arange(10)[None] < rng.integers(4, 11, (rows, 1))).astype(np.int32))
  return {
    "tokens": tokens,
    "targets": jnp.roll(tokens, -1, axis=1),
    "loss_mask": segment_ids.at[:, :3].set(0),
    "segment_ids": segment_ids,
    "positions": jnp.broadcast_to(jnp.arange(10, dtype=jnp.int32), (rows, 10)),
  }


def test_sft_loss_adds_coef_times_aux_times_count():
  batch = _sft_batch()
  graphdef, params = _split(COEF)
  plain_graphdef, _ = _split(0.0)
  with_aux, count, _ = _sft_loss(params, graphdef, batch, chunk_size=4)
  without, _, _ = _sft_loss(params, plain_graphdef, batch, chunk_size=4)
  aux = _aux(graphdef, params, batch["tokens"], batch["positions"], batch["segment_ids"])
  assert float(aux) > 1.0  # top_k for perfectly balanced routing.
  np.testing.assert_allclose(float(with_aux - without), COEF * float(aux) * float(count), rtol=1e-5)
  router_grad = jax.jit(jax.grad(lambda p: sft_loss(p, graphdef, batch, chunk_size=4)[0]))(params)
  assert float(jnp.abs(router_grad["layers"][0]["mlp"]["router"].get_value()).max()) > 0


def test_distill_loss_counts_only_the_students_routing():
  rng = np.random.default_rng(1)
  student = [list(rng.integers(3, 512, n)) for n in (3, 5)]
  teacher = [s + list(rng.integers(3, 512, 3)) for s in student]
  responses = [list(rng.integers(3, 512, n)) for n in (4, 2)]
  batch = {
    k: jnp.asarray(v)
    for k, v in pack_distill_batch(
      student, teacher, responses, prompt_width=6, teacher_prompt_width=10, response_width=4
    ).items()
  }
  graphdef, params = _split(COEF)
  plain_graphdef, _ = _split(0.0)
  _, teacher_params = _split(COEF, seed=1)
  divergence = DivergenceConfig(kind="jsd", beta=0.5, form="full", temperature=1.0)
  with_aux, count, _ = _distill_loss(params, teacher_params, graphdef, batch, divergence=divergence)
  without, _, _ = _distill_loss(params, teacher_params, plain_graphdef, batch, divergence=divergence)
  aux = _aux(graphdef, params, batch["student_tokens"], batch["student_positions"], batch["student_segment_ids"])
  np.testing.assert_allclose(float(with_aux - without), COEF * float(aux) * float(count), rtol=1e-5)


def test_dense_models_add_nothing_and_log_nothing():
  assert float(router_loss_sum(None, 0.5, jnp.float32(3))) == 0.0
  assert router_metrics(None) == {}


@pytest.mark.parametrize("balanced", [True, False])
def test_router_metrics(balanced):
  load = jnp.asarray([2.0, 2.0, 2.0, 2.0] if balanced else [8.0, 0.0, 0.0, 0.0])
  stats = RouterStats(expert_tokens=load, router_probs=jnp.full(4, 1.0), tokens=jnp.float32(4))
  metrics = router_metrics(stats)
  assert float(metrics["expert_load_max_over_mean"]) == (1.0 if balanced else 4.0)
  assert float(metrics["expert_load_max_share"]) == (0.25 if balanced else 1.0)


def test_sft_step_logs_router_metrics_averaged_over_micro_batches():
  graphdef, params = _split(COEF)
  batch = _sft_batch(rows=4, seed=3)
  # Micro-batch i holds rows i, i + 2 (gradient_step.split_micro_batches).
  expected = [_sft_loss(params, graphdef, {k: v[i::2] for k, v in batch.items()}, chunk_size=4)[2] for i in (0, 1)]
  optimizer = make_optimizer(OptimizerConfig(1e-3, 1e-3, 1, 4, grad_accum_steps=2))
  _, metrics = make_sft_step(graphdef, optimizer, chunk_size=4)(init_train_state(params, optimizer), batch)
  assert set(expected[0]) == {"router_aux_loss", "expert_load_max_over_mean", "expert_load_max_share"}
  for key in expected[0]:
    np.testing.assert_allclose(float(metrics[key]), np.mean([float(e[key]) for e in expected]), rtol=1e-5)
  assert float(metrics["expert_load_max_over_mean"]) >= 1.0


def test_dense_sft_step_logs_no_router_metrics():
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  optimizer = make_optimizer(OptimizerConfig(1e-3, 1e-3, 1, 4))
  _, metrics = make_sft_step(graphdef, optimizer, chunk_size=4)(init_train_state(params, optimizer), _sft_batch())
  assert set(metrics) == {"loss", "tokens", "grad_norm", "param_norm", "learning_rate"}
