"""The SFT step against full-logit references: loss value, gradient norm, accumulation, sharding."""

import jax
import numpy as np
import pytest
from flax import nnx

from ssd_jax import sharding
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.sft_step import make_sft_step, split_micro_batches
from ssd_jax.train.train_state import init_train_state
from train_fixtures import copy_tree, make_batch, tiny_model_state

CHUNK = 24  # Does not divide batch * length = 64: exercises the padded last chunk.


def _optimizer(grad_accum_steps=1, clip=1.0):
  return make_optimizer(OptimizerConfig(learning_rate=1e-2, end_learning_rate=1e-3, warmup_steps=1,
                                        total_steps=10, grad_accum_steps=grad_accum_steps,
                                        grad_clip_norm=clip))


def _reference_loss(params, graphdef, batch):
  """Masked mean CE from the model's full [B, T, V] logits."""
  logits, _ = nnx.merge(graphdef, params)(batch["tokens"], batch["positions"],
                                         segment_ids=batch["segment_ids"])
  logprobs = jax.nn.log_softmax(logits.astype(np.float32), axis=-1)
  picked = np.take_along_axis(logprobs, batch["targets"][..., None], axis=-1)[..., 0]
  mask = batch["loss_mask"].astype(np.float32)
  return -(picked * mask).sum() / mask.sum()


def _run_steps(graphdef, params, optimizer, batches, **step_kwargs):
  step = make_sft_step(graphdef, optimizer, chunk_size=CHUNK, **step_kwargs)
  state = init_train_state(params, optimizer)
  history = []
  for batch in batches:
    state, metrics = step(state, batch)
    history.append(jax.device_get(metrics))
  return state, history


def test_loss_and_grad_norm_match_full_logit_reference():
  graphdef, params = tiny_model_state()
  batch = make_batch(0)
  reference_loss, reference_grads = jax.value_and_grad(_reference_loss)(params, graphdef, batch)
  reference_norm = np.sqrt(sum(float((np.asarray(g, np.float64) ** 2).sum())
                               for g in jax.tree.leaves(reference_grads)))
  _, (metrics,) = _run_steps(graphdef, copy_tree(params), _optimizer(), [batch])
  assert metrics["loss"] == pytest.approx(float(reference_loss), rel=1e-5)
  assert metrics["tokens"] == batch["loss_mask"].sum()
  assert metrics["grad_norm"] == pytest.approx(reference_norm, rel=1e-4)
  assert metrics["learning_rate"] == 0.0  # First warm-up step.


def test_two_micro_batches_equal_one_big_batch():
  graphdef, params = tiny_model_state()
  batches = [make_batch(1), make_batch(2)]
  big_state, big = _run_steps(graphdef, copy_tree(params), _optimizer(1), batches)
  acc_state, acc = _run_steps(graphdef, copy_tree(params), _optimizer(2), batches)
  for key in ("loss", "tokens", "grad_norm", "learning_rate"):
    np.testing.assert_allclose([m[key] for m in acc], [m[key] for m in big], rtol=2e-6)
  # Adam divides by sqrt(nu): entries with near-zero gradients amplify summation-order noise, so the
  # absolute tolerance is 1e-4 of the step size (lr = 1e-2).
  for a, b in zip(jax.tree.leaves(acc_state), jax.tree.leaves(big_state), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  assert int(acc_state.step) == 2


def test_micro_batches_take_strided_rows():
  batch = {"tokens": np.arange(12).reshape(6, 2)}
  micro = split_micro_batches(batch, 3)["tokens"]
  np.testing.assert_array_equal(micro[1], [[2, 3], [8, 9]])


def test_step_on_eight_device_mesh_equals_single_device():
  graphdef, params = tiny_model_state()
  batches = [make_batch(3), make_batch(4)]
  single_state, single = _run_steps(graphdef, copy_tree(params), _optimizer(2), batches)

  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}, devices=jax.devices()[:8])
  sharded_params = sharding.shard_state(copy_tree(params), mesh)
  step = make_sft_step(graphdef, _optimizer(2), chunk_size=CHUNK, mesh=mesh)
  state = init_train_state(sharded_params, step.optimizer)
  for i, batch in enumerate(batches):
    state, metrics = step(state, step.place_batch(batch))
    for key in ("loss", "tokens", "grad_norm"):
      assert float(metrics[key]) == pytest.approx(float(single[i][key]), rel=1e-5), key
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(single_state), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
  shardings = jax.tree.leaves(jax.tree.map(lambda x: x.sharding.spec, state.params))
  assert any(spec != jax.sharding.PartitionSpec() for spec in shardings)


def test_clipping_limits_the_update_for_huge_gradients():
  graphdef, params = tiny_model_state()
  batch = make_batch(5)
  # With b1 = b2 = 0 and a large eps, Adam's update is ~ -lr * g / eps: proportional to the clipped g.
  def one_step(clip):
    optimizer = make_optimizer(OptimizerConfig(
        learning_rate=100.0, end_learning_rate=100.0, warmup_steps=0, total_steps=2, b1=0.0, b2=0.0,
        eps=1e4, weight_decay=0.0, grad_clip_norm=clip))
    state, (metrics,) = _run_steps(graphdef, copy_tree(params), optimizer, [batch])
    delta = jax.tree.map(lambda new, old: np.asarray(new) - np.asarray(old), state.params, params)
    return metrics["grad_norm"], np.sqrt(sum((d ** 2).sum() for d in jax.tree.leaves(delta)))
  grad_norm, unclipped_size = one_step(None)
  _, clipped_size = one_step(grad_norm / 10)
  assert unclipped_size == pytest.approx(grad_norm / 100, rel=1e-3)
  assert clipped_size == pytest.approx(unclipped_size / 10, rel=1e-3)


def test_bad_batches_are_rejected_with_clear_errors():
  graphdef, params = tiny_model_state()
  optimizer = _optimizer(3)
  step = make_sft_step(graphdef, optimizer, chunk_size=CHUNK)
  state = init_train_state(params, optimizer)
  batch = make_batch(0)
  with pytest.raises(ValueError, match="grad_accum_steps=3"):
    step(state, batch)
  with pytest.raises(KeyError, match="loss_mask"):
    step(state, {k: v for k, v in batch.items() if k != "loss_mask"})
