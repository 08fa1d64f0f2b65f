"""ssd_jax.methods."""
