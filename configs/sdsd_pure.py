"""SDSD as its paper (seed 003) defines it: demonstrations only from successful siblings, no reference fallback.

Like configs/sdsd.py (frozen initial teacher, full-vocabulary JSD(0.5) at the sampling temperature), but a
rollout whose group has no other successful rollout gets no teacher (weight 0) instead of the problem's
reference solution, so the prompts need no reference solutions.

    python -m ssd_jax.main --config=configs/sdsd_pure.py --workdir=runs/sdsd_pure \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.self_distill.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  c = paper_rows.on_policy_config(paper_rows.QWEN3_4B_INSTRUCT, "sdsd", rollout_temperature=1.1)
  c.self_distill.sdsd.use_reference = False
  return c
