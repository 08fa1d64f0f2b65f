"""The Pallas truncated-sampling kernel (interpreted on CPU) against the XLA reference.

Equality is exact for tokens and cut-offs (hence kept sets); log-probs agree to float32 rounding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ssd_jax.kernels import row_tiles
from ssd_jax.kernels import truncation_ops as ops
from ssd_jax.kernels.truncation_ops import order_key
from ssd_jax.sampling import truncation as tr
from ssd_jax.sampling.dispatch import resolve_impl, row_bits, sample_tokens
from ssd_jax.sampling.params import RowParams, SamplingParams, as_row_params


def mixed_rows(rng, batch, vocab):
  return RowParams(
    temperature=jnp.asarray(rng.choice([0.0, 1e-3, 0.7, 1.6, 1e4], batch), jnp.float32),
    top_k=jnp.asarray(rng.choice([0, 1, 2, 20, vocab - 1, vocab, 5 * vocab], batch), jnp.int32),
    top_p=jnp.asarray(rng.choice([1e-7, 0.3, 0.8, 0.95, 1.0], batch), jnp.float32),
    min_p=jnp.asarray(rng.choice([0.0, 0.01, 0.2], batch), jnp.float32),
  )


def assert_same_sample(kernel, reference):
  np.testing.assert_array_equal(kernel.token, reference.token)
  np.testing.assert_array_equal(kernel.cutoff, reference.cutoff)
  np.testing.assert_allclose(kernel.logprob_raw, reference.logprob_raw, rtol=2e-6, atol=2e-6)
  np.testing.assert_allclose(kernel.logprob_sampled, reference.logprob_sampled, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize(
  "dtype,batch,vocab,tile,scale",
  [
    (jnp.float32, 13, 700, 256, 4.0),  # ragged batch and vocabulary
    (jnp.bfloat16, 16, 384, 128, 1.0),  # bf16 rounding creates many exact ties
  ],
)
@pytest.mark.parametrize("thresholds", [1, 4])  # bisection probes per pass over the row
def test_kernel_matches_reference(dtype, batch, vocab, tile, scale, thresholds):
  rng = np.random.default_rng(vocab)
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * scale, dtype)
  rows = mixed_rows(rng, batch, vocab)
  bits = jax.random.bits(jax.random.key(batch), (batch, 2), jnp.uint32)
  reference = tr.sample_reference(logits, rows, bits)
  kernel = sample_tokens(logits, rows, bits, impl="pallas", interpret=True, tile=tile, thresholds=thresholds)
  assert_same_sample(kernel, reference)
  # The kept sets are those of the reference's kept mask.
  kept = tr.kept_mask(logits, rows)
  z = tr.tempered_logits(logits, rows)
  np.testing.assert_array_equal(order_key(z) >= kernel.cutoff[:, None], kept)
  greedy = np.asarray(rows.temperature) == 0
  np.testing.assert_array_equal(
    np.asarray(kernel.token)[greedy], np.argmax(np.asarray(logits, np.float32), axis=-1)[greedy]
  )


def test_more_thresholds_per_pass_take_fewer_passes(monkeypatch):
  # Each probe of the bisection is one pass over the row's tiles; count them as the interpreter runs.
  passes = []
  search = ops.bisect_largest

  def counted(probe, lo, hi, thresholds=1):
    def counted_probe(t):
      jax.debug.callback(lambda: passes.append(1))
      return probe(t)

    return search(counted_probe, lo, hi, thresholds)

  monkeypatch.setattr(ops, "bisect_largest", counted)
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(8, 4096)) * 3, jnp.float32)
  rows = SamplingParams(1.0, 200, 0.9).rows(8)
  counts, tokens = {}, {}
  for thresholds in (1, 4):
    passes.clear()
    out = sample_tokens(
      logits, rows, jax.random.key(0), impl="pallas", interpret=True, tile=1024, thresholds=thresholds
    )
    tokens[thresholds] = np.asarray(out.token)
    counts[thresholds] = len(passes)
  np.testing.assert_array_equal(tokens[4], tokens[1])
  assert counts[4] <= 0.6 * counts[1], counts  # 27 passes against 13 when written


@pytest.mark.parametrize("backend", ["tpu", "gpu"])
def test_top_p_passes_run_only_for_blocks_that_use_top_p(monkeypatch, backend):
  # Each tile the top-p passes sum is one weight_parts call; count them as the interpreter runs.
  calls = []
  weight_parts = row_tiles.RowTiles.weight_parts

  def counted(self, j):
    jax.debug.callback(lambda: calls.append(1))
    return weight_parts(self, j)

  monkeypatch.setattr(row_tiles.RowTiles, "weight_parts", counted)
  rng = np.random.default_rng(1)
  logits = jnp.asarray(rng.normal(size=(8, 1024)) * 3, jnp.float32)
  bits = jax.random.bits(jax.random.key(1), (8, 2), jnp.uint32)
  off = [SamplingParams(0.0), SamplingParams(1.0, 20, 1.0), SamplingParams(0.7, 0, 1.0)] * 2 + [SamplingParams()] * 2
  for params, used in ((off, False), (off[:-1] + [SamplingParams(1.0, 20, 0.9)], True)):
    rows = as_row_params(params)
    calls.clear()
    out = sample_tokens(logits, rows, bits, impl="pallas", interpret=True, tile=256, backend=backend)
    assert_same_sample(out, tr.sample_reference(logits, rows, bits))
    assert bool(calls) == used, len(calls)


@pytest.mark.parametrize("thresholds", [1, 3])
def test_kernel_ties_and_masked_tokens(thresholds):
  # Integer logits: large tied groups at every cut-off; -inf entries are never drawn.
  rng = np.random.default_rng(5)
  batch, vocab = 8, 300
  values = rng.integers(-3, 4, size=(batch, vocab)).astype(np.float32)
  values[:, ::7] = -np.inf
  logits = jnp.asarray(values)
  rows = as_row_params(
    [
      SamplingParams(top_k=k, top_p=p)
      for k, p in [(1, 1.0), (5, 1.0), (40, 1.0), (0, 0.5), (10, 0.9), (0, 1e-7), (299, 0.99), (1000, 1.0)]
    ]
  )
  bits = jax.random.bits(jax.random.key(3), (batch, 2), jnp.uint32)
  kernel = sample_tokens(logits, rows, bits, impl="pallas", interpret=True, tile=128, thresholds=thresholds)
  assert_same_sample(kernel, tr.sample_reference(logits, rows, bits))
  kept = np.asarray(tr.kept_mask(logits, rows))
  assert kept[1].sum() > 5  # ties beyond k are kept
  assert np.all(np.isfinite(values[np.arange(batch), np.asarray(kernel.token)]))


def test_dispatcher_rng_forms_and_impl_choice():
  batch = 4
  key = jax.random.key(0)
  np.testing.assert_array_equal(row_bits(key, batch), jax.random.bits(key, (batch, 2), jnp.uint32))
  per_row = jax.random.split(key, batch)
  assert row_bits(per_row, batch).shape == (batch, 2)
  bits = np.arange(8, dtype=np.uint32).reshape(batch, 2)
  np.testing.assert_array_equal(row_bits(bits, batch), bits)
  with pytest.raises(ValueError, match="rng_or_bits"):
    row_bits(np.zeros((3, 2), np.uint32), batch)
  with pytest.raises(ValueError, match="impl"):
    resolve_impl("triton")
  assert resolve_impl("auto") == "xla"  # CPU
  assert resolve_impl("auto", interpret=True) == "pallas"
  with pytest.raises(ValueError, match="vocab"):
    sample_tokens(jnp.zeros((1, 2**18 + 1)), SamplingParams(), key)
  with pytest.raises(ValueError, match="backend"):
    sample_tokens(jnp.zeros((1, 8)), SamplingParams(), key, impl="pallas", backend="cuda")
  with pytest.raises(ValueError, match="thresholds"):
    sample_tokens(jnp.zeros((1, 128)), SamplingParams(), key, impl="pallas", interpret=True, thresholds=0)


def test_sharded_over_a_mesh_equals_unsharded():
  devices = np.array(jax.devices()[:8]).reshape(4, 2)
  mesh = Mesh(devices, ("data", "fsdp"))
  rng = np.random.default_rng(6)
  batch, vocab = 16, 256
  logits = jnp.asarray(rng.normal(size=(batch, vocab)) * 2, jnp.float32)
  rows = mixed_rows(rng, batch, vocab)
  bits = jax.random.bits(jax.random.key(9), (batch, 2), jnp.uint32)
  expected = tr.sample_reference(logits, rows, bits)
  sharded_logits = jax.device_put(logits, NamedSharding(mesh, P(("data", "fsdp"), None)))
  for impl in ("reference", "pallas"):
    out = jax.jit(lambda x, r, b: sample_tokens(x, r, b, impl=impl, interpret=True, mesh=mesh, tile=128))(
      sharded_logits, rows, bits
    )
    assert_same_sample(out, expected)
  with pytest.raises(ValueError, match="divisible"):
    sample_tokens(logits[:6], SamplingParams().rows(6), jax.random.key(0), mesh=mesh)


@pytest.mark.libtpu
@pytest.mark.parametrize(
  "topology,dtype,thresholds",
  [("v5e:2x2", jnp.bfloat16, 1), ("v5e:2x2", jnp.bfloat16, 4), ("v5p:2x2x1", jnp.float32, 1)],
)
def test_kernel_compiles_for_tpu(topology, dtype, thresholds):
  """AOT-compiles the Mosaic kernel inside shard_map for a TPU topology (needs libtpu)."""
  from jax.experimental import topologies

  topo = topologies.get_topology_desc(topology, "tpu")
  mesh = Mesh(np.array(topo.devices).reshape(-1), ("data",))
  batch, vocab = 8 * mesh.size, 151_936
  row = NamedSharding(mesh, P("data"))
  args = (
    jax.ShapeDtypeStruct((batch, vocab), dtype, sharding=NamedSharding(mesh, P("data", None))),
    RowParams(
      jax.ShapeDtypeStruct((batch,), jnp.float32, sharding=row),
      jax.ShapeDtypeStruct((batch,), jnp.int32, sharding=row),
      jax.ShapeDtypeStruct((batch,), jnp.float32, sharding=row),
      jax.ShapeDtypeStruct((batch,), jnp.float32, sharding=row),
    ),
    jax.ShapeDtypeStruct((batch, 2), jnp.uint32, sharding=NamedSharding(mesh, P("data", None))),
  )
  step = lambda x, r, b: sample_tokens(x, r, b, impl="pallas", mesh=mesh, batch_axes="data", thresholds=thresholds)
  compiled = jax.jit(step).lower(*args).compile()
  text = compiled.as_text()
  assert "tpu_custom_call" in text or "custom-call" in text
  # The logits are read from HBM once: no padded or transposed copy of them.
  assert compiled.memory_analysis().temp_size_in_bytes < batch * vocab * 2 // 4
