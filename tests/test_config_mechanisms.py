"""The toy section, the teacher diagnostic fields and the paper-faithful on-policy defaults."""

import pytest
from config_files import load_config

from ssd_jax import config as config_lib
from ssd_jax.pipeline.ssd_toy_run import ToyRunConfig


def test_toy_config_runs_only_the_toy_stage_and_converts():
  c = load_config("ssd_toy")
  config_lib.validate(c)
  assert config_lib.stage_names(c) == ("toy",)
  run = ToyRunConfig.from_section(c.toy, c.seed)
  assert run.spec.fork_branches == (0.4, 0.25, 0.15, 0.1) and run.ks == (1, 8)
  assert run.train_decoding.top_k == 20 and run.eval_temperatures[0] == 0.5


@pytest.mark.parametrize(
  "field,value",
  [
    ("pattern", "LXF"),
    ("fork_branches", "0.6,0.5"),
    ("lock_right", 1.0),
    ("eval_temperatures", "0.5,0"),
    ("ks", "1,2.5"),
    ("sft_steps", 0),
  ],
)
def test_bad_toy_field_is_named(field, value):
  c = config_lib.base_config()
  c.toy[field] = value
  with pytest.raises(config_lib.ConfigError, match=f"toy.{field}"):
    config_lib.validate(c)


def test_diagnostic_fields_are_checked():
  c = config_lib.base_config()
  assert c.self_distill.diagnostic_problems > 0  # On by default: a teacher worse than the student is worth a warning.
  c.self_distill.diagnostic_problems = -1
  with pytest.raises(config_lib.ConfigError, match="self_distill.diagnostic_problems"):
    config_lib.validate(c)


def test_sft_packing_and_lock_slip_fields():
  c = config_lib.base_config()
  assert c.sft.pack is True and c.pretrain.lock_slip_rate == 0.0  # Defaults keep earlier runs as they were.
  c.pretrain.lock_slip_rate = 1.5
  c.self_distill.updates_per_batch = 0
  with pytest.raises(config_lib.ConfigError, match="pretrain.lock_slip_rate") as error:
    config_lib.validate(c)
  assert "self_distill.updates_per_batch" in str(error.value)


def test_smollm2_humaneval_keeps_synthesis_and_evaluation_apart():
  c = load_config("smollm2_humaneval")
  config_lib.validate(c)
  assert config_lib.stage_names(c) == ("synthesize", "sft", "eval", "report")
  assert (c.synthesize.problems.half, c.eval.problems.half) == ("a", "b")
  assert c.synthesize.problems.half_seed == c.eval.problems.half_seed  # One split, two halves.
  assert c.eval_sampling.n >= 10 and len(config_lib.decoding_grid(c).settings()) >= 2
  assert (c.sampling.temperature, c.sampling.top_k, c.sampling.top_p) == (0.8, 20, 0.8)


def test_default_model_and_tokenizer_share_a_vocabulary_with_whole_constants(tmp_path):
  """The CPU default's model takes the task tokenizer's vocabulary, in which the question's constants are one token:
  the in-context teacher copies a demonstration's constants as single tokens."""
  from ssd_jax.data.tokenizer import load_tokenizer
  from ssd_jax.tasks import build_task_tokenizer

  c = load_config("default")
  config_lib.validate(c)
  assert c.model.overrides.vocab_size == c.pretrain.tokenizer_vocab_size == 1024
  assert c.pretrain.context_share >= 0.5 and c.self_distill.learning_rate == c.sft.learning_rate
  tokenizer = load_tokenizer(
    str(build_task_tokenizer(tmp_path, seed=c.seed, vocab_size=c.pretrain.tokenizer_vocab_size))
  )
  for number in (" 10", " 12", " 17"):
    assert len(tokenizer.encode(number)) == 1, number
