"""The SFT stage: killed mid-way and rerun, it exports exactly the parameters of an uninterrupted run."""

import json
import os

import numpy as np
import pytest
from data_records_fixtures import stored_record
from pipeline_fixtures import context, micro_config, task_tokenizer_dir, write_random_base_model
from safetensors.numpy import load_file

from ssd_jax.data import records as records_lib
from ssd_jax.data.prompt_set import chat_prompt_ids
from ssd_jax.data.tokenizer import load_tokenizer
from ssd_jax.pipeline import training
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.stages import sft
from ssd_jax.tasks import builtin_problems, render_answer, solutions_for

STEPS = 4


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """A random base model and records of correct answers to 24 synth problems."""
  root = tmp_path_factory.mktemp("sft_inputs")
  tokenizer_dir = task_tokenizer_dir(str(root))
  base = write_random_base_model(root / "base", tokenizer_dir)
  tokenizer = load_tokenizer(tokenizer_dir)
  with records_lib.RecordShardWriter(root / "records", 0, 10) as writer:
    for problem in builtin_problems("synth", 24, seed=2):
      messages = [{"role": "user", "content": problem.question}]
      writer.write(
        stored_record(
          problem.task_id,
          render_answer(solutions_for(problem)[0]),
          chat_prompt_ids(tokenizer, messages),  # What the sampler would have conditioned on.
          tokenizer,
          source_checkpoint=base,
          prompt_messages=messages,
        )
      )
  return base, str(root / "records")


def _run(config, workdir, records):
  layout = RunLayout(str(workdir))
  os.makedirs(os.path.dirname(layout.records), exist_ok=True)
  if not os.path.exists(layout.records):
    os.symlink(records, layout.records)
  sft.run(context(config, workdir))
  return load_file(os.path.join(layout.model("ssd"), "model.safetensors"))


def _config(base):
  config = micro_config("sft")
  config.model.hf_dir = base
  config.sft.steps = STEPS
  return config


@pytest.mark.slow
def test_killed_sft_resumes_bit_identical(inputs, tmp_path, monkeypatch):
  base, records = inputs
  full = _run(_config(base), tmp_path / "full", records)
  exported = RunLayout(str(tmp_path / "full")).model("ssd")
  assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(os.listdir(exported))
  with open(os.path.join(exported, "config.json")) as f, open(os.path.join(base, "config.json")) as g:
    assert json.load(f) == json.load(g)

  real_make_step = training.make_sft_step

  def crashing_make_step(*args, **kwargs):
    step = real_make_step(*args, **kwargs)
    calls = []

    def crash_on_third(state, batch):
      if len(calls) == 2:
        raise KeyboardInterrupt("killed")
      calls.append(1)
      return step(state, batch)

    crash_on_third.place_batch = step.place_batch
    return crash_on_third

  monkeypatch.setattr(training, "make_sft_step", crashing_make_step)
  with pytest.raises(KeyboardInterrupt):
    _run(_config(base), tmp_path / "resumed", records)
  monkeypatch.setattr(training, "make_sft_step", real_make_step)
  layout = RunLayout(str(tmp_path / "resumed"))
  assert sorted(os.listdir(layout.checkpoints("sft"))) == ["1", "2"]
  assert not os.path.exists(layout.model("ssd"))

  resumed = _run(_config(base), tmp_path / "resumed", records)
  assert sorted(resumed) == sorted(full)
  for name in full:
    np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)
  assert any(
    not np.array_equal(full[name], load_file(os.path.join(base, "model.safetensors"))[name]) for name in full
  ), "training changed nothing"

  # One metrics line per step across the crash; the learning rate follows the configured warm-up + cosine.
  steps = [json.loads(line)["step"] for line in open(os.path.join(layout.logs("sft"), "metrics.jsonl"))]
  assert sorted(set(steps)) == list(range(1, STEPS + 1))
