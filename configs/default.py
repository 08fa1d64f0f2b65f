"""CPU default: the whole loop on the built-in task, in minutes on a laptop-class CPU."""

from ssd_jax.config import base_config


def get_config():
  config = base_config()
  config.stages = "forward"
  config.model.preset = "tiny_qwen3"
  config.model.dtype = "float32"
  config.model.param_dtype = "float32"
  return config
