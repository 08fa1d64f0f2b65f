"""ssd_jax.model."""
