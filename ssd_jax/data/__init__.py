"""ssd_jax.data."""
