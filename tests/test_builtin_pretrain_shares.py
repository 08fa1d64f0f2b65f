"""The built-in task's pre-training conversations keep the configured shares of wrong and slipped answers."""

import math

import pytest
from pipeline_fixtures import context

from ssd_jax.config import base_config
from ssd_jax.stages import pretrain
from ssd_jax.tasks import render_answer, solutions_for, wrong_solutions_for

CONTEXT_MESSAGES = [{"role": "user", "content": "in the teacher's layout"}]


def _laid_out_with_context(problems, messages_for, templates, **kwargs):
  """Stands in for the teacher's layouts (which run the sandbox): a marked prompt and a correct answer."""
  return [(CONTEXT_MESSAGES, render_answer(solutions_for(p)[0])) for p in problems]


def _config(num_examples, context_share, corruption_rate=0.1, lock_slip_rate=0.1):
  c = base_config()
  c.prompting.system_prompt = ""
  c.pretrain.update(
    dict(
      num_examples=num_examples,
      context_share=context_share,
      corruption_rate=corruption_rate,
      lock_slip_rate=lock_slip_rate,
    )
  )
  return c


def _within(count, trials, rate):
  """True when `count` of `trials` is within 4.5 standard deviations of a binomial(trials, rate)."""
  return abs(count - trials * rate) <= 4.5 * math.sqrt(trials * rate * (1 - rate))


def test_context_share_leaves_the_wrong_and_slipped_shares_as_configured(tmp_path, monkeypatch):
  monkeypatch.setattr(pretrain, "context_conversations", _laid_out_with_context)
  config = _config(4000, context_share=0.5)
  conversations = pretrain.pretrain_conversations(context(config, tmp_path))
  assert conversations == pretrain.pretrain_conversations(context(config, tmp_path))  # Deterministic.
  corpus = pretrain.pretrain_corpus(4000, config.seed, corruption_rate=0.1, lock_slip_rate=0.1)
  assert len(conversations) == len(corpus)
  in_context = wrong = slipped = 0
  for (problem, _), (messages, answer) in zip(corpus, conversations):
    in_context += messages == CONTEXT_MESSAGES
    if answer in [render_answer(code) for code in wrong_solutions_for(problem)]:
      wrong += 1
    elif answer not in [render_answer(code) for code in solutions_for(problem)]:
      slipped += 1
  # Wrong answers are a corruption_rate share of the corpus; slips a lock_slip_rate share of the rest.
  assert _within(wrong, 4000, 0.1), wrong
  assert _within(slipped, 4000 - wrong, 0.1), slipped
  assert in_context == 2000


def test_a_context_share_past_the_correct_answers_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(pretrain, "context_conversations", _laid_out_with_context)
  with pytest.raises(ValueError, match="pretrain.context_share"):
    pretrain.pretrain_conversations(context(_config(200, context_share=0.95), tmp_path))
  assert (
    len(pretrain.pretrain_conversations(context(_config(200, 1.0, corruption_rate=0.0, lock_slip_rate=0.0), tmp_path)))
    == 200
  )
