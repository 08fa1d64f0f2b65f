"""Qwen3-4B-Instruct-2507 SSD (the paper row) on a TPU v5p-32 slice (16 chips, topology 2x2x4).

Parameters, optimizer state and batches are sharded over all 16 chips (fsdp). Check that every program
fits before paying for the slice, on any machine with libtpu installed:

    python -m ssd_jax.main --config=configs/tpu_v5.py --config.stages=plan --workdir=runs/plan_v5p

then run it on the slice: every host runs the same command (hosts are found automatically) with a
workdir all hosts share (e.g. a mounted bucket or NFS); each host writes its own record shards.

    python -m ssd_jax.main --config=configs/tpu_v5.py --workdir=/shared/runs/qwen3_4b_v5p \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.synthesize.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl

A v5e-64 slice (64 chips) needs SFT rows that spread over 64 chips (the 32 rows here cannot by batch alone):
see configs/llama3p1_8b_instruct_v5e64.py for the pattern (each row split over two chips, fsdp 32 x tensor 2).
"""

from ssd_jax.config import paper_rows


def get_config():
  config = paper_rows.paper_row_config(paper_rows.QWEN3_4B_INSTRUCT)
  config.mesh.topology = "v5p:2x2x4"
  # mesh: data=1, fsdp=-1 (every chip of the slice), tensor=1, from the paper row.
  config.sampling.batch_size = 128  # Rows per generation batch: 8 per chip.
  config.eval_sampling.batch_size = 128
  config.plan.prompt_len = 2048  # Prompt width the plan stage compiles generation for.
  return config
