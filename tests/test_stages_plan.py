"""The plan stage compiles the real steps for a TPU topology and reports per-chip memory."""

import json
import os
import subprocess
import sys

import pytest
from config_files import load_config

from ssd_jax import config as config_lib
from ssd_jax import sharding
from ssd_jax.pipeline import plan_programs
from ssd_jax.pipeline.context import RunContext, model_config_from
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.stages import plan


def _context(c, workdir):
  """The plan stage's context: its mesh comes from the topology, not from this machine's devices."""
  return RunContext(c, RunLayout(str(workdir)), model_config_from(c), {}, sharding.DEFAULT_RULES)


# A plan-only run compiles generation for the largest of every sampling section (`generation_shape`), and its
# compile time grows with that shape (tiny_qwen3_moe on v5e:2x2: 53 s at the default config's [64, 416 + 96],
# 9 s at [4, 32 + 16]); the small shape serves every test that is not about it.
SMALL_GENERATION = {
  f"{section}.{field}": value
  for section in ("sampling", "eval_sampling", "self_distill.rollout")
  for field, value in (("batch_size", 4), ("max_new_tokens", 16))
} | {"plan.prompt_len": 32, "self_distill.max_prompt_len": 32}
SMALL_GENERATION_FLAGS = [f"--config.{key}={value}" for key, value in SMALL_GENERATION.items()]


def _tiny_plan_config():
  c = config_lib.base_config()
  c.stages = "plan"
  c.model.preset = "tiny_qwen3"
  c.mesh.topology = "v5e:2x2"
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 2, 2
  c.update_from_flattened_dict(SMALL_GENERATION)
  c.sampling.top_k, c.sampling.top_p = 20, 0.8
  c.sft.global_batch_size = 4
  c.sft.seq_len = 128
  c.sft.loss_chunk_size = 64
  return c


@pytest.mark.libtpu
def test_plan_reports_per_chip_memory_for_a_tiny_model(tmp_path):
  c = _tiny_plan_config()
  config_lib.validate(c)
  ctx = _context(c, tmp_path)
  plan.run(ctx)
  report = json.loads((tmp_path / "plan.json").read_text())
  assert report["chips"] == 4 and report["device_kind"] == "TPU v5 lite"
  assert report["mesh"] == {"data": 1, "fsdp": 2, "expert": 1, "tensor": 2}
  # bfloat16 parameters split four ways (fsdp x tensor) on every large matrix: a quarter, give or take norms.
  full_bytes = ctx.model_cfg.num_params * 2
  per_chip = report["per_chip_gib"]["parameters"] * plan_programs.GIB
  assert full_bytes / 4 <= per_chip < full_bytes / 2
  # AdamW keeps two moments in the parameters' dtype and shardings.
  assert report["per_chip_gib"]["optimizer_state"] == pytest.approx(2 * report["per_chip_gib"]["parameters"], rel=0.01)
  assert report["fits"] and all(p["fits"] for p in report["programs"].values())
  # Generation under both decode weight layouts: the chosen one ('train') is the program judged.
  decode = report["decode_weights"]
  assert decode["chosen"] == "train" and set(decode["layouts"]) == {"train", "tensor"}
  train, tensor = decode["layouts"]["train"], decode["layouts"]["tensor"]
  assert train["peak_gib"] == pytest.approx(report["programs"]["generate"]["peak_gib"])
  # The tensor-only copy is replicated over fsdp (about twice the training shard) and gathers no weights per
  # decode step, so its program moves fewer collective bytes than FSDP's.
  assert train["weight_copy_gib"] == 0 and per_chip < tensor["weight_copy_gib"] * plan_programs.GIB <= 2 * per_chip
  assert tensor["collective_mib"] < train["collective_mib"]


