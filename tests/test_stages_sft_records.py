"""The SFT stage reads its records before it loads the model: it reports what becomes of them, or fails."""

import pytest
from data_records_fixtures import stored_record
from pipeline_fixtures import context, micro_config, task_tokenizer_dir

from ssd_jax.data import records as records_lib
from ssd_jax.data.prompt_set import chat_prompt_ids
from ssd_jax.pipeline.context import RunContext
from ssd_jax.stages import sft

SOLUTION = "```python\ndef add(a, b):\n    return a + b\n```"


class ModelLoaded(Exception):
  """Raised in place of loading the model: the stage got past its records."""


@pytest.fixture
def run_sft(tmp_path_factory, tmp_path, monkeypatch):
  """Runs the SFT stage on records with the given completions, up to loading the model."""
  config = micro_config("sft")
  config.tokenizer.path = task_tokenizer_dir(str(tmp_path_factory.getbasetemp()))

  def load_model(self, directory):
    raise ModelLoaded(directory)

  monkeypatch.setattr(RunContext, "load_model", load_model)

  def run(completions):
    ctx = context(config, tmp_path)
    messages = [{"role": "user", "content": "Add two numbers."}]
    with records_lib.RecordShardWriter(ctx.layout.records, 0, 10) as writer:
      for index, completion in enumerate(completions):
        writer.write(
          stored_record(
            f"t{index}", completion, chat_prompt_ids(ctx.tokenizer, messages), ctx.tokenizer, prompt_messages=messages
          )
        )
    sft.run(ctx)

  return run


def test_counts_are_reported_before_the_model_is_loaded(run_sft, capsys):
  with pytest.raises(ModelLoaded):
    run_sft([SOLUTION, "", SOLUTION * 40, SOLUTION])
  assert (
    "[sft] examples: 4 read, 1 truncated to 129 tokens (their end-of-turn token is lost), 1 dropped as degenerate "
    "(empty output or one-line stub), 0 dropped with no response token in the first 129 (the prompt fills the row, or "
    "the response is empty), 3 trained on"
  ) in capsys.readouterr().out.splitlines()


def test_records_with_nothing_to_train_on_fail_before_the_model_is_loaded(run_sft):
  with pytest.raises(ValueError, match=r"all 3 records of shard 0 of 1 were filtered out.*: 3 degenerate"):
    run_sft(["", "```python\npass\n```", "   "])
