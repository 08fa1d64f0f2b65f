"""The ragged decode kernel (interpreted here, compiled for TPU with libtpu) against the XLA cache path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from sampling_generate_fixtures import PROMPTS, greedy_by_full_forwards, hf_model

from ssd_jax import sharding
from ssd_jax.collective_bytes import collective_bytes
from ssd_jax.kernels import decode_attention
from ssd_jax.model import KVCache, cache_layout, hf, presets, sharded_init
from ssd_jax.model.cache_attention import cache_attention
from ssd_jax.model.kv_cache import cache_slots
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams

HEAD_DIM = 128  # The kernel serves lane-wide heads only.


def _cache_case(rng, dtype, batch=4, layers=2, max_len=768, kv_heads=2, group=3, index=517):
  """A decode step's q and cache: right-padded prompts, a finished row, stale slots past the query."""
  q = jnp.asarray(rng.normal(size=(batch, 1, kv_heads * group, HEAD_DIM)), dtype)
  shape = (layers, batch, max_len, kv_heads, HEAD_DIM)
  k_all = cache_layout.k_blocks(jnp.asarray(rng.normal(size=shape), dtype), cache_layout.BLOCK)
  v_all = cache_layout.v_blocks(jnp.asarray(rng.normal(size=shape), dtype), cache_layout.BLOCK)
  prompt_width, prompt_lengths = 300, (300, 7, 140, 260)
  valid = np.zeros((batch, max_len), bool)
  for row, length in enumerate(prompt_lengths):
    valid[row, :length] = True  # the prompt, then padding up to the common width
    valid[row, prompt_width : index + 1] = True  # generated tokens
  valid[2, 400:450] = False  # tokens generated while the row was not live
  valid[3, index] = False  # finished: its query slot is invalid
  valid[:, index + 1 :] = rng.random((batch, max_len - index - 1)) < 0.5  # stale slots are never seen
  return q, k_all, v_all, jnp.int32(index), jnp.asarray(valid)


@pytest.mark.parametrize(
  "dtype,block,atol", [(jnp.float32, 128, 2e-5), (jnp.float32, 256, 2e-5), (jnp.bfloat16, 256, 3e-2)]
)
@pytest.mark.parametrize("layer", [0, 1])
def test_kernel_equals_the_xla_path_on_live_rows(dtype, block, atol, layer):
  q, k_all, v_all, index, valid = _cache_case(np.random.default_rng(layer), dtype)
  want = cache_attention(q, k_all, v_all, layer, index, valid)
  got = decode_attention.decode_attention(q, k_all, v_all, jnp.int32(layer), index, valid, block=block, interpret=True)
  assert got.shape == want.shape and got.dtype == want.dtype
  np.testing.assert_allclose(np.asarray(got[:3], np.float32), np.asarray(want[:3], np.float32), atol=atol, rtol=atol)
  assert not np.any(np.asarray(got[3], np.float32))  # a finished row reads nothing and returns zeros


def test_kernel_refuses_shapes_it_does_not_serve():
  q, k_all, v_all, index, valid = _cache_case(np.random.default_rng(0), jnp.float32)
  with pytest.raises(ValueError, match="one query per row"):
    decode_attention.decode_attention(jnp.concatenate([q, q], axis=1), k_all, v_all, 0, index, valid, interpret=True)
  with pytest.raises(ValueError, match="multiple of the block"):
    decode_attention.decode_attention(q, k_all, v_all, 0, index, valid, block=512, interpret=True)
  assert not decode_attention.supported(1, 768, 64) and decode_attention.supported(1, 768, 128)
  assert cache_slots(129) == 256 and cache_slots(128) == 128


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  directory = tmp_path_factory.mktemp("qwen3_dh128")
  hf_model("qwen3", seed=2, head_dim=HEAD_DIM).save_pretrained(directory)
  return str(directory)


def _split(checkpoint, attention):
  model, _ = hf.load_hf(checkpoint, dtype="float32", param_dtype="float32", attention=attention)
  return nnx.split(model)


def test_greedy_generation_through_the_kernel_equals_full_forwards(checkpoint, monkeypatch):
  # 'splash' on CPU interprets both kernels: splash for the prefill, the ragged kernel for every decode step.
  traced = []
  kernel = decode_attention.decode_attention
  monkeypatch.setattr(decode_attention, "decode_attention", lambda *a, **k: traced.append(1) or kernel(*a, **k))
  graphdef, state = _split(checkpoint, "splash")
  out = Sampler(graphdef, max_len=64, batch_size=4).generate(
    state, PROMPTS, SamplingParams(temperature=0.0), max_new_tokens=6, seed=0, progress=False
  )
  xla_graphdef, xla_state = _split(checkpoint, "xla")
  for g in out:
    assert g.token_ids.tolist() == greedy_by_full_forwards(xla_graphdef, xla_state, PROMPTS[g.prompt_index], 6)
  assert traced  # the decode steps did go through the kernel


