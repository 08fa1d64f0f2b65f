"""ssd_jax: self-distillation for code models in JAX."""

__version__ = "0.1.0"
