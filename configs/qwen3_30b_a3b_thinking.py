"""SSD paper row: Qwen3-30B-A3B-Thinking-2507, T_train 1.2 / top-k 20 / top-p 0.95 -> T_eval 0.7, 300 SFT steps.

The thinking mixture of experts on the instruct row's v5p-64 slice and mesh (`expert` 4 x `fsdp` 8). SFT
takes the row's 32 samples per step in rows of 32,768 tokens, one per chip, as the instruct row does: rows
of 65,536 planned at 111.55 GiB per chip (of 95). A sample whose prompt and thinking trace together pass
32,769 tokens (completions run to 32,768) is cut to the row, as every SFT example longer than a row is, and
counted in `[sft] examples`. Check before paying for the slice:

    python -m ssd_jax.main --config=configs/qwen3_30b_a3b_thinking.py --config.stages=plan \\
      --workdir=runs/plan_30b_thinking

    python -m ssd_jax.main --config=configs/qwen3_30b_a3b_thinking.py --workdir=runs/qwen3_30b_a3b_thinking \\
      --config.model.hf_dir=/path/to/Qwen3-30B-A3B-Thinking-2507 \\
      --config.synthesize.problems.path=/path/to/prompts.jsonl \\
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  return paper_rows.on_v5p64_expert_parallel(paper_rows.paper_row_config(paper_rows.QWEN3_30B_A3B_THINKING))
