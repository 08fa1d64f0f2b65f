"""Synthesis is resumable: a run killed mid-way and rerun ends with exactly the uninterrupted run's records."""

import os

import numpy as np
import pytest
from data_records_fixtures import stored_record
from flax import nnx
from pipeline_fixtures import micro_config, task_tokenizer_dir, tiny_model_config

from ssd_jax.data import records as records_lib
from ssd_jax.data.prompt_set import PromptSet
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.model import Transformer
from ssd_jax.pipeline import synthesis
from ssd_jax.pipeline.synthesis import SynthesisJob, synthesize_records
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams
from ssd_jax.tasks import builtin_problems

NUM_PROMPTS, N = 5, 2  # Chunks of 2 prompts: 3 chunks, the last one short.


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  tokenizer = load_tokenizer(task_tokenizer_dir(str(tmp_path_factory.mktemp("tok"))))
  graphdef, state = nnx.split(Transformer(tiny_model_config(), rngs=nnx.Rngs(3)))
  problems = builtin_problems("synth", NUM_PROMPTS, seed=1)
  prompting = micro_config("synthesize").prompting
  prompts = PromptSet.build(problems, tokenizer, system_prompt=prompting.system_prompt)
  job = SynthesisJob(
    task_ids=prompts.task_ids,
    messages=prompts.messages,
    prompt_ids=prompts.ids,
    params=SamplingParams(temperature=1.6, top_k=20, top_p=0.8),
    n=N,
    max_new_tokens=10,
    stop_ids=tokenizer.stop_ids,
    seed=7,
    source_checkpoint="random-init",
    prompts_per_chunk=2,
  )
  sampler = Sampler(graphdef, max_len=96, batch_size=4)
  return sampler, state, job, tokenizer


def _run(setup, out_dir):
  sampler, state, job, tokenizer = setup
  return synthesize_records(sampler, state, job, tokenizer, str(out_dir), records_per_shard=3, progress=False)


def _by_key(out_dir):
  found = list(records_lib.read_records(out_dir))
  assert len({r.key for r in found}) == len(found), "a record was written twice"
  return {r.key: r for r in found}


def _same_sample(a, b):
  assert a.completion_ids == b.completion_ids and a.completion_text == b.completion_text
  assert a.finish_reason == b.finish_reason and a.seed == b.seed and a.prompt_ids == b.prompt_ids
  np.testing.assert_array_equal(a.logprob_raw, b.logprob_raw)
  np.testing.assert_array_equal(a.logprob_sampled, b.logprob_sampled)


def test_killed_synthesis_resumes_to_the_uninterrupted_records(setup, tmp_path, monkeypatch):
  full = _run(setup, tmp_path / "full")
  assert full == {"written": NUM_PROMPTS * N, "skipped": 0}
  reference = _by_key(tmp_path / "full")

  calls = []
  original_write = records_lib.RecordShardWriter.write

  def write_then_crash(self, record):
    if len(calls) == 5:  # Mid-way through the second chunk, with a shard of 3 already published.
      raise KeyboardInterrupt("killed")
    calls.append(record.key)
    original_write(self, record)

  monkeypatch.setattr(records_lib.RecordShardWriter, "write", write_then_crash)
  with pytest.raises(KeyboardInterrupt):
    _run(setup, tmp_path / "resumed")
  monkeypatch.setattr(records_lib.RecordShardWriter, "write", original_write)
  assert len(_by_key(tmp_path / "resumed")) == 5

  resumed = _run(setup, tmp_path / "resumed")
  assert resumed == {"written": NUM_PROMPTS * N - 5, "skipped": 5}
  records = _by_key(tmp_path / "resumed")
  assert sorted(records) == sorted(reference)
  for key, record in records.items():
    _same_sample(record, reference[key])


def test_finished_synthesis_samples_nothing_more(setup, tmp_path, monkeypatch):
  _run(setup, tmp_path)
  sampler = setup[0]
  monkeypatch.setattr(sampler, "generate", lambda *a, **k: pytest.fail("sampled although every record exists"))
  assert _run(setup, tmp_path) == {"written": 0, "skipped": NUM_PROMPTS * N}


def test_records_carry_provenance_and_decode_their_tokens(setup, tmp_path):
  _, _, job, tokenizer = setup
  _run(setup, tmp_path)
  records = _by_key(tmp_path)
  for (task_id, _), record in records.items():
    i = job.task_ids.index(task_id)
    assert record.prompt_ids == tuple(job.prompt_ids[i]) and record.prompt_messages == tuple(job.messages[i])
    chunk = i // job.prompts_per_chunk
    assert record.seed == synthesis.chunk_seed(job.seed, chunk) and record.extra["chunk"] == chunk
    assert (record.temperature, record.top_k, record.top_p) == (1.6, 20, 0.8)
    assert record.source_checkpoint == "random-init" and record.max_new_tokens == 10
    ids = record.completion_ids
    if record.finish_reason == "stop":
      assert ids[-1] in tokenizer.stop_ids
      ids = ids[:-1]
    else:
      assert record.finish_reason == "length" and record.cut_at_max_new_tokens and len(ids) == 10
    assert record.completion_text == tokenizer.decode(list(ids))
    assert len(record.logprob_raw) == len(record.completion_ids)
    assert all(q <= 1e-6 for q in record.logprob_sampled) and all(p <= 1e-6 for p in record.logprob_raw)
  # Different chunks draw with unrelated seeds.
  assert len({synthesis.chunk_seed(job.seed, c) for c in range(3)}) == 3


def test_summary_counts_the_degeneracy_filter(setup, tmp_path):
  out = tmp_path / "records"
  with records_lib.RecordShardWriter(out, 0, 10) as writer:
    for i, text in enumerate(["", "```python\n# nothing\n```", "pass", "def f(x):\n    return x + 1"]):
      writer.write(
        stored_record(
          f"t{i}",
          text,
          [1],
          completion_ids=[5, 2],
          finish_reason="length" if i == 3 else "stop",
          logprob_raw=[-1.0, -0.5],
          logprob_sampled=[-0.5, -0.1],
          prompt_text="p",
        )
      )
  summary = synthesis.summarize_records(str(out))
  assert summary["records"] == 4 and summary["prompts"] == 4
  assert summary["degeneracy_filter"] == {"empty": 1, "empty_code": 1, "kept": 1, "one_line_stub": 1}
  assert summary["finish_reasons"] == {"length": 1, "stop": 3} and summary["completion_tokens"]["mean"] == 2.0
  assert summary["cut_at_max_new_tokens"] == {"count": 1, "share": 0.25}
  assert os.path.isdir(out)
