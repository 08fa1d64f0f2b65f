"""The pretrain stage refuses, naming the field, a corpus its rows or tokenizer cannot carry, before training."""

import os

import pytest
from pipeline_fixtures import micro_config, run_pipeline

from ssd_jax import config as config_lib


def test_rows_too_short_for_any_answer_are_refused_before_training(tmp_path):
  config = micro_config("pretrain")
  config.pretrain.seq_len = 8  # Every prompt fills the row: the model would train on nothing.
  with pytest.raises(config_lib.ConfigError, match=r"field 'pretrain.seq_len' = 8 leaves no answer token"):
    run_pipeline(config, tmp_path)
  assert not os.path.exists(tmp_path / "models" / "base")
  assert not os.path.exists(tmp_path / "pretrain" / "checkpoints")


def test_a_vocabulary_the_task_cannot_fill_is_refused_naming_the_size_it_reached(tmp_path):
  config = micro_config("pretrain")
  config.pretrain.tokenizer_vocab_size = config.model.overrides.vocab_size = 20000
  with pytest.raises(config_lib.ConfigError, match=r"field 'pretrain.tokenizer_vocab_size' = 20000: .* reached \d+"):
    run_pipeline(config, tmp_path)
