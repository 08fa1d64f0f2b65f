"""What the stages of a run share: the run layout, the RunContext, model I/O, problems, sampling and training set-up.

Stages (`ssd_jax.stages`) call into this package; it calls into the library layers (model, sampling,
kernels, train, data, evals, tasks) and the on-policy library (`ssd_jax.onpolicy`), never the other way.
"""
