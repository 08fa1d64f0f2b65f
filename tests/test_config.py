"""Bad configs fail before any work, with a message naming the field."""

import os
import subprocess
import sys

import pytest
from config_files import load_config

from ssd_jax import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
  "name",
  sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "configs")) if f.endswith(".py") and not f.startswith("_")),
)
def test_shipped_configs_are_valid(name):
  config_lib.validate(load_config(name))


def _mutated(**fields):
  c = config_lib.base_config()
  for path, value in fields.items():
    node = c
    *parents, leaf = path.split("__")
    for p in parents:
      node = node[p]
    with c.ignore_type():
      node[leaf] = value
  return c


@pytest.mark.parametrize(
  "fields, named",
  [
    ({"sampling__temperature": -0.5}, "sampling.temperature"),
    ({"sampling__top_p": 0.0}, "sampling.top_p"),
    ({"eval_sampling__top_p": 1.5}, "eval_sampling.top_p"),
    ({"sampling__min_p": 1.0}, "sampling.min_p"),
    ({"eval_sampling__n": 0}, "eval_sampling.n"),
    ({"sampling__top_k": "20"}, "sampling.top_k"),
    ({"model__dtype": "float8"}, "model.dtype"),
    ({"stages": "forward,trian"}, "stages"),
    ({"mesh__tensor": 0}, "mesh.tensor"),
    ({"mesh__decode_weights": "replicated"}, "mesh.decode_weights"),
    ({"self_distill__profile_steps": "3"}, "self_distill.profile_steps"),
    ({"eval__grid__temperatures": "0.3,hot"}, "eval.grid.temperatures"),
    ({"eval__grid__truncations": "20:0.8"}, "eval.grid.truncations"),
    ({"eval__grid__named": "official=0.7"}, "eval.grid.named"),
    ({"eval__grid__named": "../../outside=0.7/20/0.8"}, "eval.grid.named"),  # names a results folder
    # One rollout per prompt has no sibling to demonstrate, and no reference is shown: nothing to learn.
    ({"self_distill__group_size": 1, "self_distill__sdsd__use_reference": False}, "self_distill.group_size"),
    ({"eval__workers": 65}, "eval.workers"),  # a sandbox's block of user ids
    ({"eval__timeout_s": 1e12}, "eval.timeout_s"),
    ({"eval__memory_mb": 1 << 43}, "eval.memory_mb"),  # overflows the byte limit
    ({"eval__checkpoints": "last"}, "eval.checkpoints"),
    ({"eval__split__dev_fraction": 1.0}, "eval.split.dev_fraction"),
    ({"eval__select_k": 9}, "eval.select_k"),
    ({"eval__diversity_m": 1}, "eval.diversity_m"),  # one correct sample is always one cluster
  ],
)
def test_bad_value_names_field(fields, named):
  with pytest.raises(config_lib.ConfigError, match=f"'{named}'"):
    config_lib.validate(_mutated(**fields))


def test_unknown_field_suggests_the_right_one():
  c = config_lib.base_config()
  c.sampling.temprature = 1.0
  with pytest.raises(config_lib.ConfigError, match=r"unknown field 'sampling.temprature'.*'sampling.temperature'"):
    config_lib.validate(c)


def test_missing_field_is_reported():
  c = config_lib.base_config()
  del c.sampling["top_k"]
  with pytest.raises(config_lib.ConfigError, match="'sampling.top_k' is missing"):
    config_lib.validate(c)


@pytest.mark.parametrize(
  "mesh, devices, message",
  [
    ({"data": 2, "fsdp": 2, "tensor": 3}, 8, "multiplies to 12"),
    ({"data": -1, "fsdp": 3, "tensor": 1}, 8, "mesh.data=-1 cannot absorb 8 devices"),
    ({"data": -1, "fsdp": -1, "tensor": 1}, 8, "only one of"),
  ],
)
def test_mesh_must_match_device_count(mesh, devices, message):
  c = config_lib.base_config()
  c.mesh.update(mesh)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c, device_count=devices)


def test_mesh_absorbs_free_axis():
  c = config_lib.base_config()
  c.mesh.update({"data": -1, "fsdp": 2, "tensor": 2})
  assert config_lib.mesh_shape(c, 8) == {"data": 2, "fsdp": 2, "expert": 1, "tensor": 2}


def _main(*args):
  return subprocess.run(
    [sys.executable, "-m", "ssd_jax.main", "--config=configs/default.py", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )


def test_cli_rejects_bad_override_by_name(tmp_path):
  result = _main(f"--workdir={tmp_path}", "--config.sampling.top_p=1.5")
  assert result.returncode != 0
  assert "sampling.top_p" in result.stderr


def test_cli_rejects_unknown_override(tmp_path):
  result = _main(f"--workdir={tmp_path}", "--config.sampling.temprature=1.0")
  assert result.returncode == 2
  (line,) = result.stderr.strip().splitlines()  # One line naming the field, not a traceback.
  assert "--config.sampling.temprature" in line and 'Did you mean "temperature"' in line


def test_cli_names_the_override_with_the_unknown_field(tmp_path):
  result = _main(f"--workdir={tmp_path}", "--config.sampling.temperature=0.9", "--config.tensorbord=False")
  assert result.returncode == 2
  assert result.stderr.strip() == "error in --config.tensorbord=False: unknown field tensorbord"


def test_cli_names_a_missing_config_file(tmp_path):
  result = subprocess.run(
    [sys.executable, "-m", "ssd_jax.main", "--config=configs/nope.py", f"--workdir={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2 and result.stderr.strip() == "error: cannot load config file 'configs/nope.py'"


def test_topology_chips_and_planning_device_count():
  assert config_lib.topology_chips("v5e:2x2") == 4 and config_lib.topology_chips("v5p:2x2x4") == 16
  assert config_lib.topology_chips("v5e") == 0 and config_lib.topology_chips("v5e:2xa") == 0
  c = config_lib.base_config()
  c.stages, c.mesh.topology = "plan", "v5p:4x4x4"
  assert config_lib.planning_device_count(c) == 64
  c.stages = "sft,plan"  # Other stages run here: the mesh is for this machine.
  assert config_lib.planning_device_count(c) is None
  c.stages, c.mesh.topology = "plan", "v5p-64"
  with pytest.raises(config_lib.ConfigError, match="mesh.topology"):
    config_lib.validate(c)


def test_cli_names_a_config_file_without_get_config(tmp_path):
  (tmp_path / "empty_config.py").write_text("BATCH = 8\n")
  result = subprocess.run(
    [sys.executable, "-m", "ssd_jax.main", f"--config={tmp_path / 'empty_config.py'}", f"--workdir={tmp_path}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2
  assert result.stderr.strip() == "error: the --config file defines no get_config() returning the config"


def test_print_config_lists_every_field_with_overrides_and_exits(tmp_path):
  result = _main(f"--workdir={tmp_path / 'never'}", "--config.sampling.temperature=0.9", "--print_config")
  assert result.returncode == 0, result.stderr
  assert "temperature: 0.9" in result.stdout and "max_new_tokens:" in result.stdout
  assert not (tmp_path / "never").exists()
