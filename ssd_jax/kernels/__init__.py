"""Pallas kernels, each matched exactly by an XLA reference.

`sample_tokens` is the entry point for truncated sampling.
"""

from ssd_jax.kernels.dispatch import sample_tokens

__all__ = ["sample_tokens"]
