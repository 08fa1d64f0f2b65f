"""The `pretrain` stage (built-in task): a tiny base model trained from scratch, deliberately imperfect.

Builds the task tokenizer in the workdir, trains a model of the configured preset (with `model.overrides`) on
`tasks.pretrain_corpus` as chat-formatted examples with the loss on the answer (the shared trainer: packing,
the jitted step, resumable checkpoints), and exports it as the run's base model (`models/base`). The corpus
holds a share of wrong answers and training is short, so the base model knows the format but not every
program: SSD has room to move pass@1 and the pass@k curve. A share of the examples
(`pretrain.context_share`) is laid out the way the self-distillation teacher sees a problem
(`onpolicy.teacher_corpus`); those are drawn from the examples with a correct answer, so the corpus keeps
its configured shares of wrong and slipped answers.
"""

from __future__ import annotations

import os
import random

import jax
from absl import logging

from ssd_jax import config as config_lib
from ssd_jax.data.sft_pipeline import Conversation, conversation_dataset
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.onpolicy.teacher_corpus import context_conversations
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.onpolicy_setup import templates_from
from ssd_jax.pipeline.training import train_cross_entropy
from ssd_jax.tasks import build_task_tokenizer, pretrain_corpus, render_answer, solutions_for


def pretrain_conversations(ctx: RunContext) -> list[Conversation]:
  """The pre-training conversations: the corpus, a `context_share` of it in the teacher's layouts.

  The examples laid out with context get a correct answer, so they are drawn among those whose answer is
  already correct: replacing a wrong or slipped one would lower the corpus's `corruption_rate` and
  `lock_slip_rate` below what is configured.

  Raises:
    ConfigError: the task has fewer problems than `num_examples`, or the corpus fewer correct answers than
      `context_share` of it.
  """
  config, section = ctx.config, ctx.config.pretrain
  try:
    corpus = pretrain_corpus(
      section.num_examples,
      seed=config.seed,
      corruption_rate=section.corruption_rate,
      lock_slip_rate=section.lock_slip_rate,
    )
  except ValueError as e:  # The task has fewer distinct problems than asked for.
    raise config_lib.ConfigError(f"field 'pretrain.num_examples' = {section.num_examples}: {e}") from None
  correct = [
    i for i, (problem, answer) in enumerate(corpus) if answer in {render_answer(s) for s in solutions_for(problem)}
  ]
  wanted = round(section.context_share * len(corpus))
  if wanted > len(correct):
    raise config_lib.ConfigError(
      f"field 'pretrain.context_share' = {section.context_share} asks for {wanted} examples in the teacher's "
      f"layouts, but only {len(correct)} of the {len(corpus)} have a correct answer (pretrain.corruption_rate "
      f"{section.corruption_rate}, pretrain.lock_slip_rate {section.lock_slip_rate}): lower one of them"
    )
  picked = set(random.Random(f"pretrain-context-share:{config.seed}").sample(correct, wanted))
  in_context = [i in picked for i in range(len(corpus))]
  with_context = iter(
    context_conversations(
      [problem for (problem, _), chosen in zip(corpus, in_context) if chosen],
      ctx.messages,
      templates_from(config.self_distill),
      seed=config.seed,
      limits=ctx.sandbox_limits,
      workers=ctx.sandbox_workers,
      allow_weak_sandbox=ctx.sandbox_allow_weak,
    )
  )
  return [
    next(with_context) if chosen else (ctx.messages(problem), answer)
    for (problem, answer), chosen in zip(corpus, in_context)
  ]


def _task_tokenizer(ctx: RunContext):
  path = ctx.layout.task_tokenizer
  # build_task_tokenizer writes tokenizer.json last and whole: with it, the directory is complete.
  if ctx.is_coordinator and not os.path.isfile(os.path.join(path, "tokenizer.json")):
    build_task_tokenizer(path, seed=ctx.seed, vocab_size=ctx.config.pretrain.tokenizer_vocab_size)
  ctx.sync("task tokenizer")
  return load_tokenizer(path)


def run(ctx: RunContext) -> None:
  """Trains the built-in task's base model and writes it to `models/base` (a Hugging Face directory)."""
  config, section, cfg = ctx.config, ctx.config.pretrain, ctx.model_cfg
  tokenizer = _task_tokenizer(ctx)
  if cfg.vocab_size != tokenizer.vocab_size:  # The task's text has fewer merges to learn than were asked for.
    raise config_lib.ConfigError(
      f"field 'pretrain.tokenizer_vocab_size' = {section.tokenizer_vocab_size}: the task tokenizer reached "
      f"{tokenizer.vocab_size} tokens, and the model's vocab_size is {cfg.vocab_size}: set both to "
      f"{tokenizer.vocab_size} (field 'model.overrides.vocab_size')"
    )
  graphdef, params = ctx.init_model()
  conversations = pretrain_conversations(ctx)
  dataset, counts = conversation_dataset(
    tokenizer,
    conversations,
    seq_len=section.seq_len,
    global_batch_size=section.global_batch_size,
    seed=config.seed,
    shard_index=jax.process_index(),
    shard_count=jax.process_count(),
  )
  if counts.no_response == counts.read:  # Every answer lies past the row: training would learn nothing.
    raise config_lib.ConfigError(
      f"field 'pretrain.seq_len' = {section.seq_len} leaves no answer token in any of this process's "
      f"{counts.read} examples (their prompts fill the first {counts.max_len} tokens): raise it"
    )
  num_params = sum(x.size for x in jax.tree.leaves(params))
  cut = (
    f" ({counts.truncated} cut at {counts.max_len} tokens, {counts.no_response} more with no answer token left)"
    if counts.truncated or counts.no_response
    else ""
  )
  print(
    f"[pretrain] {num_params:,} parameters, {len(conversations)} examples{cut}, {section.steps} steps of "
    f"{section.global_batch_size} x {section.seq_len} tokens"
  )
  params = train_cross_entropy(
    ctx,
    graphdef,
    params,
    lambda: iter(dataset),
    section,
    stage="pretrain",
    metadata={"stage": "pretrain", "preset": config.model.preset, "examples": len(conversations)},
  )
  out = ctx.export_model(params, cfg, "base", tokenizer_source=ctx.layout.task_tokenizer)
  logging.info("pretrain: base model written to %s", out)
