"""Pre-training examples in the teacher's layout: the context is real (known solutions, executed feedback)."""

import re

from pipeline_fixtures import context

from ssd_jax.config import base_config
from ssd_jax.data.chat import problem_to_messages
from ssd_jax.onpolicy.teacher_context import TeacherTemplates
from ssd_jax.onpolicy.teacher_corpus import context_conversations
from ssd_jax.stages.pretrain import pretrain_conversations
from ssd_jax.tasks import builtin_problems, pretrain_corpus, render_answer, solutions_for, wrong_solutions_for

TEMPLATES = TeacherTemplates(max_feedback_chars=4000)


def _passing_tests(code, tests):
  """The referee: runs each assert against `code` in this process (the task's own trusted code)."""
  passed = []
  for test in tests:
    scope = {}
    exec(code, scope)  # pylint: disable=exec-used
    try:
      exec(test.code, scope)  # pylint: disable=exec-used
      passed.append(True)
    except AssertionError:
      passed.append(False)
  return passed


def _messages(problem):
  return problem_to_messages(problem, system_prompt=None)


def _config():
  c = base_config()
  c.prompting.system_prompt = ""
  c.eval.workers = 2
  return c


def test_context_examples_show_known_solutions_and_executed_feedback():
  problems = builtin_problems("pretrain", 9, seed=3)
  conversations = context_conversations(problems, _messages, TEMPLATES, seed=0, workers=2)
  assert len(conversations) == len(problems)
  layouts = []
  for problem, (messages, answer) in zip(problems, conversations):
    plain = _messages(problem)
    assert messages[:-1] == plain[:-1]
    content = messages[-1]["content"]
    assert content.startswith(plain[-1]["content"] + "\n\n")
    solutions = [render_answer(code) for code in solutions_for(problem)]
    assert answer in solutions  # The answer after any context is correct.
    demonstration = re.search(r"Here is a correct solution:\n(.*?)\n\nNow solve", content, re.S)
    feedback = re.search(r"Your previous attempt failed:\n(.*?)\n\n(Here is|Now solve)", content, re.S)
    if demonstration:
      # The answer repeats the demonstration: a model that learns from these examples learns to use it.
      assert demonstration.group(1) == answer
    if feedback:
      # The feedback is the sandbox's verdict on one of the problem's wrong solutions: its pass count and
      # its first failing test agree with running that solution here.
      counts = re.match(r"(\d+) of (\d+) tests passed\.", feedback.group(1))
      first_failing = re.search(r"Test (test_\d+): failed", feedback.group(1)).group(1)
      verdicts = {tuple(_passing_tests(code, problem.tests)) for code in wrong_solutions_for(problem)}
      matching = [v for v in verdicts if sum(v) == int(counts.group(1)) and f"test_{v.index(False)}" == first_failing]
      assert int(counts.group(2)) == len(problem.tests) and matching, feedback.group(1)
    layouts.append(("demonstration" if demonstration else "") + ("feedback" if feedback else ""))
  assert sorted(layouts) == sorted(["demonstration", "feedback", "demonstrationfeedback"] * 3)


def test_context_share_lays_out_that_share_of_the_corpus(tmp_path):
  config = _config()
  config.pretrain.num_examples = 24
  config.pretrain.context_share = 0.0
  corpus = pretrain_corpus(24, seed=config.seed, corruption_rate=config.pretrain.corruption_rate)
  plain = [(_messages(p), a) for p, a in corpus]
  assert pretrain_conversations(context(config, tmp_path)) == plain

  config.pretrain.context_share = 0.5
  mixed = pretrain_conversations(context(config, tmp_path))
  assert mixed == pretrain_conversations(context(config, tmp_path))  # Deterministic.
  changed = [i for i, (m, p) in enumerate(zip(mixed, plain)) if m != p]
  assert 6 <= len(changed) <= 18
  for i, (messages, answer) in enumerate(mixed):
    if i not in changed:
      continue
    assert messages[-1]["content"] != plain[i][0][-1]["content"]
    assert answer in [render_answer(code) for code in solutions_for(corpus[i][0])]
