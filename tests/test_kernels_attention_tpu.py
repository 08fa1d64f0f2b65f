"""Splash attention compiled for a TPU topology (libtpu, no TPU): real Mosaic kernels in the SFT step."""

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from ssd_jax import sharding
from ssd_jax.kernels import attention
from ssd_jax.model import presets, sharded_init
from ssd_jax.train import sft_step, train_step
from ssd_jax.train.optimizer import OptimizerConfig, make_optimizer
from ssd_jax.train.train_state import TrainState, opt_state_shardings

pytestmark = pytest.mark.libtpu


def _v5e_mesh():
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

  devices = topologies.get_topology_desc("v5e:2x2", "tpu").devices
  return sharding.make_mesh({"fsdp": 2, "tensor": 2}, devices=devices)


def _compile_sft_step(cfg, mesh, batch: int, length: int):
  """AOT-compiles the sharded SFT train step (as the plan stage does) for [batch, length] inputs."""
  graphdef, params = sharded_init.abstract_state(cfg, mesh)
  optimizer = make_optimizer(
    OptimizerConfig(learning_rate=1e-5, end_learning_rate=1e-6, warmup_steps=1, total_steps=10)
  )
  opt_state = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
    jax.eval_shape(optimizer.tx.init, params),
    opt_state_shardings(optimizer, params),
  )
  state = TrainState(
    step=jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh, PartitionSpec())),
    params=params,
    opt_state=opt_state,
  )
  token_sharding = NamedSharding(mesh, sharding.logical_to_spec(train_step.BATCH_AXES))
  inputs = {
    key: jax.ShapeDtypeStruct((batch, length), jnp.int32, sharding=token_sharding) for key in sft_step.BATCH_KEYS
  }
  step = sft_step.make_sft_step(graphdef, optimizer, chunk_size=min(length, 2048), mesh=mesh)
  return step.jit_for(state).lower(state, inputs, None).compile()


def test_auto_picks_splash_when_compiling_for_tpu():
  assert jax.default_backend() == "cpu"
  with sharding.use_rules(_v5e_mesh()):
    assert attention.target_platform() == "tpu"
    assert attention.resolve_attention_impl("auto") == "splash"


@pytest.mark.slow
def test_sft_step_with_splash_compiles_for_v5e_and_needs_far_less_memory():
  mesh = _v5e_mesh()
  cfg = presets.get("tiny_qwen3", head_dim=128, remat="full")  # Lane-width heads, as in real models.
  batch, length = 2, 4096
  splash = _compile_sft_step(cfg.replace(attention="splash"), mesh, batch, length)
  assert "tpu_custom_call" in splash.as_text()  # The Mosaic kernels, not an XLA fallback.
  xla = _compile_sft_step(cfg.replace(attention="xla"), mesh, batch, length)
  assert "tpu_custom_call" not in xla.as_text()
  splash_temp = splash.memory_analysis().temp_size_in_bytes
  xla_temp = xla.memory_analysis().temp_size_in_bytes
  # XLA materialises [rows, heads, length, length] float32 scores (64 MiB per local head at 4096).
  assert xla_temp > 64 * 2**20
  assert splash_temp * 4 < xla_temp, (splash_temp, xla_temp)
