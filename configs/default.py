"""CPU default: SSD, SDSD and SDPO from the same base on the built-in task, in minutes on a laptop-class CPU.

pretrain (a tiny model from scratch, deliberately imperfect; half of its examples show the question
with a demonstration or sandbox feedback, as the self-distillation teacher sees it) -> synthesize (one
sample per prompt at T_train with top-k / top-p) -> sft (plain cross-entropy on those samples: SSD) ->
self_distill (the teacher diagnostic, then SDSD, SDPO and SDPO with blanked feedback, on-policy, each from
the base) -> eval (base, SSD, SDSD, SDPO, SDPO-blank: n samples per dev problem at each T_eval of the grid, then each model's best setting on the test problems) -> report (each
model at its best against the base at its own: test pass@k, paired intervals, T curves, correct-solution
diversity, and the table on stdout).

    python -m ssd_jax.main --config=configs/default.py --workdir=runs/default
"""

from ssd_jax.config import base_config


def get_config():
  config = base_config()
  config.stages = "pretrain,synthesize,sft,self_distill,eval,report"
  config.model.preset = "tiny_qwen3"
  config.model.dtype = "float32"
  config.model.param_dtype = "float32"
  config.model.overrides.update(
    dict(
      hidden_size=128,
      intermediate_size=384,
      num_layers=2,
      num_heads=4,
      num_kv_heads=2,
      head_dim=32,
      max_position_embeddings=512,
      vocab_size=1024,  # The task tokenizer's: two-digit constants are one token each.
    )
  )
  config.prompting.system_prompt = ""  # The task template's own short system message.

  # Rows of 512 tokens: an example in the teacher's layout (question + demonstration and/or feedback +
  # answer) takes up to ~400 tokens, a plain one ~90. Half the examples are in the teacher's layout, and the
  # answer after a demonstration repeats it: 500 steps is about where copying it starts to pay (300 steps
  # left the teacher shown a demonstration below the student).
  config.pretrain.update(
    dict(
      steps=500,
      warmup_steps=30,
      learning_rate=3e-3,
      end_learning_rate=3e-4,
      global_batch_size=8,
      seq_len=512,
      checkpoint_every=100,
      log_every=10,
    )
  )
  config.pretrain.num_examples = 4000
  config.pretrain.corruption_rate = 0.1
  config.pretrain.context_share = 0.5
  config.pretrain.tokenizer_vocab_size = 1024

  # Synthesis with the paper's Llama-3.1-8B decoding (T_train 0.8 / top-k 20 / top-p 0.8); evaluation over
  # T_eval 0.3 / 0.7 / 1.1 at top-k 20 / top-p 0.8, each model at the T its dev problems prefer. With the
  # Qwen3-4B-Instruct row's T_train 1.6 SSD lowered pass@1 on this tiny model.
  config.sampling.update(dict(temperature=0.8, top_k=20, top_p=0.8, n=1, max_new_tokens=96, batch_size=64))
  config.synthesize.problems.num_problems = 256
  config.synthesize.prompts_per_chunk = 128
  config.synthesize.records_per_shard = 256

  # The paper's optimizer (AdamW 0.9/0.95, wd 0.1, cosine with warm-up) at a tiny model's learning rate.
  config.sft.update(
    dict(
      steps=40,
      warmup_steps=4,
      learning_rate=2e-4,
      end_learning_rate=4e-5,
      global_batch_size=8,
      seq_len=256,
      checkpoint_every=20,
      log_every=10,
    )
  )

  # On-policy self-distillation from the same base, sized for minutes: 8 steps of 8 prompts x 4 rollouts at
  # SSD's SFT learning rate (at 5e-5 the weights hardly moved).
  sd = config.self_distill
  sd.methods = "sdsd,sdpo,sdpo_blank"  # sdpo_blank: SDPO's teacher told only that an attempt failed (the ablation).
  sd.problems.num_problems = 128
  sd.update(
    dict(
      steps=8,
      prompts_per_step=8,
      group_size=4,
      max_prompt_len=256,
      max_teacher_prompt_len=416,
      learning_rate=2e-4,
      end_learning_rate=4e-5,
      warmup_steps=1,
      eval_every=4,
      eval_problems=32,
      eval_samples=4,
      checkpoint_every=4,
      diagnostic_problems=32,
    )
  )
  sd.rollout.update(dict(temperature=1.1, top_k=20, top_p=0.95, max_new_tokens=96, batch_size=32))
  sd.templates.max_feedback_chars = 300  # Keeps the teacher prompt within max_teacher_prompt_len.
  # SDPO's teacher sees the feedback beside a successful sibling too (SDPO's code: only without one), so the
  # blank-feedback ablation differs from SDPO on every failed rollout, not only in groups with no success.
  sd.sdpo.context = "feedback_or_demonstration"

  config.eval_sampling.update(dict(temperature=1.1, top_k=20, top_p=0.8, n=8, max_new_tokens=96, batch_size=64))
  config.eval.problems.num_problems = 64
  config.eval.models = "base,ssd,sdsd,sdpo,sdpo_blank"
  config.eval.ks = "1,2,4,8"
  config.eval.timeout_s = 5.0
  # Half of the 64 problems choose each model's T_eval, the other half are reported. Add
  # --config.eval.checkpoints=all to choose among the saved training steps too (slower).
  # Greedy is the coldest setting: a base whose best is cold is tuned to its best, not to the grid's edge.
  config.eval.grid.temperatures = "0,0.3,0.7,1.1"
  return config
