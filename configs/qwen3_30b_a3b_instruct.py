"""SSD paper row: Qwen3-30B-A3B-Instruct-2507, T_train 1.6 / top-k 20 / top-p 0.8 -> T_eval 0.9, 2,500 SFT steps.

The headline model is a mixture of experts (128 experts, 8 per token). Its experts are split over an
`expert` mesh axis of 4 (tokens all-to-all'd to them) and everything over `fsdp`, on a v5p-64 slice
(32 chips), the topology the plan stage compiles SFT and generation for.

SFT takes the row's 32 samples per step in rows of 32,768 tokens (a 16,384-token completion and its prompt
fit), one row per chip: rows of 65,536 tokens planned at 111.55 GiB per chip for the SFT step (of 95 GiB), and
32 rows cannot be split into micro-batches over 32 chips.

    python -m ssd_jax.main --config=configs/qwen3_30b_a3b_instruct.py --workdir=runs/qwen3_30b_a3b_instruct \
      --config.model.hf_dir=/path/to/Qwen3-30B-A3B-Instruct-2507 \
      --config.synthesize.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  return paper_rows.on_v5p64_expert_parallel(paper_rows.paper_row_config(paper_rows.QWEN3_30B_A3B_INSTRUCT))
