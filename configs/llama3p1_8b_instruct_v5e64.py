"""The Llama-3.1-8B-Instruct SSD row on a TPU v5e-64 slice (64 chips of 16 GiB, topology 8x8).

The row's 32 samples per SFT step, in rows that fit a 16 GiB chip: rows of 16,384 tokens, each split over two
chips (fsdp 32 x tensor 2), since 32 rows cannot be split over 64 chips by batch alone. Rows of 32,768 tokens
(one per chip over fsdp 64) planned at 16.45 GiB per chip, over the 15.75 a v5e chip offers. The cost of
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
  config.mesh.fsdp, config.mesh.tensor = 32, 2
  config.sft.seq_len = 16_384
  config.sft.loss_chunk_size = 1024
  config.plan.prompt_len = 2048
  return config
