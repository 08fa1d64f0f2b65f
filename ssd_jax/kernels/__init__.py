"""ssd_jax.kernels."""
