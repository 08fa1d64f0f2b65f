"""One problem, one prompt: synthesis, on-policy rollouts, evaluation and the evals CLI see the same text."""

from pipeline_fixtures import context, micro_config, task_tokenizer_dir

from ssd_jax.data.problem_files import load_problem_file
from ssd_jax.data.prompt_set import PromptSet, chat_prompt_ids
from ssd_jax.pipeline.problems import load_problems


def _humaneval_everywhere(config):
  for section in (config.synthesize.problems, config.eval.problems, config.self_distill.problems):
    section.update(dict(source="humaneval", path="", num_problems=5, dedup=True))
  return config


def test_every_stage_renders_the_same_prompt(tmp_path):
  config = _humaneval_everywhere(micro_config("synthesize,self_distill,eval"))
  config.tokenizer.path = task_tokenizer_dir(str(tmp_path))
  config.prompting.system_prompt = "Answer in Python."
  ctx = context(config, tmp_path)
  synthesis = ctx.prompts(config.synthesize.problems)
  rollouts = ctx.prompts(config.self_distill.problems)
  evaluation = ctx.prompts(config.eval.problems)
  assert synthesis == rollouts == evaluation and len(synthesis) == 5
  for problem, messages, ids in zip(synthesis.problems, synthesis.messages, synthesis.ids, strict=True):
    assert ctx.messages(problem) == messages  # What pre-training and teacher contexts build on.
    assert messages[0] == {"role": "system", "content": "Answer in Python."}
    assert problem.starter_code.strip() in messages[1]["content"]
    assert tuple(chat_prompt_ids(ctx.tokenizer, messages)) == ids
  # The evals CLI reads the same problems.
  assert load_problem_file("humaneval")[:5] == list(synthesis.problems)
  assert load_problems(config.eval.problems, seed=0) == list(evaluation.problems)


def test_select_keeps_the_three_aligned(tmp_path):
  tokenizer_dir = task_tokenizer_dir(str(tmp_path))
  config = micro_config("eval")
  config.tokenizer.path = tokenizer_dir
  prompts = context(config, tmp_path).prompts(config.eval.problems)
  picked = prompts.select([2, 0])
  assert picked.task_ids == (prompts.task_ids[2], prompts.task_ids[0])
  assert picked.ids == (prompts.ids[2], prompts.ids[0]) and picked.messages[1] == prompts.messages[0]
  assert isinstance(picked, PromptSet) and picked.longest() == max(len(i) for i in picked.ids)


def test_halves_of_a_problem_set_are_disjoint_and_cover_it():
  config = micro_config("eval")
  section = config.eval.problems
  section.update(dict(source="humaneval", num_problems=0))
  everything = {p.task_id for p in load_problems(section, seed=0)}
  section.half = "a"
  first = [p.task_id for p in load_problems(section, seed=0)]
  section.half = "b"
  second = [p.task_id for p in load_problems(section, seed=0)]
  assert not set(first) & set(second) and set(first) | set(second) == everything
  assert len(first) == len(second) == 82
  assert first != sorted(everything)[:82]  # Seeded by id, not the file's order.
  section.half_seed = 1
  assert [p.task_id for p in load_problems(section, seed=0)] != second


def test_replicates_with_other_seeds_are_tested_on_the_same_builtin_problems():
  config = micro_config("synthesize,eval")
  ids = lambda section, seed: [p.task_id for p in load_problems(section, seed)]
  default = ids(config.eval.problems, 0)
  assert ids(config.eval.problems, 1) == default
  assert ids(config.synthesize.problems, 0) != ids(config.synthesize.problems, 1)  # training varies with the run
  config.eval.problems.seed = 3
  assert ids(config.eval.problems, 0) == ids(config.eval.problems, 1) != default
  config.eval.problems.seed = -1  # the run's seed, as before
  assert ids(config.eval.problems, 0) == default != ids(config.eval.problems, 1)
