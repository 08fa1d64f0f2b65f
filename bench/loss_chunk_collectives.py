"""Collective bytes of the chunked cross-entropy's forward + backward, read from the compiled HLO.

  python bench/loss_chunk_collectives.py [--devices 8] [--mesh data=2,fsdp=4] [--batch 16] [--length 512] ...

Compiles value_and_grad of `chunked_cross_entropy` (wrt hidden states and unembedding) for a mesh of fake CPU
devices, with hidden states [batch, length, embed] and unembedding [embed, vocab] placed by the project's
logical rules, and sums the result sizes of every all-reduce / all-gather / reduce-scatter / all-to-all /
collective-permute, multiplied by the trip count of the loops they sit in. Nothing runs; the figure is per
device per step.
"""

from __future__ import annotations

import argparse
import os


def _parse_args():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--devices", type=int, default=8)
  p.add_argument("--mesh", default="data=2,fsdp=4", help="axis=size,... over ('data', 'fsdp', 'tensor')")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--length", type=int, default=512)
  p.add_argument("--embed", type=int, default=256)
  p.add_argument("--vocab", type=int, default=4096)
  p.add_argument("--chunk_size", type=int, default=1024)
  return p.parse_args()


def main() -> None:
  args = _parse_args()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={args.devices}"
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding  # pylint: disable=g-import-not-at-top

  from ssd_jax import sharding  # pylint: disable=g-import-not-at-top
  from ssd_jax.collective_bytes import COLLECTIVES, collective_bytes  # pylint: disable=g-import-not-at-top
  from ssd_jax.train.cross_entropy import chunked_cross_entropy  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh({k: int(v) for k, v in (kv.split("=") for kv in args.mesh.split(","))})
  place = lambda shape, dtype, *names: jax.ShapeDtypeStruct(
    shape, dtype, sharding=NamedSharding(mesh, sharding.logical_to_spec(names))
  )
  hidden = place((args.batch, args.length, args.embed), jnp.bfloat16, "batch", "length", "embed")
  unembedding = place((args.embed, args.vocab), jnp.bfloat16, "embed", "vocab")
  targets = place((args.batch, args.length), jnp.int32, "batch", "length")

  def loss(h, w, t):
    total, count = chunked_cross_entropy(h, w, t, jnp.ones(t.shape, jnp.float32), chunk_size=args.chunk_size)
    return total / count

  with sharding.use_rules(mesh):  # As in the train steps.
    compiled = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(hidden, unembedding, targets).compile()
  totals = collective_bytes(compiled.as_text())
  print(
    f"mesh {dict(mesh.shape)} batch {args.batch} length {args.length} embed {args.embed} vocab {args.vocab} "
    f"chunk_size {args.chunk_size} on {args.devices} x {jax.devices()[0].device_kind}"
  )
  for kind in COLLECTIVES:
    print(f"  {kind:<20s} {totals.get(kind, 0) / 2**20:10.2f} MiB per device per step")
  print(f"  {'total':<20s} {sum(totals.values()) / 2**20:10.2f} MiB")


if __name__ == "__main__":
  main()