@pytest.mark.slow
def test_sampled_generation_with_early_stops_equals_the_xla_path_sharded_or_not(checkpoint, monkeypatch):
  """Rows stop at different steps (finished rows go through the kernel until compaction drops them)."""
  params = SamplingParams(temperature=1.0, top_k=20, top_p=0.95)
  generate = lambda sampler, state, stops: sampler.generate(
    state, PROMPTS, params, n=4, max_new_tokens=12, seed=3, stop_ids=stops, progress=False
  )
  graphdef, state = _split(checkpoint, "xla")
  xla_sampler = Sampler(graphdef, max_len=48, batch_size=16)
  free = generate(xla_sampler, state, ())
  stops = sorted({int(free[0].token_ids[4]), int(free[5].token_ids[2])})  # rows 0 and 5 stop early
  # The XLA path sharded against unsharded is test_sampling_compaction's; here the kernel, unsharded and on two
  # meshes, is compared with the unsharded XLA path.
  want = generate(xla_sampler, state, stops)
  assert len({len(g.token_ids) for g in want}) > 1  # the stop tokens did end rows early
  traced = []
  kernel = decode_attention.decode_attention
  monkeypatch.setattr(
    decode_attention, "decode_attention", lambda *a, **k: traced.append(a[1].shape) or kernel(*a, **k)
  )
  meshes = {
    "rows and kv heads": sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}),
    "rows only": sharding.make_mesh({"data": 2, "fsdp": 4}),
  }
  graphdef, state = _split(checkpoint, "splash")
  runs = {"single": generate(Sampler(graphdef, max_len=48, batch_size=16), state, stops)}
  for name, mesh in meshes.items():
    sampler = Sampler(graphdef, mesh=mesh, max_len=48, batch_size=16)
    runs[name] = generate(sampler, sharding.shard_state(state, mesh), stops)
  # Each mesh ran the kernel on its per-device slice of the cache: 16 rows over 4 or 8 shards.
  assert {shape[2] for shape in traced} >= {16, 4, 2}
  for key, got in runs.items():
    assert [g.token_ids.tolist() for g in got] == [g.token_ids.tolist() for g in want], key
    for a, b in zip(got, want):
      np.testing.assert_allclose(a.logprob_raw, b.logprob_raw, atol=1e-4)


@pytest.mark.libtpu
@pytest.mark.parametrize(
  "topology,dtype,mesh_shape",
  [
    ("v5e:2x2", "bfloat16", {"fsdp": 2, "tensor": 2}),
    ("v5e:2x2", "bfloat16", {"fsdp": 4}),
    ("v5p:2x2x1", "float32", {"fsdp": 2, "tensor": 2}),
  ],
)
def test_decode_step_compiles_the_kernel_for_tpu_without_moving_the_cache(topology, dtype, mesh_shape):
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh(mesh_shape, devices=topologies.get_topology_desc(topology, "tpu").devices)
  batch, slots = 8, cache_slots(1000)
  compiled = {}
  for attention in ("auto", "xla"):  # 'auto' resolves to the Pallas kernels when compiling for TPU
    cfg = presets.get(
      "tiny_qwen3", head_dim=HEAD_DIM, num_kv_heads=2, dtype=dtype, param_dtype=dtype, attention=attention
    )
    graphdef, state = sharded_init.abstract_state(cfg, mesh)
    token_spec = sharding.logical_to_spec(("batch", "length"))
    token = jax.ShapeDtypeStruct((batch, 1), jnp.int32, sharding=NamedSharding(mesh, token_spec))
    cache_shardings = KVCache.shardings(mesh)
    cache = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
      jax.eval_shape(lambda cfg=cfg: KVCache.init(cfg, batch, slots)),
      cache_shardings,
    )

    def step(state, tokens, cache, graphdef=graphdef):
      with sharding.use_rules(mesh):
        return nnx.merge(graphdef, state)(tokens, tokens, cache=cache)

    jitted = jax.jit(step, out_shardings=(None, cache_shardings), donate_argnums=2)
    compiled[attention] = jitted.lower(state, token, cache).compile()
  text = compiled["auto"].as_text()
  assert text.count("ragged_decode_attention") >= cfg.num_layers
  assert "ragged_decode_attention" not in compiled["xla"].as_text()
  # Each device reads its own rows and kv heads where they lie: no collective beyond the XLA path's (the
  # weight gathers of FSDP), and no temporary near the cache's size.
  assert sum(collective_bytes(text).values()) <= sum(collective_bytes(compiled["xla"].as_text()).values())
  per_chip_cache = 2 * cache.k.size * cache.k.dtype.itemsize // mesh.size
  assert compiled["auto"].memory_analysis().temp_size_in_bytes < per_chip_cache // 4
