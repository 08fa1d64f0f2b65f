"""ssd_jax.sampling."""
