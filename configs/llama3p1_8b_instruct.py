"""SSD paper row: Llama-3.1-8B-Instruct, T_train 0.8 / top-k 20 / top-p 0.8 -> T_eval 0.7, 2,500 SFT steps.

    python -m ssd_jax.main --config=configs/llama3p1_8b_instruct.py --workdir=runs/llama3p1_8b_instruct \
      --config.model.hf_dir=/path/to/Llama-3.1-8B-Instruct \
      --config.synthesize.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  return paper_rows.paper_row_config(paper_rows.LLAMA3P1_8B_INSTRUCT)
