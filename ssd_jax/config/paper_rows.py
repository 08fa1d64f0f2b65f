"""Configs of the SSD paper's rows: its decoding, optimizer and schedule for one released model.

Weights come from a user-given Hugging Face directory (`--config.model.hf_dir=...`), prompts from a
de-duplicated JSONL of competitive-programming problems (`--config.synthesize.problems.path=...`) and
the evaluation from a LiveCodeBench-format JSONL (`--config.eval.problems.path=...`); the run stops
before any work, naming the field, when one of them is missing. Every stage prompts with the SSD authors'
released LiveCodeBench prompt (`prompting.style` 'lcb_release'): one user turn, no system message.
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
    max_new_tokens: the longest completion, in synthesis and evaluation. The seeds do not give the
      paper's generation length; this is this project's cap (cut samples are counted in
      synthesize/summary.json).
    official_decoding: (temperature, top_k, top_p) the model's card recommends (top_k 0 = off): the
      base's usual setting, in the grid every model is tuned over.
  """

  preset: str
  train_decoding: tuple[float, int, float]
  eval_decoding: tuple[float, int, float]
  thinking: bool
  max_new_tokens: int
  official_decoding: tuple[float, int, float]


QWEN3_4B_INSTRUCT = PaperRow(
  preset="qwen3_4b",
  train_decoding=(1.6, 20, 0.8),
  eval_decoding=(1.1, 20, 0.8),
  thinking=False,
  max_new_tokens=16_384,
  official_decoding=(0.7, 20, 0.8),
)
# Thinking traces are long: completions up to 32k tokens.
QWEN3_4B_THINKING = PaperRow(
  preset="qwen3_4b",
  train_decoding=(1.1, 20, 0.95),
  eval_decoding=(0.7, 20, 0.95),
  thinking=True,
  max_new_tokens=32_768,
  official_decoding=(0.6, 20, 0.95),
)
# The paper's headline model (mixture of experts: 30.5B parameters, 3.3B active per token).
QWEN3_30B_A3B_INSTRUCT = PaperRow(
  preset="qwen3_30b_a3b",
  train_decoding=(1.6, 20, 0.8),
  eval_decoding=(0.9, 20, 0.8),
  thinking=False,
  max_new_tokens=16_384,
  official_decoding=(0.7, 20, 0.8),
)
QWEN3_30B_A3B_THINKING = PaperRow(
  preset="qwen3_30b_a3b",
  train_decoding=(1.2, 20, 0.95),
  eval_decoding=(0.7, 20, 0.95),
  thinking=True,
  max_new_tokens=32_768,
  official_decoding=(0.6, 20, 0.95),
)
LLAMA3P1_8B_INSTRUCT = PaperRow(
  preset="llama3p1_8b",
  train_decoding=(0.8, 20, 0.8),
  eval_decoding=(0.7, 20, 0.8),
  thinking=False,
  max_new_tokens=16_384,
  official_decoding=(0.6, 0, 0.9),  # generation_config.json: temperature 0.6, top_p 0.9, no top-k.
)


GRID_STEP = 0.2


def grid_temperatures(t_eval: float, t_official: float) -> list[float]:
  """T_eval values a row tunes every model over: steps of GRID_STEP through the row's T_eval, from the first
  below both it and the model card's temperature to the first above both.

  The base's best is usually near its card's setting and the trained model's near the row's T_eval; a grid
  centred on T_eval alone would leave the base no colder choice than its card's (Qwen3 instruct: 0.7 against
  T_eval 1.1), and an untuned base inflates the gain.
  """
  low, high = min(t_eval, t_official), max(t_eval, t_official)
  below = 1 + int((t_eval - low) / GRID_STEP + 1e-9)
  above = 1 + int((high - t_eval) / GRID_STEP + 1e-9)
  return [round(t_eval + GRID_STEP * j, 2) for j in range(-below, above + 1) if round(t_eval + GRID_STEP * j, 2) > 0]


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
  # The released evaluation's prompt, the same for instruct and thinking models (the paper adds no reasoning
  # instruction for thinking models); it has no system turn.
  c.prompting.style, c.prompting.system_prompt = "lcb_release", ""

  _decoding(c.sampling, row.train_decoding)
  c.sampling.n = 1  # One sample per prompt.
  c.sampling.max_new_tokens = row.max_new_tokens
  c.sampling.batch_size = 64
  c.synthesize.problems.source = "jsonl"
  c.synthesize.problems.split = ""
  c.synthesize.problems.num_problems = 10_000

  c.sft.steps, c.sft.warmup_steps, c.sft.checkpoint_every = (300, 50, 50) if row.thinking else (2500, 250, 250)
  c.sft.max_to_keep = c.sft.steps // c.sft.checkpoint_every  # Every saved step is a candidate (eval.checkpoints).
  c.sft.learning_rate, c.sft.end_learning_rate = 5e-6, 1e-6
  c.sft.b1, c.sft.b2, c.sft.weight_decay = 0.9, 0.95, 0.1
  # 32 samples per step, each in its own row of up to 65,536 tokens: 2,500 steps are then ~8 passes over 10k
  # samples (300 steps ~1 for thinking models). Packing would put hundreds of samples in each step.
  c.sft.global_batch_size, c.sft.seq_len, c.sft.pack = 32, 65_536, False
  c.sft.loss_chunk_size = 4096

  _decoding(c.eval_sampling, row.eval_decoding)
  c.eval_sampling.n = 10  # pass@k from 10 samples per problem.
  c.eval_sampling.max_new_tokens = row.max_new_tokens
  c.eval_sampling.batch_size = 64
  c.eval.problems.source = "jsonl"
  c.eval.problems.split = ""
  c.eval.ks = "1,2,5,10"
  # Every model (the base too) is tuned on dev over T_eval around the row's, at its truncation, and over the
  # model card's setting; the saved checkpoints are candidates as well (the paper's protocol).
  c.eval.grid.temperatures = ",".join(
    f"{t:g}" for t in grid_temperatures(row.eval_decoding[0], row.official_decoding[0])
  )
  c.eval.grid.named = "official={:g}/{}/{:g}".format(*row.official_decoding)
  c.eval.checkpoints = "all"
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
      max_to_keep=8,  # All 8 saved steps are candidates (eval.checkpoints = 'all').
    )
  )
  sd.rollout.update(dict(temperature=rollout_temperature, top_k=0, top_p=1.0, max_new_tokens=8192, batch_size=64))
  # A successful sibling of up to 8,192 tokens is a demonstration; only the teacher's prompt width limits it.
  sd.templates.max_demonstration_chars = 64_000
  sd[method].chunk_size = 4096
  return c


def on_v5p64_expert_parallel(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A 30B-A3B row's slice and mesh: v5p-64 (32 chips), experts over an `expert` axis of 4 and everything over
  `fsdp`; SFT rows of 32,768 tokens, one per chip (rows of 65,536 planned at 111.55 GiB per chip, of 95)."""
  c.mesh.data, c.mesh.fsdp, c.mesh.expert, c.mesh.tensor = 1, -1, 4, 1
  c.mesh.topology = "v5p:2x4x4"
  c.sft.seq_len = 32_768
  return c
