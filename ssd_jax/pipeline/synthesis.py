"""Self-data synthesis: N samples per prompt from a frozen model, written as sample records.

Every sample is written, degenerate or not, with its provenance (decoding parameters, seed, source
checkpoint, both kinds of log-probability); the degeneracy filter's counts go to the summary and the SFT
pipeline drops what it flags. Prompts are sampled in fixed chunks of `synthesize.prompts_per_chunk`, chunk c
with the seed `chunk_seed(seed, c)`, so a chunk's samples do not depend on what else ran. Resuming skips the
chunks whose records are all on disk and writes only the missing records of the others: a killed run, rerun,
ends with exactly the records of an uninterrupted one. On several hosts all of them run the sampler together
(the model is sharded over all of them) and each writes the records of its own slice of the prompts (prompt i
belongs to host i mod host count) into its own shards.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

import jax
import numpy as np
import tqdm

from ssd_jax.data import records as records_lib
from ssd_jax.data.degenerate import filter_degenerate
from ssd_jax.sampling.completions import completion_text
from ssd_jax.sampling.generate import Sampler
from ssd_jax.sampling.params import SamplingParams


@dataclasses.dataclass(frozen=True)
class SynthesisJob:
  """What to sample and how to label it.

  Attributes:
    task_ids: one per prompt, unique.
    messages: the chat messages of each prompt (stored in the records).
    prompt_ids: the token ids of each prompt.
    params: decoding parameters.
    n: samples per prompt.
    max_new_tokens: the most tokens per sample.
    stop_ids: tokens that end a sample.
    seed: the run's seed; chunk c samples with `chunk_seed(seed, c)`.
    source_checkpoint: where the sampled weights came from.
    prompts_per_chunk: prompts per sampler call (the unit of resumption).
  """

  task_ids: Sequence[str]
  messages: Sequence[Sequence[dict[str, str]]]
  prompt_ids: Sequence[Sequence[int]]
  params: SamplingParams
  n: int
  max_new_tokens: int
  stop_ids: Sequence[int]
  seed: int
  source_checkpoint: str
  prompts_per_chunk: int

  def __post_init__(self):
    if not len(self.task_ids) == len(self.messages) == len(self.prompt_ids):
      raise ValueError(
        f"task_ids, messages and prompt_ids must have equal lengths, got {len(self.task_ids)}, "
        f"{len(self.messages)}, {len(self.prompt_ids)}"
      )
    repeated = [t for t, c in collections.Counter(self.task_ids).items() if c > 1]
    if repeated:
      raise ValueError(f"task ids must be unique; repeated: {repeated[:5]}")


def chunk_seed(seed: int, chunk_index: int) -> int:
  """The sampler seed of chunk `chunk_index`: a 32-bit hash of (seed, chunk), unrelated across chunks."""
  return int(np.random.SeedSequence([seed, chunk_index]).generate_state(1)[0])


def synthesize_records(
  sampler: Sampler, state, job: SynthesisJob, tokenizer, out_dir: str, *, records_per_shard: int, progress: bool = True
) -> dict[str, int]:
  """Samples every (prompt, sample) not yet in `out_dir` and writes it as a SampleRecord.

  Every process must call this with the same job; each writes the records of its own prompts.

  Returns:
    {'written': records this call wrote here, 'skipped': records already on disk when it started}.
  """
  done = records_lib.completed_keys(out_dir)
  process, processes = jax.process_index(), jax.process_count()
  starts = range(0, len(job.prompt_ids), job.prompts_per_chunk)
  written = 0
  bar = tqdm.tqdm(total=len(job.prompt_ids), desc="synthesize", unit="prompt", disable=not progress or process != 0)
  with records_lib.RecordShardWriter(out_dir, process, records_per_shard) as writer:
    for chunk, start in enumerate(starts):
      indices = range(start, min(start + job.prompts_per_chunk, len(job.prompt_ids)))
      if all((job.task_ids[i], s) in done for i in indices for s in range(job.n)):
        bar.update(len(indices))
        continue
      seed = chunk_seed(job.seed, chunk)
      generations = sampler.generate(
        state,
        [job.prompt_ids[i] for i in indices],
        job.params,
        n=job.n,
        max_new_tokens=job.max_new_tokens,
        stop_ids=job.stop_ids,
        seed=seed,
        progress=False,
      )
      for generation in generations:
        i = indices[generation.prompt_index]
        key = (job.task_ids[i], generation.sample_index)
        if i % processes != process or key in done:
          continue
        writer.write(
          records_lib.SampleRecord(
            task_id=key[0],
            sample_index=key[1],
            prompt_ids=job.prompt_ids[i],
            completion_text=completion_text(tokenizer, generation),
            completion_ids=generation.token_ids,
            finish_reason=generation.finish_reason,
            logprob_raw=generation.logprob_raw,
            logprob_sampled=generation.logprob_sampled,
            temperature=job.params.temperature,
            top_k=job.params.top_k,
            top_p=job.params.top_p,
            min_p=job.params.min_p,
            max_new_tokens=job.max_new_tokens,
            seed=seed,
            source_checkpoint=job.source_checkpoint,
            prompt_messages=job.messages[i],
            extra={"run_seed": job.seed, "chunk": chunk, "index_in_chunk": generation.prompt_index},
          )
        )
        written += 1
      bar.update(len(indices))
  bar.close()
  return {"written": written, "skipped": len(done)}


def summarize_records(out_dir: str) -> dict:
  """Counts of the records on disk: degeneracy filter reasons, finish reasons, samples cut short, lengths."""
  records = list(records_lib.read_records(out_dir))
  _, reasons = filter_degenerate(records)
  lengths = [len(r.completion_ids) for r in records]
  cut = sum(r.cut_at_max_new_tokens for r in records)
  return {
    "records": len(records),
    "prompts": len({r.task_id for r in records}),
    "degeneracy_filter": dict(sorted(reasons.items())),
    "finish_reasons": dict(sorted(collections.Counter(r.finish_reason for r in records).items())),
    # Unfinished samples (no end token) train the model to stop mid-answer; SFT keeps them, so say how many.
    "cut_at_max_new_tokens": {"count": cut, "share": cut / len(records) if records else 0.0},
    "completion_tokens": {"mean": float(np.mean(lengths)) if lengths else 0.0, "max": int(max(lengths, default=0))},
  }