@pytest.mark.libtpu
def test_compile_out_of_memory_is_written_to_the_plan_and_fails(tmp_path):
  c = _tiny_plan_config()
  c.sampling.batch_size, c.plan.prompt_len = 4096, 8192  # A KV cache of about a terabyte.
  c.model.overrides.max_position_embeddings = 16_384
  with pytest.raises(RuntimeError, match=r"generate does not fit: \d+\.\d\d GiB of 15\.75 GiB"):
    plan.run(_context(c, tmp_path))
  report = json.loads((tmp_path / "plan.json").read_text())
  assert not report["fits"] and report["programs"]["generate"]["error"].startswith("does not fit: ")
  assert report["programs"]["sft_step"]["fits"]  # The other program is still planned.
  assert report["generation"] == {"batch": 4096, "prompt_len": 8192, "max_new_tokens": 16}


@pytest.mark.libtpu
def test_expert_and_tensor_parallel_plan_from_the_command_line_without_device_flags(tmp_path):
  """An MoE model over an expert x tensor mesh; its tiny expert matrices (not whole 128-lane tiles) fall back
  from megablox to the tiled grouped matmul."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # This machine shows one CPU device.
  flags = ["--config.stages=plan", "--config.model.preset=tiny_qwen3_moe", "--config.mesh.topology=v5e:2x2"]
  flags += ["--config.mesh.data=1", "--config.mesh.fsdp=1", "--config.mesh.expert=2", "--config.mesh.tensor=2"]
  flags += SMALL_GENERATION_FLAGS
  result = subprocess.run(
    [sys.executable, "-m", "ssd_jax.main", "--config=configs/default.py", *flags, f"--workdir={tmp_path}"],
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((tmp_path / "plan.json").read_text())
  assert report["mesh"] == {"data": 1, "fsdp": 1, "expert": 2, "tensor": 2} and report["fits"]
  assert report["programs"]["sft_step"]["collective_mib"] > 0
  assert report["moe_layout"]["dispatch"] == "ragged_all_to_all" and report["moe_layout"]["grouped_matmul"] == "tiled"


@pytest.mark.libtpu
def test_plan_that_does_not_fit_ends_the_command_with_one_line_and_its_plan(tmp_path):
  flags = ["--config.stages=plan", "--config.model.preset=tiny_qwen3", "--config.mesh.topology=v5e:2x2"]
  flags += ["--config.plan.hbm_gib=0.000001", *SMALL_GENERATION_FLAGS]
  result = subprocess.run(
    [sys.executable, "-m", "ssd_jax.main", "--config=configs/default.py", *flags, f"--workdir={tmp_path}"],
    cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert result.returncode == 1, result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines()[-1].startswith("error: config does not fit on v5e:2x2: sft_step does not")
  assert not json.loads((tmp_path / "plan.json").read_text())["fits"]


def test_mesh_that_does_not_fit_the_topology_fails_before_compiling(tmp_path):
  c = _tiny_plan_config()
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 2, 4  # 8 chips on a 4-chip slice.
  with pytest.raises(config_lib.ConfigError, match="multiplies to 8, but there are 4 devices"):
    plan.run(_context(c, tmp_path))
  c.mesh.fsdp, c.mesh.tensor = 1, 4  # tiny_qwen3 has fewer kv heads than 4.
  with pytest.raises(config_lib.ConfigError, match="field 'mesh'"):
    plan.run(_context(c, tmp_path))


def test_generation_shape_is_the_worst_case_of_the_stages_sampling():
  c = _tiny_plan_config()
  c.sampling.update(dict(batch_size=8, max_new_tokens=100))
  c.eval_sampling.update(dict(batch_size=16, max_new_tokens=50))
  c.self_distill.rollout.update(dict(batch_size=4, max_new_tokens=300))
  c.plan.prompt_len, c.self_distill.max_prompt_len = 64, 512
  assert plan_programs.generation_shape(c, 40_960) == plan_programs.GenerationShape(
    16, 512, 300
  )  # Plan-only: every section.
  c.stages = "synthesize,plan"
  assert plan_programs.generation_shape(c, 40_960) == plan_programs.GenerationShape(8, 64, 100)
  c.stages = "eval,self_distill,plan"
  assert plan_programs.generation_shape(c, 400) == plan_programs.GenerationShape(
    16, 100, 300
  )  # Cut to the model's positions.


def test_unknown_topology_names_the_field(tmp_path):
  c = _tiny_plan_config()
  c.mesh.topology = "v9z:1x1"
  with pytest.raises(config_lib.ConfigError, match="mesh.topology"):
    plan.run(_context(c, tmp_path))


@pytest.mark.pod
@pytest.mark.slow
@pytest.mark.libtpu
@pytest.mark.parametrize(
  "config_file, topology, chips",
  [("configs/llama3p1_8b_instruct.py", "v5p:2x2x4", 16), ("configs/llama3p1_8b_instruct_v5e64.py", "v5e:8x8", 64)],
)
def test_8b_configs_fit_their_slices(tmp_path, config_file, topology, chips):
  """The 8B row on v5p-32 (two micro-batches per step) and on v5e-64 (64 shorter rows), AOT for the slice."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run(
    [sys.executable, "-m", "ssd_jax.main", f"--config={config_file}", "--config.stages=plan", f"--workdir={tmp_path}"],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    timeout=3600,
  )
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  report = json.loads((tmp_path / "plan.json").read_text())
  assert report["topology"] == topology and report["chips"] == chips and report["model_params"] > 8e9
  assert report["fits"], report
  assert "ragged_decode_attention" in report["programs"]["generate"]["kernels"]


