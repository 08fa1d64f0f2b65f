"""The plan stage compiles the real steps for a TPU topology and reports per-chip memory."""

import json
import os
import subprocess
import sys

import pytest

from ssd_jax import config as config_lib
from ssd_jax import sharding
from ssd_jax.pipeline.context import RunContext, model_config_from
from ssd_jax.pipeline.layout import RunLayout
from ssd_jax.stages import plan

os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

try:
  plan.topology_devices("v5e:2x2")
  HAVE_LIBTPU = True
except config_lib.ConfigError:
  HAVE_LIBTPU = False

needs_libtpu = pytest.mark.skipif(not HAVE_LIBTPU, reason="libtpu is not installed (pip install -e '.[tpu]')")


def _context(c, workdir):
  """The plan stage's context: its mesh comes from the topology, not from this machine's devices."""
  return RunContext(c, RunLayout(str(workdir)), model_config_from(c), {}, sharding.DEFAULT_RULES)


def _tiny_plan_config():
  c = config_lib.base_config()
  c.stages = "plan"
  c.model.preset = "tiny_qwen3"
  c.mesh.topology = "v5e:2x2"
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 2, 2
  c.sampling.batch_size = 4
  c.sampling.max_new_tokens = 16
  c.sampling.top_k, c.sampling.top_p = 20, 0.8
  c.plan.prompt_len = 32
  c.sft.global_batch_size = 4
  c.sft.seq_len = 128
  c.sft.loss_chunk_size = 64
  return c


@needs_libtpu
def test_plan_reports_per_chip_memory_for_a_tiny_model(tmp_path):
  c = _tiny_plan_config()
  config_lib.validate(c)
  ctx = _context(c, tmp_path)
  plan.run(ctx)
  report = json.loads((tmp_path / "plan.json").read_text())
  assert report["chips"] == 4 and report["device_kind"] == "TPU v5 lite"
  assert report["mesh"] == {"data": 1, "fsdp": 2, "tensor": 2}
  # bfloat16 parameters split four ways (fsdp x tensor) on every large matrix: a quarter, give or take norms.
  full_bytes = ctx.model_cfg.num_params * 2
  per_chip = report["per_chip_gib"]["parameters"] * plan.GIB
  assert full_bytes / 4 <= per_chip < full_bytes / 2
  # AdamW keeps two moments in the parameters' dtype and shardings.
  assert report["per_chip_gib"]["optimizer_state"] == pytest.approx(2 * report["per_chip_gib"]["parameters"], rel=0.01)
  assert report["fits"] and all(p["fits"] for p in report["programs"].values())


@needs_libtpu
def test_plan_fails_clearly_when_it_does_not_fit(tmp_path):
  c = _tiny_plan_config()
  c.plan.hbm_gib = 1e-6
  with pytest.raises(RuntimeError, match="does not fit on v5e:2x2"):
    plan.run(_context(c, tmp_path))
  assert not json.loads((tmp_path / "plan.json").read_text())["fits"]


def test_unknown_topology_names_the_field(tmp_path):
  c = _tiny_plan_config()
  c.mesh.topology = "v9z:1x1"
  with pytest.raises(config_lib.ConfigError, match="mesh.topology"):
    plan.run(_context(c, tmp_path))


@pytest.mark.slow
@needs_libtpu
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
