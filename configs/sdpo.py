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

from ssd_jax.methods import paper_rows


def get_config():
  c = paper_rows.paper_row_config(paper_rows.QWEN3_4B_INSTRUCT)
  c.stages = "self_distill"
  sd = c.self_distill
  sd.methods = "sdpo"
  sd.problems.update(dict(source="jsonl", split="", num_problems=0))
  sd.update(dict(steps=200, prompts_per_step=32, group_size=8, max_prompt_len=4096, max_teacher_prompt_len=12_288,
                 learning_rate=1e-6, end_learning_rate=1e-7, warmup_steps=10, eval_every=50, eval_problems=131,
                 eval_samples=10, checkpoint_every=25))
  sd.rollout.update(dict(temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=8192, batch_size=64))
  sd.templates.max_feedback_chars = 2000
  sd.sdpo.chunk_size = 4096
  return c
