"""Configs of the SSD paper's rows: its decoding, optimizer and schedule for one released model.

Weights come from a user-given Hugging Face directory (`--config.model.hf_dir=...`), prompts from a
de-duplicated JSONL of competitive-programming problems (`--config.synthesize.problems.path=...`) and
the evaluation from a LiveCodeBench-format JSONL (`--config.eval.problems.path=...`); the run stops
before any work, naming the field, when one of them is missing.
"""

from __future__ import annotations

import dataclasses

import ml_collections

import ssd_jax.config as config_lib


@dataclasses.dataclass(frozen=True)
class PaperRow:
  """One row of the paper (Table 3 decoding; SFT schedule by model kind).

  Attributes:
    preset: the model preset of the same shape (used before weights load, e.g. by the plan stage).
    train_decoding: (temperature, top_k, top_p) of synthesis.
    eval_decoding: (temperature, top_k, top_p) of evaluation.
    thinking: thinking models train 300 steps (warm-up 50, checkpoint every 50), instruct 2,500
      (warm-up 250, checkpoint every 250).
    max_new_tokens: the longest completion, in synthesis and evaluation.
  """

  preset: str
  train_decoding: tuple[float, int, float]
  eval_decoding: tuple[float, int, float]
  thinking: bool
  max_new_tokens: int


QWEN3_4B_INSTRUCT = PaperRow(
  preset="qwen3_4b", train_decoding=(1.6, 20, 0.8), eval_decoding=(1.1, 20, 0.8), thinking=False, max_new_tokens=16_384
)
# Thinking traces are long: completions up to 32k tokens (the model's context is 40,960).
QWEN3_4B_THINKING = PaperRow(
  preset="qwen3_4b", train_decoding=(1.1, 20, 0.95), eval_decoding=(0.7, 20, 0.95), thinking=True, max_new_tokens=32_768
)
LLAMA3P1_8B_INSTRUCT = PaperRow(
  preset="llama3p1_8b",
  train_decoding=(0.8, 20, 0.8),
  eval_decoding=(0.7, 20, 0.8),
  thinking=False,
  max_new_tokens=16_384,
)


def _decoding(section: ml_collections.ConfigDict, decoding: tuple[float, int, float]) -> None:
  section.temperature, section.top_k, section.top_p = decoding


def paper_row_config(row: PaperRow) -> ml_collections.ConfigDict:
  """The full SSD recipe for `row`: synthesize -> sft -> eval (base and SSD) -> report."""
  c = config_lib.base_config()
  c.stages = "synthesize,sft,eval,report"
  c.model.preset = row.preset
  c.model.dtype = "bfloat16"
  c.model.param_dtype = "float32"  # AdamW updates at lr 5e-6 vanish in bfloat16 weights.
  c.model.remat = "full"
  c.model.scan_layers = True  # One scanned block: compiles in a minute, and one block's backward lives at a time.
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, -1, 1  # Parameters and batch sharded over every chip.

  _decoding(c.sampling, row.train_decoding)
  c.sampling.n = 1  # One sample per prompt.
  c.sampling.max_new_tokens = row.max_new_tokens
  c.sampling.batch_size = 64
  c.synthesize.problems.source = "jsonl"
  c.synthesize.problems.split = ""
  c.synthesize.problems.num_problems = 10_000

  c.sft.steps, c.sft.warmup_steps, c.sft.checkpoint_every = (300, 50, 50) if row.thinking else (2500, 250, 250)
  c.sft.learning_rate, c.sft.end_learning_rate = 5e-6, 1e-6
  c.sft.b1, c.sft.b2, c.sft.weight_decay = 0.9, 0.95, 0.1
  c.sft.global_batch_size, c.sft.seq_len = 32, 65_536
  c.sft.loss_chunk_size = 4096

  _decoding(c.eval_sampling, row.eval_decoding)
  c.eval_sampling.n = 10  # pass@k from 10 samples per problem.
  c.eval_sampling.max_new_tokens = row.max_new_tokens
  c.eval_sampling.batch_size = 64
  c.eval.problems.source = "jsonl"
  c.eval.problems.split = ""
  c.eval.ks = "1,2,5,10"
  return c


def on_policy_config(row: PaperRow, method: str, *, rollout_temperature: float) -> ml_collections.ConfigDict:
  """On-policy self-distillation (`method`: 'sdsd' or 'sdpo') of `row`'s model, at released-model scale."""
  c = paper_row_config(row)
  c.stages = "self_distill"
  sd = c.self_distill
  sd.methods = method
  sd.problems.update(dict(source="jsonl", split="", num_problems=0))
  sd.update(
    dict(
      steps=200,
      prompts_per_step=32,
      group_size=8,
      max_prompt_len=4096,
      max_teacher_prompt_len=12_288,
      learning_rate=1e-6,
      end_learning_rate=1e-7,
      warmup_steps=10,
      eval_every=50,
      eval_problems=131,
      eval_samples=10,
      checkpoint_every=25,
    )
  )
  sd.rollout.update(dict(temperature=rollout_temperature, top_k=0, top_p=1.0, max_new_tokens=8192, batch_size=64))
  sd[method].chunk_size = 4096
  return c
