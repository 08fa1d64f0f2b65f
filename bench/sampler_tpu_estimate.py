"""Estimate (not a measurement): libtpu's compile-time cost analysis of the sampler on one v5e chip.

Compiles the bisection reference and the Pallas kernel for a v5e topology with libtpu (no TPU needed) and
prints each program's flops, transcendentals, bytes accessed and HBM temporaries. The kernel's flops and
bytes are its own declared `pl.CostEstimate`; the reference's are libtpu's analysis of the XLA program.

  python bench/sampler_tpu_estimate.py --batches 8,64,256 --vocabs 151936
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from bench_models import add_sampling_flags, sampling_params
from jax.experimental import topologies
from jax.sharding import SingleDeviceSharding

from ssd_jax.sampling.dispatch import sample_tokens
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.sampling.truncation import sample_reference


def estimate(batches: list[int], vocabs: list[int], dtype: jnp.dtype, params: SamplingParams) -> None:
  """Prints, per [batch, vocab], libtpu's cost and memory analysis of the reference and the kernel."""
  chip = topologies.get_topology_desc("v5e:2x2", "tpu").devices[0]
  print(f"ESTIMATE (libtpu compile-time cost analysis, not a measurement): {chip.device_kind}")
  place = SingleDeviceSharding(chip)
  for vocab in vocabs:
    for batch in batches:
      logits = jax.ShapeDtypeStruct((batch, vocab), dtype, sharding=place)
      bits = jax.ShapeDtypeStruct((batch, 2), jnp.uint32, sharding=place)
      rows = jax.tree.map(lambda r: jax.ShapeDtypeStruct(r.shape, r.dtype, sharding=place), params.rows(batch))
      for name, fn in [
        ("reference", lambda x, r, b: sample_reference(x, r, b).token),
        ("pallas kernel", lambda x, r, b: sample_tokens(x, r, b, impl="pallas").token),
      ]:
        compiled = jax.jit(fn).lower(logits, rows, bits).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        memory = compiled.memory_analysis()
        print(
          f"  [batch {batch}, vocab {vocab}] {name:14s} flops {cost.get('flops', 0):.3e}  "
          f"transcendentals {cost.get('transcendentals', 0):.3e}  "
          f"bytes accessed {cost.get('bytes accessed', 0):.3e}  "
          f"HBM temp {memory.temp_size_in_bytes / 1e6:.1f} MB"
        )


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batches", default="1,8,64,256")
  parser.add_argument("--vocabs", default="151936,128256")
  parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
  add_sampling_flags(parser)
  args = parser.parse_args()
  estimate(
    [int(b) for b in args.batches.split(",")],
    [int(v) for v in args.vocabs.split(",")],
    jnp.dtype(args.dtype),
    sampling_params(args),
  )


if __name__ == "__main__":
  main()
