"""On-policy self-distillation from execution feedback (SDPO) on a released model, in SDPO's code setting.

The student samples G rollouts per prompt; each is run against the tests. The teacher is an EMA of the student
(rate 0.05) shown a successful sibling when one exists, and the sandbox's feedback on the failed attempt only
when none does; `<think>` blocks are stripped from the sibling's text. The loss is the reverse KL,
KL(student || teacher), over the student's top-20 tokens plus a tail bucket, importance weights clipped at 2;
constant learning rate 1e-6 with no warm-up, and several optimizer updates on each rollout batch.

    python -m ssd_jax.main --config=configs/sdpo.py --workdir=runs/sdpo \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.self_distill.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  c = paper_rows.on_policy_config(paper_rows.QWEN3_4B_INSTRUCT, "sdpo", rollout_temperature=1.0)
  sd = c.self_distill
  sd.update(dict(learning_rate=1e-6, end_learning_rate=1e-6, warmup_steps=0, updates_per_batch=4))
  sd.sdpo.update(dict(divergence="reverse_kl", form="topk", top_k=20, context="demonstration_else_feedback"))
  sd.templates.max_feedback_chars = 2000
  sd.templates.strip_thinking = True
  return c
