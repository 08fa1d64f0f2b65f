"""The SSD paper's lock/fork toy through the real pipeline, a few minutes on a 2-core CPU.

A tiny transformer learns the toy's distributions (locks: one right token and a long distractor tail; forks:
several branches, one right per problem) from a sampled corpus; the sampler draws its samples at T_train with
top-k / top-p; SFT on them gives the SSD model; both are scored by their exact pass@k over a T_eval grid, beside
the tabular ideal of each. Every field is in the `toy` section (ssd_jax/config/toy.py).

    python -m ssd_jax.main --config=configs/ssd_toy.py --workdir=runs/ssd_toy
"""

from ssd_jax.config import base_config


def get_config():
  config = base_config()
  config.stages = "toy"
  config.model.preset = "tiny_qwen3"  # Its vocabulary is replaced by the toy's.
  config.model.dtype = "float32"
  config.model.param_dtype = "float32"
  return config
