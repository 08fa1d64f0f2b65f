"""ssd_jax.tasks."""
