"""SSD paper row: Qwen3-4B-Instruct-2507, T_train 1.6 / top-k 20 / top-p 0.8 -> T_eval 1.1, 2,500 SFT steps.

    python -m ssd_jax.main --config=configs/qwen3_4b_instruct.py --workdir=runs/qwen3_4b_instruct \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.synthesize.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  return paper_rows.paper_row_config(paper_rows.QWEN3_4B_INSTRUCT)
