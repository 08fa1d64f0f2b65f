"""The SFT step against full-logit references: loss value, gradient, accumulation, sharding.

Clipping is part of the optimizer chain and is checked in test_train_optimizer.

Most tests use a "linear" AdamW (b1 = b2 = 0, eps >> |g|), whose update is -lr * g / (|g| + eps) ~
-g / 100: parameters then show gradient differences directly instead of Adam's near-sign update, which
amplifies summation-order noise in entries with tiny gradients. Steps are cached so each compiles once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from train_fixtures import copy_tree, make_batch, tiny_model_state

from ssd_jax import sharding
from ssd_jax.train.gradient_step import split_micro_batches
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer, weight_decay_mask
from ssd_jax.train.sft_step import make_sft_step
from ssd_jax.train.train_state import init_train_state

CHUNK = 24  # Does not divide batch * length = 64: exercises the padded last chunk.
LINEAR_LR, LINEAR_EPS, DECAY = 100.0, 1e4, 1e-3  # lr * decay = 0.1 per step.


@functools.cache
def _step(grad_accum_steps=1, mesh_shape=None):
  optimizer = make_optimizer(
    OptimizerConfig(
      learning_rate=LINEAR_LR,
      end_learning_rate=LINEAR_LR,
      warmup_steps=0,
      total_steps=10,
      b1=0.0,
      b2=0.0,
      eps=LINEAR_EPS,
      weight_decay=DECAY,
      grad_clip_norm=None,
      grad_accum_steps=grad_accum_steps,
    )
  )
  graphdef, _ = tiny_model_state()
  mesh = None if mesh_shape is None else sharding.make_mesh(dict(mesh_shape), jax.devices()[:8])
  return make_sft_step(graphdef, optimizer, chunk_size=CHUNK, mesh=mesh)


def _run(step, batches):
  params = copy_tree(tiny_model_state()[1])
  if step.mesh is not None:
    params = sharding.shard_state(params, step.mesh)
  state = init_train_state(params, step.optimizer)
  history = []
  for batch in batches:
    if step.mesh is not None:
      batch = step.place_batch(batch)
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  return state, history


@jax.jit
def _reference_loss_and_grads(params, batch):
  """Masked mean CE from the model's full [B, T, V] logits, and its gradient."""
  graphdef, _ = tiny_model_state()

  def loss(params):
    logits, _ = nnx.merge(graphdef, params)(batch["tokens"], batch["positions"], segment_ids=batch["segment_ids"])
    logprobs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logprobs, batch["targets"][..., None], axis=-1)[..., 0]
    mask = batch["loss_mask"].astype(jnp.float32)
    return -(picked * mask).sum() / mask.sum()

  return jax.value_and_grad(loss)(params)


def _decay_mask(params):
  return jax.tree.map(float, weight_decay_mask(params))


def _norm(tree):
  return np.sqrt(sum(float((np.asarray(x, np.float64) ** 2).sum()) for x in jax.tree.leaves(tree)))


def test_loss_grad_norm_and_update_match_full_logit_reference():
  params = tiny_model_state()[1]
  batch = make_batch(0)
  loss, grads = _reference_loss_and_grads(params, batch)
  state, (metrics,) = _run(_step(), [batch])
  assert metrics["loss"] == pytest.approx(float(loss), rel=1e-5)
  assert metrics["tokens"] == batch["loss_mask"].sum()
  assert metrics["grad_norm"] == pytest.approx(_norm(grads), rel=1e-4)
  assert metrics["learning_rate"] == LINEAR_LR
  assert int(state.step) == 1
  # Linear AdamW: p' = p - lr * (g / (|g| + eps) + wd * p) for matrices, no decay for norm scales.
  expected = jax.tree.map(
    lambda p, g, decay: p - LINEAR_LR * (g / (np.abs(g) + LINEAR_EPS) + DECAY * p * decay),
    params,
    grads,
    _decay_mask(params),
  )
  for new, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(new), np.asarray(want), rtol=1e-4, atol=1e-7)


def test_two_micro_batches_equal_one_big_batch():
  batches = [make_batch(1), make_batch(2)]
  big_state, big = _run(_step(1), batches)
  acc_state, acc = _run(_step(2), batches)
  for key in ("loss", "tokens", "grad_norm", "learning_rate"):
    np.testing.assert_allclose([m[key] for m in acc], [m[key] for m in big], rtol=2e-6)
  for a, b in zip(jax.tree.leaves(acc_state), jax.tree.leaves(big_state), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  assert int(acc_state.step) == 2


def test_micro_batches_take_strided_rows():
  batch = {"tokens": np.arange(12).reshape(6, 2)}
  micro = split_micro_batches(batch, 3)["tokens"]
  np.testing.assert_array_equal(micro[1], [[2, 3], [8, 9]])


def test_step_on_eight_device_mesh_equals_single_device():
  batches = [make_batch(3), make_batch(4)]
  single_state, single = _run(_step(2), batches)
  mesh_step = _step(2, mesh_shape=(("data", 2), ("fsdp", 2), ("tensor", 2)))
  state, sharded = _run(mesh_step, batches)
  for key in ("loss", "tokens", "grad_norm"):
    np.testing.assert_allclose([m[key] for m in sharded], [m[key] for m in single], rtol=1e-5)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(single_state), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
  specs = [x.sharding.spec for x in jax.tree.leaves(state.params)]
  assert any(spec != jax.sharding.PartitionSpec() for spec in specs)
  assert all(x.sharding.mesh == mesh_step.mesh for x in jax.tree.leaves(state))


def test_bad_batches_are_rejected_with_clear_errors():
  step = _step(3)
  state = init_train_state(copy_tree(tiny_model_state()[1]), step.optimizer)
  batch = make_batch(0)
  with pytest.raises(ValueError, match="grad_accum_steps=3"):
    step(state, batch)
  with pytest.raises(KeyError, match="loss_mask"):
    step(state, {k: v for k, v in batch.items() if k != "loss_mask"})
  with pytest.raises(ValueError, match="batch, length"):
    step(state, {k: v[:, :, None] for k, v in batch.items()})
