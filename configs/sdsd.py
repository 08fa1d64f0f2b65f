"""On-policy self-distillation with a demonstration teacher (SDSD / OPSD) on a released model.

The OPSD recipe: the student samples G rollouts per prompt at T = 1.1; the teacher is the frozen initial
model shown a correct demonstration (a successful sibling, else the problem's reference solution); the
loss is the full-vocabulary JSD(beta = 0.5) at the sampling temperature, chunked over tokens.

    python -m ssd_jax.main --config=configs/sdsd.py --workdir=runs/sdsd \
      --config.model.hf_dir=/path/to/Qwen3-4B-Instruct-2507 \
      --config.self_distill.problems.path=/path/to/prompts_with_solutions.jsonl \
      --config.eval.problems.path=/path/to/livecodebench_v6.jsonl
"""

from ssd_jax.methods import paper_rows


def get_config():
  c = paper_rows.paper_row_config(paper_rows.QWEN3_4B_INSTRUCT)
  c.stages = "self_distill"
  sd = c.self_distill
  sd.methods = "sdsd"
  sd.problems.update(dict(source="jsonl", split="", num_problems=0))
  sd.update(dict(steps=200, prompts_per_step=32, group_size=8, max_prompt_len=4096, max_teacher_prompt_len=12_288,
                 learning_rate=1e-6, end_learning_rate=1e-7, warmup_steps=10, eval_every=50, eval_problems=131,
                 eval_samples=10, checkpoint_every=25))
  sd.rollout.update(dict(temperature=1.1, top_k=0, top_p=1.0, max_new_tokens=8192, batch_size=64))
  sd.sdsd.chunk_size = 4096
  return c
