"""Pallas kernels, each matched exactly by an XLA reference.

Kernels import nothing from the layers above them; `ssd_jax.sampling.dispatch.sample_tokens`
chooses between the truncated-sampling kernel and its XLA reference.
"""
