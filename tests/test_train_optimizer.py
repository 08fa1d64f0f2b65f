"""Optimizer config validation, schedule values, weight-decay mask, and clipping against closed forms."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer, make_schedule, weight_decay_mask


def _reference_lr(step, peak, end, warmup, total):
  """Linear warm-up then cosine decay, written out independently of optax."""
  if step < warmup:
    return peak * step / warmup
  progress = min((step - warmup) / (total - warmup), 1.0)
  return end + 0.5 * (peak - end) * (1 + math.cos(math.pi * progress))


def test_schedule_matches_paper_shape_at_key_steps():
  config = OptimizerConfig(learning_rate=5e-6, end_learning_rate=1e-6, warmup_steps=250, total_steps=2500)
  schedule = make_schedule(config)
  expected = {0: 0.0, 125: 2.5e-6, 250: 5e-6, 1375: 3e-6, 2500: 1e-6, 3000: 1e-6}
  for step, value in expected.items():
    assert float(schedule(step)) == pytest.approx(value, rel=1e-5, abs=1e-12), step
  for step in (1, 100, 249, 251, 800, 2000, 2499):
    assert float(schedule(step)) == pytest.approx(_reference_lr(step, 5e-6, 1e-6, 250, 2500), rel=1e-5), step


@pytest.mark.parametrize(
  "field,value",
  [
    ("learning_rate", 0.0),
    ("end_learning_rate", 1.0),
    ("warmup_steps", 20),
    ("total_steps", 0),
    ("b1", 1.0),
    ("b2", -0.1),
    ("weight_decay", -1.0),
    ("eps", 0.0),
    ("grad_clip_norm", -1.0),
    ("grad_accum_steps", 0),
  ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
  kwargs = dict(learning_rate=1e-3, end_learning_rate=1e-4, warmup_steps=2, total_steps=10)
  kwargs[field] = value
  with pytest.raises(ValueError, match=field):
    OptimizerConfig(**kwargs)


class _Block(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(7, 4, rngs=rngs)
    self.proj = nnx.Linear(4, 4, rngs=rngs)
    self.post_norm = nnx.RMSNorm(4, rngs=rngs)
    self.layer_norm = nnx.LayerNorm(4, rngs=rngs)


def test_weight_decay_mask_skips_norms_and_biases():
  _, params = nnx.split(_Block(nnx.Rngs(0)))
  mask = nnx.to_pure_dict(weight_decay_mask(params))
  assert mask == {
    "embed": {"embedding": True},
    "proj": {"kernel": True, "bias": False},
    "post_norm": {"scale": False},
    "layer_norm": {"scale": False, "bias": False},
  }


def test_zero_gradient_update_is_pure_decoupled_decay_on_masked_params():
  config = OptimizerConfig(learning_rate=0.1, end_learning_rate=0.1, warmup_steps=0, total_steps=10, weight_decay=0.5)
  optimizer = make_optimizer(config)
  _, params = nnx.split(_Block(nnx.Rngs(0)))
  grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = optimizer.tx.update(grads, optimizer.tx.init(params), params)
  flat_params = nnx.to_pure_dict(params)
  flat_updates = nnx.to_pure_dict(updates)
  np.testing.assert_allclose(flat_updates["proj"]["kernel"], -0.1 * 0.5 * flat_params["proj"]["kernel"], rtol=1e-6)
  np.testing.assert_allclose(flat_updates["embed"]["embedding"], -0.05 * flat_params["embed"]["embedding"], rtol=1e-6)
  for leaf in (flat_updates["proj"]["bias"], flat_updates["post_norm"]["scale"]):
    np.testing.assert_array_equal(leaf, 0.0)


@pytest.mark.parametrize("clip", [None, 1.0])
def test_global_norm_clipping_scales_gradients_before_adam(clip):
  # b1 = b2 = 0 and a huge eps make Adam's update -lr * g / (|g| + eps): linear enough to see clipping.
  config = OptimizerConfig(
    learning_rate=1.0,
    end_learning_rate=1.0,
    warmup_steps=0,
    total_steps=5,
    b1=0.0,
    b2=0.0,
    eps=1e3,
    weight_decay=0.0,
    grad_clip_norm=clip,
  )
  optimizer = make_optimizer(config)
  grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}  # global norm 13
  params = jax.tree.map(jnp.zeros_like, grads)
  updates, _ = optimizer.tx.update(grads, optimizer.tx.init(params), params)
  scale = 1.0 if clip is None else clip / 13.0
  for key in grads:
    g = np.asarray(grads[key]) * scale
    np.testing.assert_allclose(updates[key], -g / (np.abs(g) + 1e3), rtol=1e-5)