@pytest.mark.pod
@pytest.mark.slow
@pytest.mark.libtpu
def test_tpu_v5_config_fits_its_slice(tmp_path):
  """The shipped pod config, as a user runs it: the real 4B SFT step and generation loop, AOT for v5p."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "ssd_jax.main",
      "--config=configs/tpu_v5.py",
      "--config.stages=plan",
      f"--workdir={tmp_path}",
    ],
    cwd=root,
    env=env,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads((tmp_path / "plan.json").read_text())
  assert report["topology"] == "v5p:2x2x4" and report["chips"] == 16
  assert report["model_params"] > 4e9
  assert report["fits"], report
  assert "sft_step     peak" in result.stdout and "DOES NOT FIT" not in result.stdout


@pytest.mark.pod
@pytest.mark.slow
@pytest.mark.libtpu
@pytest.mark.parametrize("name", ["qwen3_30b_a3b_instruct", "qwen3_30b_a3b_thinking"])
def test_qwen3_30b_a3b_paper_rows_fit_their_slice(tmp_path, name):
  """The MoE rows: the real 30B-A3B SFT step and generation loop, expert-parallel, AOT for v5p-64."""
  c = load_config(name)
  c.stages = "plan"
  plan.run(_context(c, tmp_path))
  report = json.loads((tmp_path / "plan.json").read_text())
  assert report["topology"] == "v5p:2x4x4" and report["chips"] == 32
  assert report["mesh"]["expert"] == 4 and report["model_params"] > 30e9
  assert report["moe_layout"]["dispatch"] == "ragged_all_to_all" and report["moe_layout"]["experts_per_device"] == 32
  assert report["fits"], report


@pytest.mark.libtpu
def test_plan_names_the_pallas_kernels_of_each_program(tmp_path):
  """Generation attends through the ragged decode kernel when heads are lane-wide; plan.json says so."""
  c = _tiny_plan_config()
  c.model.overrides.head_dim = 128
  config_lib.validate(c)
  plan.run(_context(c, tmp_path))
  report = json.loads((tmp_path / "plan.json").read_text())
  assert {"ragged_decode_attention", "truncated_sampling"} <= set(report["programs"]["generate"]["kernels"])
  assert "ragged_decode_attention" in report["decode_weights"]["layouts"]["tensor"]["kernels"]
  assert "ragged_decode_attention" not in report["programs"]["sft_step"]["kernels"]
  assert any("splash" in name for name in report["programs"]["sft_step"]["kernels"])
