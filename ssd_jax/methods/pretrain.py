"""The `pretrain` stage (built-in task): a tiny base model trained from scratch, deliberately imperfect.

Builds the task tokenizer in the workdir, trains a model of the configured preset (with
`model.overrides`) on `tasks.pretrain_corpus` as chat-formatted examples with the loss on the answer
(the SFT machinery: packing, the jitted step, resumable checkpoints), and exports it as the run's base
model. The corpus holds a share of wrong answers and training is short, so the base model knows the
format but not every program: SSD has room to move pass@1 and the pass@k curve.

A share of the examples (`pretrain.context_share`) is laid out the way the self-distillation teacher
sees a problem: the question with a correct demonstration, with the sandbox's feedback on a wrong
attempt, or with both, rendered by the teacher's own builders (`teacher_context`), then a correct
answer. Self-distillation with a privileged-context teacher assumes a model that can use such context;
a model trained from scratch only learns that from examples of it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import grain
import jax
import ml_collections
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from ssd_jax import sharding
from ssd_jax.data.sft_examples import ChatTokenizer, build_sft_example, end_of_turn_ids
from ssd_jax.data.sft_pipeline import PackedIterDataset
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.evals import SandboxLimits, evaluate
from ssd_jax.evals.problems import Problem
from ssd_jax.methods import model_io, problem_source, training
from ssd_jax.methods import teacher_context as tc
from ssd_jax.methods.runtime import Runtime
from ssd_jax.methods.self_distill import templates_from
from ssd_jax.methods.ssd import Layout
from ssd_jax.tasks import build_task_tokenizer, pretrain_corpus, render_answer, solutions_for, wrong_solutions_for
from ssd_jax.tasks.builtin import variant_weights

Conversation = tuple[Sequence[dict[str, str]], str]  # (prompt messages, answer text)


def conversation_dataset(
  tokenizer: ChatTokenizer,
  conversations: Sequence[Conversation],
  *,
  seq_len: int,
  global_batch_size: int,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
) -> grain.IterDataset:
  """Packed, batched SFT rows from (messages, answer) pairs, repeated forever in reshuffled epochs.

  Args:
    tokenizer: the chat tokenizer.
    conversations: prompt messages with the answer to train on (loss on the answer and end of turn).
    seq_len: slots per packed row.
    global_batch_size: rows per step over all processes.
    seed: shuffle seed.
    shard_index, shard_count: this process's share of the conversations.

  Returns:
    An IterDataset of dicts of int32 [global_batch_size // shard_count, seq_len] arrays whose iterator
    is checkpointable.
  """
  if global_batch_size % shard_count:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by {shard_count} processes")
  end_ids = end_of_turn_ids(tokenizer)

  def to_example(conversation: Conversation):
    messages, answer = conversation
    return build_sft_example(tokenizer, messages, answer, seq_len + 1, end_ids=end_ids)

  dataset = grain.MapDataset.source(list(conversations))[shard_index::shard_count]
  dataset = dataset.shuffle(seed=seed).repeat(None).map(to_example)
  dataset = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2))
  return PackedIterDataset(dataset, seq_len).batch(global_batch_size // shard_count, drop_remainder=True)


# The teacher's context layouts: what SDSD shows, what SDPO shows for a failed rollout without (feedback)
# and with (both) a successful sibling.
CONTEXT_LAYOUTS = ("demonstration", "feedback", "both")


def _correct_answer(problem: Problem, rng: random.Random) -> str:
  solutions = solutions_for(problem)
  return render_answer(rng.choices(solutions, weights=variant_weights(len(solutions)))[0])


def context_conversations(
  problems: Sequence[Problem],
  prompting: ml_collections.ConfigDict,
  templates: tc.TeacherTemplates,
  *,
  seed: int,
  limits: SandboxLimits = SandboxLimits(),
  workers: int | None = None,
) -> list[Conversation]:
  """Built-in problems laid out as the self-distillation teacher sees them, each with a correct answer.

  Each layout of CONTEXT_LAYOUTS takes an equal share, in a seeded order. A demonstration is a known
  correct solution drawn with the pre-training odds (often the answer itself, sometimes another fork);
  feedback is what the sandbox reports for one of the problem's wrong solutions, really executed. The
  context goes through `teacher_context.choose_contexts` and `teacher_messages`, so caps and wording
  match the teacher's.

  Args:
    problems: built-in problems (their solutions and wrong solutions are regenerated from the task id).
    prompting: the prompt section (system prompt, public tests).
    templates: the teacher's templates.
    seed: picks layouts, demonstrations, wrong attempts and answers deterministically.
    limits, workers: the sandbox that runs the wrong attempts.

  Returns:
    One (teacher prompt messages, correct answer) pair per problem, in order.
  """
  rng = random.Random(f"pretrain-context:{seed}")
  layouts = [CONTEXT_LAYOUTS[i % len(CONTEXT_LAYOUTS)] for i in range(len(problems))]
  rng.shuffle(layouts)
  wrong = {
    p.task_id: render_answer(rng.choice(wrong_solutions_for(p)))
    for p, layout in zip(problems, layouts)
    if layout != "demonstration"
  }
  verdicts = (
    evaluate(
      [p for p in problems if p.task_id in wrong], {k: [v] for k, v in wrong.items()}, limits=limits, workers=workers
    ).by_task_id()
    if wrong
    else {}
  )
  conversations = []
  for problem, layout in zip(problems, layouts):
    # The rollout being scored is attempt 0; a passing sibling (attempt 1) supplies the demonstration.
    attempts = []
    if layout == "demonstration":
      attempts.append(tc.Attempt("", passed=True, feedback=""))
    else:
      run = verdicts[problem.task_id].samples[0]
      attempts.append(tc.Attempt(wrong[problem.task_id], passed=run.passed, feedback=run.feedback))
    if layout != "feedback":
      attempts.append(tc.Attempt(_correct_answer(problem, rng), passed=True, feedback=""))
    kind = {"demonstration": "demonstration", "feedback": "feedback", "both": "feedback_or_demonstration"}[layout]
    choice = tc.choose_contexts(attempts, kind=kind, templates=templates)[0]
    messages = tc.teacher_messages(problem_source.prompt_messages(problem, prompting), choice, templates)
    conversations.append((messages, _correct_answer(problem, rng)))
  return conversations


def pretrain_conversations(config: ml_collections.ConfigDict) -> list[Conversation]:
  """The pre-training conversations: the corpus, a `context_share` of it in the teacher's layouts."""
  section = config.pretrain
  corpus = pretrain_corpus(section.num_examples, seed=config.seed, corruption_rate=section.corruption_rate)
  rng = random.Random(f"pretrain-context-share:{config.seed}")
  in_context = [rng.random() < section.context_share for _ in corpus]
  limits = SandboxLimits(
    timeout_s=config.eval.timeout_s, cpu_time_s=config.eval.timeout_s, memory_mb=config.eval.memory_mb
  )
  with_context = iter(
    context_conversations(
      [problem for (problem, _), chosen in zip(corpus, in_context) if chosen],
      config.prompting,
      templates_from(config.self_distill),
      seed=config.seed,
      limits=limits,
      workers=config.eval.workers or None,
    )
  )
  return [
    next(with_context) if chosen else (problem_source.prompt_messages(problem, config.prompting), answer)
    for (problem, answer), chosen in zip(corpus, in_context)
  ]


def _task_tokenizer(config: ml_collections.ConfigDict, layout: Layout):
  if jax.process_index() == 0 and not os.path.isfile(os.path.join(layout.task_tokenizer, "tokenizer.json")):
    build_task_tokenizer(layout.task_tokenizer, seed=config.seed, vocab_size=config.pretrain.tokenizer_vocab_size)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("task tokenizer")
  return load_tokenizer(layout.task_tokenizer)


def run_pretrain(config: ml_collections.ConfigDict, workdir: str, run: Runtime) -> None:
  """Trains the built-in task's base model and writes it to `models/base` (a Hugging Face directory)."""
  layout = Layout(workdir)
  section = config.pretrain
  tokenizer = _task_tokenizer(config, layout)
  cfg = model_io.config_with_overrides(config, run)
  if cfg.vocab_size != tokenizer.vocab_size:
    raise ValueError(
      f"model vocab_size {cfg.vocab_size} (preset {config.model.preset!r}) != task tokenizer "
      f"vocabulary {tokenizer.vocab_size} (pretrain.tokenizer_vocab_size)"
    )
  model = sharding.create_sharded_model(cfg, run.mesh, run.rules, seed=config.seed)
  graphdef, params = nnx.split(model)
  conversations = pretrain_conversations(config)
  dataset = conversation_dataset(
    tokenizer,
    conversations,
    seq_len=section.seq_len,
    global_batch_size=section.global_batch_size,
    seed=config.seed,
    shard_index=jax.process_index(),
    shard_count=jax.process_count(),
  )
  num_params = sum(x.size for x in jax.tree.leaves(params))
  print(
    f"[pretrain] {num_params:,} parameters, {len(conversations)} examples, {section.steps} steps of "
    f"{section.global_batch_size} x {section.seq_len} tokens"
  )
  params = training.train(
    run,
    graphdef,
    params,
    lambda: iter(dataset),
    section,
    checkpoint_dir=layout.checkpoints("pretrain"),
    log_dir=layout.logs("pretrain"),
    metadata={"stage": "pretrain", "preset": config.model.preset, "examples": len(conversations)},
  )
  model_io.export_hf(params, cfg, layout.model("base"), layout.task_tokenizer)
  logging.info("pretrain: base model written to %s", layout.model("base"))
