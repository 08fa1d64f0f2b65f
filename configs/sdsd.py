"""On-policy self-distillation with a demonstration teacher (SDSD / OPSD) on a released model.

The OPSD recipe: the student samples G rollouts per prompt at T = 1.1; the teacher is the frozen initial
model shown a correct demonstration (a successful sibling, else the problem's reference solution); the
loss is the full-vocabulary JSD(beta = 0.5) at the sampling temperature, chunked over tokens.

    python -m ssd_jax.main --config=configs/sdsd.py --workdir=runs/sdsd \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.self_distill.problems.path=/path/to/prompts_with_solutions.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  c = paper_rows.on_policy_config(paper_rows.QWEN3_4B_INSTRUCT, "sdsd", rollout_temperature=1.1)
  return c
