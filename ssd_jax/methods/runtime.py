"""What every stage shares: the resolved model config, the mesh and the sharding rules.

Resolved from the config before any expensive work, so that a mesh that does not fit the model fails
with a message naming the field, not deep inside a compile.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import jax
import ml_collections
from flax import nnx
from jax.sharding import Mesh

from ssd_jax import config as config_lib
from ssd_jax import sharding
from ssd_jax.model import ModelConfig, Transformer, hf, presets


def model_config_from(config: ml_collections.ConfigDict) -> ModelConfig:
  """The ModelConfig named by `config.model` (a HF directory's config.json wins over the preset)."""
  overrides = dict(
    dtype=config.model.dtype,
    param_dtype=config.model.param_dtype,
    remat=config.model.remat,
    attention=config.model.attention,
    scan_layers=config.model.scan_layers,
  )
  try:
    if config.model.hf_dir:
      path = os.path.join(config.model.hf_dir, "config.json")
      if not os.path.exists(path):
        raise config_lib.ConfigError(f"field 'model.hf_dir': no config.json in {config.model.hf_dir!r}")
      with open(path) as f:
        return hf.config_from_hf(json.load(f), **overrides)
    if config.model.preset not in presets.names():
      raise config_lib.ConfigError(
        f"field 'model.preset' = {config.model.preset!r} is unknown; choose from {presets.names()}"
      )
    return presets.get(config.model.preset, **overrides)
  except ValueError as e:
    if isinstance(e, config_lib.ConfigError):
      raise
    raise config_lib.ConfigError(f"field 'model': {e}") from e


@dataclasses.dataclass(frozen=True)
class Runtime:
  """The model shape and mesh of a run.

  Attributes:
    model_cfg: the resolved ModelConfig.
    mesh_shape: axis name -> size, multiplying to the device count.
    rules: logical axis -> mesh axes.
    seed: the run's seed.
  """

  model_cfg: ModelConfig
  mesh_shape: dict[str, int]
  rules: sharding.LogicalRules
  seed: int

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> Runtime:
    model_cfg = model_config_from(config)
    mesh_shape = config_lib.mesh_shape(config, jax.device_count())
    try:
      sharding.validate_mesh_for_model(mesh_shape, model_cfg, sharding.DEFAULT_RULES)
    except ValueError as e:
      raise config_lib.ConfigError(
        f"field 'mesh' = {mesh_shape} does not fit model {config.model.preset or config.model.hf_dir}: {e}"
      ) from e
    return cls(model_cfg=model_cfg, mesh_shape=mesh_shape, rules=sharding.DEFAULT_RULES, seed=int(config.seed))

  @functools.cached_property
  def mesh(self) -> Mesh:
    return sharding.make_mesh(self.mesh_shape)

  @property
  def is_coordinator(self) -> bool:
    return jax.process_index() == 0

  def init_model(self) -> Transformer:
    """A randomly initialised model, created directly in its shards."""
    return sharding.create_sharded_model(self.model_cfg, self.mesh, self.rules, seed=self.seed)

  def load_model(self, hf_dir: str) -> Transformer:
    """Weights from a Hugging Face checkpoint directory, each tensor read straight into its shards."""
    model, _ = hf.load_hf(
      hf_dir,
      mesh=self.mesh,
      rules=self.rules,
      dtype=self.model_cfg.dtype,
      param_dtype=self.model_cfg.param_dtype,
      remat=self.model_cfg.remat,
      attention=self.model_cfg.attention,
      scan_layers=self.model_cfg.scan_layers,
    )
    return model

  def model_from_config(self, config: ml_collections.ConfigDict) -> Transformer:
    return self.load_model(config.model.hf_dir) if config.model.hf_dir else self.init_model()


def split(model: Transformer):
  """(graphdef, state): the state is what jitted steps take as an argument."""
  return nnx.split(model)
