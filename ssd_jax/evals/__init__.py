"""ssd_jax.evals."""
