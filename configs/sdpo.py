"""On-policy self-distillation from execution feedback (SDPO) on a released model, in SDPO's code setting.

The student samples G rollouts per prompt; each is run against the tests. The teacher is an EMA of the student
(rate 0.01, SDPO's LiveCodeBench launch script; 0.05 is its code's default) shown a successful sibling when
one exists, and the sandbox's feedback on the failed attempt only when none does; `<think>` blocks are
stripped from the sibling's text. The loss is the reverse KL, KL(student || teacher), over the student's
top-20 tokens plus a tail bucket, importance weights clipped at 2; constant learning rate 1e-6 with no
warm-up, weight decay 0.01, and one optimizer update on each prompt's rollouts (32 per rollout batch).

    python -m ssd_jax.main --config=configs/sdpo.py --workdir=runs/sdpo \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.self_distill.problems.path=/path/to/prompts.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.config import paper_rows


def get_config():
  c = paper_rows.on_policy_config(paper_rows.QWEN3_4B_INSTRUCT, "sdpo", rollout_temperature=1.0)
  sd = c.self_distill
  # SDPO's launch script: 32 prompts x 8 rollouts, one update per prompt's rollouts (ppo_mini_batch_size 1).
  # 1,600 updates are the 50 rollout batches of this row's 200 steps at 4 updates each before mini-batches.
  sd.update(dict(learning_rate=1e-6, end_learning_rate=1e-6, warmup_steps=0, weight_decay=0.01))
  sd.update(dict(updates_per_batch=32, mini_batches=32, steps=1600, checkpoint_every=200, eval_every=400))
  sd.sdpo.update(
    dict(divergence="reverse_kl", form="topk", top_k=20, context="demonstration_else_feedback", ema_rate=0.01)
  )
  sd.templates.max_feedback_chars = 2000
  sd.templates.strip_thinking = True
  return c
