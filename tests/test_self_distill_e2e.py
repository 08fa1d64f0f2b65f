"""A micro end-to-end on-policy run: SDSD and SDPO, two steps each, on 8 fake devices; then a resume."""

import json
import os
import shutil

import numpy as np
import pytest
from flax import nnx
from pipeline_fixtures import run_pipeline
from safetensors.numpy import load_file

from ssd_jax.config import ConfigError, base_config, validate
from ssd_jax.model import presets
from ssd_jax.model.transformer import Transformer
from ssd_jax.pipeline import model_io
from ssd_jax.pipeline.onpolicy_setup import NothingDistilledError
from ssd_jax.tasks import build_task_tokenizer


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("base")
  tokenizer = build_task_tokenizer(root / "tokenizer")
  cfg = presets.get("tiny_qwen3", dtype="float32", param_dtype="float32")
  _, state = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
  model_io.export_hf(state, cfg, str(root / "model"), str(tokenizer))
  return str(root / "model")


def _config(base_dir, steps, methods="sdsd,sdpo", eval_every=2):
  c = base_config()
  c.stages = "self_distill"
  c.model.hf_dir = base_dir
  c.model.dtype = c.model.param_dtype = "float32"
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 2, 2
  c.prompting.system_prompt = ""
  c.eval_sampling.update(dict(temperature=1.0, n=2, max_new_tokens=6, batch_size=4))
  c.eval.problems.num_problems = 2
  c.synthesize.problems.num_problems = 1  # Unused here; the SSD checks want it set for the built-in task.
  c.eval.ks = "1,2"
  c.eval.workers = 2
  sd = c.self_distill
  sd.methods = methods
  sd.problems.num_problems = 6
  sd.update(
    dict(
      steps=steps,
      prompts_per_step=2,
      group_size=2,
      max_teacher_prompt_len=320,
      learning_rate=1e-3,
      end_learning_rate=1e-4,
      eval_every=eval_every,
      eval_problems=2,
      eval_samples=2,
      checkpoint_every=1,
      diagnostic_problems=2,
      diagnostic_samples=2,
    )
  )
  sd.rollout.update(dict(max_new_tokens=6, batch_size=4))
  sd.templates.max_feedback_chars = 300
  sd.sdpo.top_k = 8
  validate(c, device_count=8)
  return c


def _metrics(workdir, method):
  with open(os.path.join(workdir, "self_distill", method, "logs", "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_sdsd_and_sdpo_train_export_and_resume(base_dir, tmp_path):
  workdir = str(tmp_path / "run")
  config = _config(base_dir, steps=2)
  run_pipeline(config, workdir)

  base_weights = load_file(os.path.join(base_dir, "model.safetensors"))
  for method in ("sdsd", "sdpo"):
    rows = _metrics(workdir, method)
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert "eval/pass@1" in rows[0] and "loss" not in rows[0]  # The base model's held-out numbers.
    rows = rows[1:]
    for r in rows:
      assert np.isfinite(r["loss"]) and r["loss"] >= 0
      assert 0 <= r["reward"] <= 1 and 0 <= r["context_fraction"] <= 1
      assert r["tokens"] > 0
    assert "eval/pass@1" in rows[-1] and "eval/distinct_programs" in rows[-1]
    # Speed from the second log point on (the first interval holds compilation).
    assert rows[-1]["tokens_per_s"] > 0 and rows[-1]["step_time_s"] > 0 and "tokens_per_s" not in rows[0]
    with open(os.path.join(workdir, "self_distill", method, "heldout.jsonl")) as f:
      assert [json.loads(line)["step"] for line in f] == [0, 2]
    trained = load_file(os.path.join(workdir, "models", method, "model.safetensors"))
    assert set(trained) == set(base_weights)
    assert any(not np.array_equal(trained[k], base_weights[k]) for k in trained)
  with open(os.path.join(workdir, "self_distill", "teacher_diagnostic.json")) as f:
    diagnostic = json.load(f)
  assert diagnostic["problems"] == 2 and diagnostic["feedback_problems"] == 2  # The random base fails them all.
  assert diagnostic["student_pass1"] == 0.0 and len(diagnostic["warnings"]) >= 1
  # The random base fails every test, so the demonstration teacher falls back to the reference solution.
  assert all(r["context_fraction"] == 1.0 for r in _metrics(workdir, "sdsd")[1:])

  # Kill and resume: with SDPO's last checkpoint, model and done marker gone, a rerun of the same config resumes
  # from step 1 (student and EMA teacher) and ends with exactly the uninterrupted run's weights, each metrics
  # line once.
  finished = load_file(os.path.join(workdir, "models", "sdpo", "model.safetensors"))
  shutil.rmtree(os.path.join(workdir, "self_distill", "sdpo", "checkpoints", "2"))
  shutil.rmtree(os.path.join(workdir, "models", "sdpo"))
  os.remove(os.path.join(workdir, "stages", "self_distill.done.json"))
  run_pipeline(config, workdir)
  resumed = load_file(os.path.join(workdir, "models", "sdpo", "model.safetensors"))
  for name in finished:
    np.testing.assert_array_equal(resumed[name], finished[name], err_msg=name)
  assert [r["step"] for r in _metrics(workdir, "sdpo")] == [0, 1, 2]


def test_a_changed_self_distill_config_is_refused(base_dir, tmp_path):
  workdir = str(tmp_path / "run")
  os.makedirs(os.path.join(workdir, "stages"))
  run_pipeline(_config(base_dir, steps=1, methods="sdsd", eval_every=0), workdir)
  with pytest.raises(ConfigError, match=r"self_distill.steps: 1 -> 2"):
    run_pipeline(_config(base_dir, steps=2, methods="sdsd", eval_every=0), workdir)


def test_a_method_whose_teacher_never_had_a_context_is_not_published(base_dir, tmp_path, capsys):
  # Demonstrations only, no reference: the random base passes nothing, so no teacher ever gets a context and
  # every row is weighted out. The run stops before publishing the base model as the method's, and says so
  # again on a rerun (the decision is read from the metrics the checkpointed steps wrote).
  workdir = str(tmp_path / "run")
  config = _config(base_dir, steps=2, methods="sdsd")
  config.self_distill.sdsd.use_reference = False
  # More problems than there are: each part says it takes them all.
  config.self_distill.update(eval_problems=50, diagnostic_problems=50)
  for attempt in range(2):
    with pytest.raises(NothingDistilledError, match=r"'sdsd'.* any of its 2 steps"):
      run_pipeline(config, workdir)
    out = capsys.readouterr().out
    assert "held-out curve on all 1 dev problems: fewer than field 'self_distill.eval_problems' = 50" in out
    if not attempt:
      assert "diagnostic on all 6 training problems: fewer than field 'self_distill.diagnostic_problems' = 50" in out
    assert [r["context_fraction"] for r in _metrics(workdir, "sdsd") if "loss" in r] == [0.0, 0.0]
    assert not os.path.exists(os.path.join(workdir, "models", "sdsd"))
    assert os.path.isdir(os.path.join(workdir, "self_distill", "sdsd", "checkpoints", "2"))
