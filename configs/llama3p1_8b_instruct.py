"""SSD paper row: Llama-3.1-8B-Instruct, T_train 0.8 / top-k 20 / top-p 0.8 -> T_eval 0.7, 2,500 SFT steps.

Sized for a TPU v5p-32 slice (16 chips of 95 GiB, topology 2x2x4): parameters, optimizer state and batches
sharded over all chips, and each SFT step in two micro-batches of 16 rows (one 65,536-token row per chip at a
time; a whole step at once needs about 100 GiB per chip). Check it on any machine with libtpu:

    python -m ssd_jax.main --config=configs/llama3p1_8b_instruct.py --config.stages=plan --workdir=runs/plan_8b

    python -m ssd_jax.main --config=configs/llama3p1_8b_instruct.py --workdir=runs/llama3p1_8b_instruct \
      --config.model.hf_dir=/path/to/Llama-3.1-8B-Instruct \
      --config.synthesize.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl

For a v5e-64 slice see configs/llama3p1_8b_instruct_v5e64.py.
"""

from ssd_jax.config import paper_rows


def get_config():
  config = paper_rows.paper_row_config(paper_rows.LLAMA3P1_8B_INSTRUCT)
  config.mesh.topology = "v5p:2x2x4"
  config.sft.grad_accum_steps = 2  # 32 rows per step as 2 x 16: one row per chip per micro-batch.
  config.plan.prompt_len = 2048  # Prompt width the plan stage compiles generation for.
  return config
