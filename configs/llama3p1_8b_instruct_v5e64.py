"""The Llama-3.1-8B-Instruct SSD row on a TPU v5e-64 slice (64 chips of 16 GiB, topology 8x8).

Same tokens per SFT step as the v5p-32 row (2,097,152), in rows that fit a 16 GiB chip: 128 rows of 16,384
tokens in two micro-batches, one row per chip at a time. 64 rows of 32,768 (one per chip in one pass) plan at
16.45 GiB per chip, over the 15.75 a v5e chip offers; 32 rows cannot be split over 64 chips. The cost of
shorter rows: an example of more than 16,385 tokens (a long prompt with a completion near the 16,384-token
cap) is cut to that length, as every SFT example longer than a row is. The cross-entropy is chunked 1,024
tokens at a time per chip to keep the [chunk, 128,256] float32 logits small. Check before paying for the slice:

    python -m ssd_jax.main --config=configs/llama3p1_8b_instruct_v5e64.py --config.stages=plan \
      --workdir=runs/plan_8b_v5e64
"""

from ssd_jax.config import paper_rows


def get_config():
  config = paper_rows.paper_row_config(paper_rows.LLAMA3P1_8B_INSTRUCT)
  config.mesh.topology = "v5e:8x8"
  config.sft.global_batch_size, config.sft.seq_len = 128, 16_384
  config.sft.grad_accum_steps = 2  # 64 rows per micro-batch: one per chip.
  config.sft.loss_chunk_size = 1024
  config.plan.prompt_len = 2048
  return config
