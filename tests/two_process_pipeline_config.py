"""Config of the 2-process pipeline test: every stage at micro size, run as `--config=` by ssd_jax.main."""

from pipeline_fixtures import micro_config

STAGES = "pretrain,synthesize,sft,self_distill,eval,report"


def get_config():
  c = micro_config(STAGES)
  c.sft.steps = 6  # Long enough to be killed in the middle.
  c.sft.checkpoint_every = 2  # Its 3 saves are all kept, so all are evaluated (eval.checkpoints = 'all').
  c.eval.tune_pass_at_n = False  # One test run per model: the pipeline tests cover the pass@n choice.
  sd = c.self_distill
  sd.methods = "sdsd,sdpo"
  sd.problems.num_problems = 6
  sd.update(
    dict(
      steps=2,
      prompts_per_step=2,
      group_size=4,
      max_teacher_prompt_len=250,
      learning_rate=1e-3,
      end_learning_rate=1e-4,
      eval_every=0,
      checkpoint_every=1,
    )
  )
  sd.rollout.update(dict(max_new_tokens=6, batch_size=8))
  sd.templates.max_feedback_chars = 300
  sd.sdpo.top_k = 8
  return c
