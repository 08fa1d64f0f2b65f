"""The teacher-student step: loss against a numpy referee, teacher gets no gradient, EMA, sharding."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax import sharding
from ssd_jax.train.distill_batch import pack_distill_batch
from ssd_jax.train.distill_step import distill_loss, make_behaviour_logprobs, make_distill_step
from ssd_jax.train.distillation_loss import DivergenceConfig
from ssd_jax.train.ema import EmaUpdater, ema_update
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.train_state import init_train_state
from tests.train_fixtures import copy_tree, tiny_config, tiny_model_state

RESPONSE_WIDTH = 6
JSD = DivergenceConfig(kind="jsd", beta=0.5, form="full", temperature=1.1)


def _rollouts(seed=0, batch=4):
  rng = np.random.default_rng(seed)
  vocab = tiny_config().vocab_size
  student = [list(rng.integers(3, vocab, rng.integers(2, 6))) for _ in range(batch)]
  teacher = [s + list(rng.integers(3, vocab, rng.integers(1, 5))) for s in student]
  responses = [list(rng.integers(3, vocab, rng.integers(1, RESPONSE_WIDTH + 1))) for _ in range(batch)]
  logprobs = [list(-rng.uniform(0.1, 3.0, len(r))) for r in responses]
  return student, teacher, responses, logprobs


def _batch(seed=0, batch=4, weights=None):
  student, teacher, responses, logprobs = _rollouts(seed, batch)
  return pack_distill_batch(
    student,
    teacher,
    responses,
    prompt_width=6,
    teacher_prompt_width=10,
    response_width=RESPONSE_WIDTH,
    behaviour_logprobs=logprobs,
    row_weights=weights,
  )


def _teacher_params():
  return tiny_model_state(seed=1)[1]


def _numpy_jsd(student_logits, teacher_logits, beta, temperature):
  def log_softmax(x):
    x = x.astype(np.float64) / temperature
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))

  ls, lt = log_softmax(student_logits), log_softmax(teacher_logits)
  ps, pt = np.exp(ls), np.exp(lt)
  m = beta * pt + (1 - beta) * ps
  return beta * (pt * (lt - np.log(m))).sum(-1) + (1 - beta) * (ps * (ls - np.log(m))).sum(-1)


def test_loss_matches_numpy_on_unpadded_sequences():
  graphdef, params = tiny_model_state()
  teacher_params = _teacher_params()
  student, teacher, responses, _ = _rollouts()
  loss_sum, count, _ = jax.jit(lambda p, t, b: distill_loss(p, t, graphdef, b, divergence=JSD))(
    params, teacher_params, _batch()
  )

  # Referee layout: each sequence starts at column 0 (no left padding), trailing zeros never attended to.
  @jax.jit
  def logits_fn(p, ids):
    return nnx.merge(graphdef, p)(ids, jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape))[0]

  def right_padded(prompts):
    ids = np.zeros((len(prompts), 16), np.int32)
    for i, (prompt, r) in enumerate(zip(prompts, responses)):
      ids[i, : len(prompt) + len(r)] = prompt + r
    return jnp.asarray(ids)

  student_logits = np.asarray(logits_fn(params, right_padded(student)))
  teacher_logits = np.asarray(logits_fn(teacher_params, right_padded(teacher)))
  total = 0.0
  for i, (s, t, r) in enumerate(zip(student, teacher, responses)):
    total += _numpy_jsd(
      student_logits[i, len(s) - 1 : len(s) - 1 + len(r)], teacher_logits[i, len(t) - 1 : len(t) - 1 + len(r)], 0.5, 1.1
    ).sum()
  assert float(count) == sum(len(r) for r in responses)
  np.testing.assert_allclose(float(loss_sum), total, rtol=1e-4)


def test_behaviour_logprobs_are_the_sampling_students_and_start_the_weights_at_one():
  graphdef, params = tiny_model_state()
  student, _, responses, _ = _rollouts()
  batch = {key: jnp.asarray(value) for key, value in _batch().items()}
  clipped = DivergenceConfig(kind="jsd", beta=0.5, form="chunked", temperature=1.1, is_clip=2.0, chunk_size=4)
  fresh = make_behaviour_logprobs(graphdef, clipped)(params, batch)
  logprob = np.asarray(fresh["behaviour_logprob"])
  assert set(fresh) == set(batch)

  # Referee: the student's own logits, each sequence from column 0, log-softmax at the loss temperature.
  ids = np.zeros((len(student), 16), np.int32)
  for i, (prompt, r) in enumerate(zip(student, responses)):
    ids[i, : len(prompt) + len(r)] = prompt + r
  ids = jnp.asarray(ids)
  logits = np.asarray(nnx.merge(graphdef, params)(ids, jnp.broadcast_to(jnp.arange(16), ids.shape))[0], np.float64)
  for i, (prompt, r) in enumerate(zip(student, responses)):
    x = logits[i, len(prompt) - 1 : len(prompt) - 1 + len(r)] / 1.1
    x = x - x.max(-1, keepdims=True)
    expected = x[np.arange(len(r)), r] - np.log(np.exp(x).sum(-1))
    np.testing.assert_allclose(logprob[i, : len(r)], expected, rtol=1e-5, atol=1e-5)
  # So on the first update every importance weight is 1: the loss is the unweighted one.
  unweighted = dataclasses.replace(clipped, is_clip=None)
  losses = [
    jax.jit(lambda p, b, d=d: distill_loss(p, p, graphdef, b, divergence=d)[0])(params, fresh)
    for d in (clipped, unweighted)
  ]
  np.testing.assert_allclose(float(losses[0]), float(losses[1]), rtol=1e-6)
  # Micro-batched and sharded forwards give the same log-probs.
  micro = make_behaviour_logprobs(graphdef, clipped, num_micro=2)(params, batch)["behaviour_logprob"]
  np.testing.assert_allclose(np.asarray(micro), logprob, rtol=1e-6, atol=1e-6)
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  step = make_distill_step(graphdef, make_optimizer(OptimizerConfig(1e-3, 1e-3, 0, 1)), clipped, mesh=mesh)
  sharded = make_behaviour_logprobs(graphdef, clipped, num_micro=2, mesh=mesh)(
    sharding.shard_state(copy_tree(params), mesh), step.place_batch(_batch())
  )["behaviour_logprob"]
  np.testing.assert_allclose(np.asarray(sharded), logprob, rtol=2e-5, atol=2e-5)


def test_rows_without_teacher_are_not_scored():
  graphdef, params = tiny_model_state()
  full = jax.jit(lambda p, t, b: distill_loss(p, t, graphdef, b, divergence=JSD))(
    params, _teacher_params(), _batch(weights=[1, 0, 1, 0])
  )
  _, _, responses, _ = _rollouts()
  assert float(full[1]) == len(responses[0]) + len(responses[2])


def test_teacher_gets_zero_gradient_and_a_live_teacher_adds_none():
  """d/d(teacher) is zero; a live teacher (same params) gives the gradient of a constant-teacher loss."""
  graphdef, params = tiny_model_state()
  batch = _batch()
  two_sets = jax.jit(jax.grad(lambda s, t, b: distill_loss(s, t, graphdef, b, divergence=JSD)[0], argnums=(0, 1)))
  student_grads, teacher_grads = two_sets(params, copy_tree(params), batch)
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(teacher_grads))
  assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(student_grads))) > 0
  live = jax.jit(jax.grad(lambda p, b: distill_loss(p, p, graphdef, b, divergence=JSD)[0]))(params, batch)
  for a, b in zip(jax.tree.leaves(live), jax.tree.leaves(student_grads)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-8)


def test_ema_update_is_exact():
  rng = np.random.default_rng(0)
  teacher = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(5,)).astype(np.float32)}
  student = {"a": rng.normal(size=(3, 4)).astype(np.float32), "b": rng.normal(size=(5,)).astype(np.float32)}
  out = ema_update(jax.tree.map(jnp.asarray, teacher), jax.tree.map(jnp.asarray, student), 0.05)
  for key in teacher:
    expected = teacher[key] + np.float32(0.05) * (student[key] - teacher[key])
    np.testing.assert_allclose(np.asarray(out[key]), expected, rtol=0, atol=1e-7)
  twice = EmaUpdater(0.25)
  t = jax.tree.map(jnp.asarray, teacher)
  for _ in range(2):
    t = twice(t, jax.tree.map(jnp.asarray, student))
  expected = student["a"] + 0.75**2 * (teacher["a"] - student["a"])
  np.testing.assert_allclose(np.asarray(t["a"]), expected, rtol=1e-6, atol=1e-6)
  assert np.array_equal(np.asarray(ema_update(t, student, 0.0)["b"]), np.asarray(t["b"]))
  with pytest.raises(ValueError, match="EMA rate"):
    ema_update(teacher, student, 1.5)


@functools.cache
def _run_steps(mesh_shape, teacher_mode, steps=2, grad_accum=1):
  mesh = None if mesh_shape is None else sharding.make_mesh(dict(mesh_shape))
  graphdef, params = tiny_model_state()
  optimizer = make_optimizer(
    OptimizerConfig(
      learning_rate=1e-2, end_learning_rate=1e-3, warmup_steps=0, total_steps=4, grad_accum_steps=grad_accum
    )
  )
  divergence = DivergenceConfig(kind="jsd", beta=0.5, form="topk", top_k=16, temperature=1.0, is_clip=2.0, chunk_size=8)
  params, teacher = copy_tree(params), copy_tree(_teacher_params())
  if mesh is not None:
    params = sharding.shard_state(params, mesh)
    teacher = sharding.shard_state(teacher, mesh)
  state = init_train_state(params, optimizer)
  step = make_distill_step(graphdef, optimizer, divergence, mesh=mesh)
  losses = []
  for i in range(steps):
    batch = step.place_batch(_batch(seed=i))
    state, metrics = step(state, batch, None if teacher_mode == "live" else teacher)
    losses.append(float(metrics["loss"]))
  return losses, jax.tree.map(np.asarray, state.params)


def test_sharded_step_equals_single_device():
  single_losses, single_params = _run_steps(None, "frozen")
  sharded_losses, sharded_params = _run_steps((("data", 2), ("fsdp", 2), ("tensor", 2)), "frozen")
  np.testing.assert_allclose(sharded_losses, single_losses, rtol=2e-5)
  for a, b in zip(jax.tree.leaves(sharded_params), jax.tree.leaves(single_params)):
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
  assert single_losses[1] != single_losses[0]


def test_grad_accumulation_matches_one_batch():
  one_losses, one_params = _run_steps(None, "frozen")
  acc_losses, acc_params = _run_steps(None, "frozen", grad_accum=2)
  np.testing.assert_allclose(acc_losses, one_losses, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(acc_params), jax.tree.leaves(one_params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_a_batch_with_no_scored_tokens_leaves_the_weights_alone():
  # Momentum from a real step and weight decay (0.1 by default) would move them on a zero gradient.
  graphdef, params = tiny_model_state()
  optimizer = make_optimizer(OptimizerConfig(1e-2, 1e-2, 0, 4))
  step = make_distill_step(graphdef, optimizer, JSD)
  state, _ = step(init_train_state(copy_tree(params), optimizer), step.place_batch(_batch()), _teacher_params())
  before = jax.tree.map(np.asarray, state.params)
  state, metrics = step(state, step.place_batch(_batch(seed=1, weights=[0, 0, 0, 0])), _teacher_params())
  assert float(metrics["tokens"]) == 0 and int(state.step) == 2
  for a, b in zip(jax.tree.leaves(jax.tree.map(np.asarray, state.params)), jax.tree.leaves(before)):
    np.testing.assert_array_equal(a, b)
  state, metrics = step(state, step.place_batch(_batch(seed=2)), _teacher_params())
  assert float(metrics["tokens"]) > 0
  assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(before)))
