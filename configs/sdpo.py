"""On-policy self-distillation from execution feedback (SDPO) on a released model.

The SDPO code recipe: the student samples G rollouts per prompt; each is run against the tests; the teacher
is an EMA of the student (rate 0.05) shown the sandbox's feedback on a failed attempt and/or a successful
sibling; the loss is JSD(0.5) over the student's top-100 tokens plus a tail bucket, each token weighted by
an importance weight clipped at 2.

    python -m ssd_jax.main --config=configs/sdpo.py --workdir=runs/sdpo \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.self_distill.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  c = paper_rows.on_policy_config(paper_rows.QWEN3_4B_INSTRUCT, "sdpo", rollout_temperature=1.0)
  c.self_distill.templates.max_feedback_chars = 2000
  return c
