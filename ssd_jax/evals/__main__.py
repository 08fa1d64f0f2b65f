"""Entry point of ``python -m ssd_jax.evals``."""

from ssd_jax.evals.cli import main

main()
