"""ssd_jax.train."""
