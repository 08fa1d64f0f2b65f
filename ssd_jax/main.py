"""Entry point: `python -m ssd_jax.main --config=configs/NAME.py [--config.a.b=v ...] [--workdir=DIR]`.

Validates the whole config before any work, joins the other hosts when there are several, then runs the
configured stages in order inside `--workdir`. Each stage is idempotent: a finished stage is skipped and a
half-finished one resumes.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import sys
import tempfile

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/NAME.py).")
_WORKDIR = flags.DEFINE_string("workdir", "runs/default", "Directory for every artifact of the run.")
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "host:port of process 0, for runs JAX cannot detect (e.g. several local processes); auto-detected on Cloud TPU.",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
_PRINT_CONFIG = flags.DEFINE_bool(
  "print_config",
  False,
  "Print every field of the config, with --config.* overrides applied and checked, and exit (each field is "
  "documented where ssd_jax/config/ defines it).",
)
_SINGLE_PROCESS = flags.DEFINE_bool("single_process", False, "Run alone even where a multi-host cluster is detected.")
_RESTART = flags.DEFINE_list(
  "restart",
  [],
  "Stages to start over: their earlier outputs in --workdir are set aside under replaced/ (needed when a "
  "stage's config changed since it ran).",
)

# Stage name -> the module whose `run(ctx)` runs it; imported only when configured, so a stage's heavy imports
# (libtpu for `plan`) cost only the runs that use it.
STAGE_MODULES = {
  "forward": "ssd_jax.stages.forward",
  "pretrain": "ssd_jax.stages.pretrain",
  "synthesize": "ssd_jax.stages.synthesize",
  "sft": "ssd_jax.stages.sft",
  "self_distill": "ssd_jax.stages.self_distill",
  "eval": "ssd_jax.stages.eval",
  "report": "ssd_jax.stages.report",
  "plan": "ssd_jax.stages.plan",
  "toy": "ssd_jax.stages.toy",
}


def stage_functions(names) -> dict:
  """The `run` function of each configured stage (unknown names are left for `runner.prepare` to report)."""
  return {name: importlib.import_module(STAGE_MODULES[name]).run for name in names if name in STAGE_MODULES}


def workdir_error(workdir: str) -> str | None:
  """Why `--workdir` cannot hold the run (None when it can): it must be a directory, or one that can be made,
  where this process can write."""
  if not workdir:
    return "--workdir is empty: pass the run's directory"
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    return f"--workdir {workdir!r} is a file, not a directory"
  existing = os.path.abspath(workdir)
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    return f"--workdir {workdir!r} cannot be made: {existing!r} is a file"
  try:  # Permissions alone miss read-only and virtual file systems (/proc), and root passes them all.
    os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".workdir_probe_"))
  except OSError as e:
    return f"--workdir {workdir!r} cannot be made or written in {existing!r}: {e.strerror}"
  return None


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _CONFIG.value is None:
    raise app.UsageError("--config is required, e.g. --config=configs/default.py")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Library INFO chatter (checkpointing) drowns the progress output.
  from ssd_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from ssd_jax import distributed, host_platform  # pylint: disable=g-import-not-at-top
  from ssd_jax.pipeline import runner  # pylint: disable=g-import-not-at-top

  try:
    config = _CONFIG.value
    config.keys()  # A config file that failed to load reports it here.
  except OSError:
    sys.exit(print(f"error: cannot load config file {flags.FLAGS['config'].config_filename!r}", file=sys.stderr) or 2)
  problem = None
  try:
    config_lib.validate(config)  # Cheap checks first: no devices touched yet.
  except config_lib.ConfigError as e:
    problem = str(e)
  if _PRINT_CONFIG.value and not problem:
    print(config)
    return
  problem = problem or workdir_error(_WORKDIR.value)
  host_platform.skip_absent_tpu()  # Before any backend starts: no libtpu error where there is no TPU.
  try:  # Before anything touches a device: on a multi-host slice every host joins here.
    start = distributed.decide(
      coordinator_address=_COORDINATOR.value,
      num_processes=_NUM_PROCESSES.value,
      process_id=_PROCESS_ID.value,
      single_process=_SINGLE_PROCESS.value,
    )
    if problem and start.mode in (distributed.SINGLE, distributed.FORCED_SINGLE):
      sys.exit(f"error: {problem}")
    distributed.initialize(start)
  except ValueError as e:
    sys.exit(f"error: {e}")
  import jax  # pylint: disable=g-import-not-at-top

  from ssd_jax import process_group  # pylint: disable=g-import-not-at-top
  from ssd_jax.pipeline import host_agreement  # pylint: disable=g-import-not-at-top

  def refuse_problem() -> None:
    if problem:
      raise config_lib.ConfigError(problem)

  group = process_group.current()
  try:  # Every host, before any work: one host's bad workdir, other checkout or other flag stops them all.
    process_group.everywhere(group, refuse_problem)
    host_agreement.check_hosts_agree(group, config, _WORKDIR.value, tuple(_RESTART.value))
  except (config_lib.ConfigError, process_group.PeerError) as e:
    sys.exit(f"error: {e}")
  stages = stage_functions(config_lib.stage_names(config))

  def prepare():
    config_lib.validate(config, device_count=config_lib.planning_device_count(config) or jax.device_count())
    return runner.prepare(config, _WORKDIR.value, stages)

  try:  # A host that cannot see model.hf_dir, say, stops every host here.
    ctx = process_group.everywhere(process_group.current(), prepare)
  except (config_lib.ConfigError, process_group.PeerError) as e:
    sys.exit(f"error: {e}")
  os.makedirs(_WORKDIR.value, exist_ok=True)
  logging.info("stages %s in %s on %d devices", config_lib.stage_names(config), _WORKDIR.value, jax.device_count())
  try:
    runner.run(ctx, stages, restart=tuple(_RESTART.value))
  except (config_lib.ConfigError, *runner.RunError) as e:
    sys.exit(f"error: {e}")


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with one-line errors (a misspelled --config field, a missing config file), exit code 2."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, OSError, AttributeError, KeyError, ValueError, TypeError) as e:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    while len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # KeyError messages arrive quoted.
      text = ast.literal_eval(text)
    if isinstance(e, AttributeError) and "attribute 'get_config'" in text:  # Not a misspelled field.
      print("error: the --config file defines no get_config() returning the config", file=sys.stderr)
      sys.exit(2)
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    # The override whose path holds the field the error names, when one does (else all of them).
    field = re.match(r"'?(\w+)", text)
    named = [a for a in overrides if field and field.group(1) in a.split("=", 1)[0].split(".")]
    where = (
      f" in {' '.join(named or overrides)}"
      if overrides and isinstance(e, (KeyError, AttributeError, TypeError))
      else ""
    )
    kind = "unknown field " if isinstance(e, (KeyError, AttributeError)) else ""
    print(f"error{where}: {kind}{' '.join(text.split())}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
