"""Runs the configured stages in order inside the workdir, skipping those already done.

`prepare` resolves everything a run needs to know up front (model shape, mesh, what the stages need, their
problem files) so a wrong mesh or a missing file fails before a single weight is loaded. `run` holds the
workdir's lock, refuses stages whose config changed (`run_state`), and marks each stage done last, listing
its outputs; a finished stage is skipped on rerun and a half-finished one resumes, with a warning when other
code ran a stage it reuses.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Callable, Mapping

import ml_collections
from absl import logging

from ssd_jax import config as config_lib
from ssd_jax import process_group
from ssd_jax.atomic_write import atomic_open
from ssd_jax.compile_oom import DoesNotFitError
from ssd_jax.config.schema import raise_if
from ssd_jax.evals import IsolationError
from ssd_jax.pipeline import code_version, input_checks, run_state, stage_dependencies
from ssd_jax.pipeline.context import RunContext
from ssd_jax.pipeline.model_io import NonFiniteModelError
from ssd_jax.pipeline.onpolicy_setup import NothingDistilledError
from ssd_jax.pipeline.workdir_lock import WorkdirBusyError, WorkdirLock
from ssd_jax.train.checkpoint_resume import CheckpointError
from ssd_jax.train.checkpointing import CheckpointSaveError
from ssd_jax.train.loop import NonFiniteError

Stage = Callable[[RunContext], None]

# Errors that end a run with a one-line message: another run holds the workdir, training diverged or a model
# to load or export holds NaN, an on-policy method never gave its teacher a context, no intact checkpoint is
# left or one cannot be written, a planned program does not fit its slice, the sandbox for generated code does
# not start.
RunError = (
  IsolationError,
  WorkdirBusyError,
  NonFiniteError,
  NonFiniteModelError,
  NothingDistilledError,
  CheckpointError,
  CheckpointSaveError,
  DoesNotFitError,
  process_group.PeerError,
)


def prepare(config: ml_collections.ConfigDict, workdir: str, stages: Mapping[str, Stage]) -> RunContext:
  """Checks the stages and what they need, resolves model and mesh; raises ConfigError naming the field."""
  names = config_lib.stage_names(config)
  missing = [n for n in names if n not in stages]
  if missing:
    raise config_lib.ConfigError(f"field 'stages': {missing} not available in this build; available: {sorted(stages)}")
  config_lib.check_run(config, base_in_workdir=run_state.StageRecords(workdir).read("pretrain", "done") is not None)
  ctx = RunContext.create(config, workdir)
  raise_if(input_checks.input_errors(ctx, names))
  return ctx


def _record_config(ctx: RunContext) -> None:
  """`config.json` is the config that made the workdir; every run's config also goes to `config_history/`."""
  workdir = ctx.layout.workdir
  text = ctx.config.to_json_best_effort(indent=2)
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%f")
  os.makedirs(os.path.join(workdir, "config_history"), exist_ok=True)
  with open(os.path.join(workdir, "config_history", f"{stamp}.json"), "w") as f:
    f.write(text)
  first = os.path.join(workdir, "config.json")
  if not os.path.exists(first):
    with atomic_open(first) as f:  # Written once: a kill mid-write would leave it torn for good.
      f.write(text)


def _refuse_before_work(
  records: run_state.StageRecords, config: ml_collections.ConfigDict, names: tuple[str, ...], restart: tuple[str, ...]
) -> None:
  """Raises every refusal the stages would meet, before anything is set aside or run.

  A stage refuses changed config values, and also changed inputs: each stage it reads, directly or through
  others, must run before it or be done with this config; and a stage (in `names` or not) that started or
  finished on the outputs of a stage this run redoes (restarted, or not done) must be restarted with it.

  Raises:
    ConfigError: naming the stage and what changed.
  """
  will_run = set()
  for index, name in enumerate(names):
    _check_upstreams(records, config, names, index)
    redone = any(upstream in will_run for upstream in stage_dependencies.STAGE_READS.get(name, ()))
    if name in restart or not records.check(name, records.fingerprint(config, name), fields_only=redone):
      will_run.add(name)
  _refuse_stale_readers(records, names, restart, will_run)


def _warn_of_other_code(
  records: run_state.StageRecords, config: ml_collections.ConfigDict, names: tuple[str, ...], restart: tuple[str, ...]
) -> None:
  """Says, in one line, which stages this run reuses (skips as done, resumes, or reads) that other code ran.

  Not an error: a run patched since may resume. A record that does not keep its code (written before the code
  was kept) says nothing.
  """
  here = code_version.current()
  reused = config_lib.in_stage_order({*names, *stage_dependencies.stages_read(names, config)} - set(restart))
  other = {}
  for n in reused:  # A stage resumed by this code may hold the work of earlier code too.
    codes = [c for c in (*records.earlier_code(n), records.code(n)) if c is not None and c != here]
    if codes:
      other[n] = codes[0]
  if other:
    logging.warning(
      "reusing stages that other code ran: %s; this run is %s (pass --restart=<stage> to redo one with it)",
      code_version.by_code(other),
      code_version.describe(here),
    )


def _check_upstreams(
  records: run_state.StageRecords, config: ml_collections.ConfigDict, names: tuple[str, ...], index: int
) -> None:
  """Raises unless every stage that stage `names[index]` reads, directly or through others, runs before it in
  this run or is done in the workdir with this config and the outputs it read."""
  name = names[index]
  todo, seen = [(upstream, name) for upstream in stage_dependencies.stage_reads(name, config)], set()
  while todo:
    upstream, reader = todo.pop(0)
    if upstream in names[:index] or upstream in seen:
      continue
    seen.add(upstream)
    through = f" (through '{reader}')" if reader != name else ""
    what = f"stage '{name}' reads the outputs of stage '{upstream}'{through}"
    if upstream in names:
      raise config_lib.ConfigError(f"{what}, which field 'stages' lists after it: list '{upstream}' before '{name}'")
    if records.read(upstream, "done") is None:
      state = "started but did not finish" if records.read(upstream, "started") else "has not run"
      raise config_lib.ConfigError(
        f"{what}, which {state} in {records.workdir}: list '{upstream}' in field 'stages' before '{name}'"
      )
    try:
      records.check(upstream, records.fingerprint(config, upstream))
    except config_lib.ConfigError as e:
      raise config_lib.ConfigError(
        f"{what}, which this run does not redo before it (to restart it, list it in field 'stages' before "
        f"'{name}'): {e}"
      ) from None
    todo += [(further, upstream) for further in stage_dependencies.stage_reads(upstream, config)]


def _refuse_stale_readers(
  records: run_state.StageRecords, names: tuple[str, ...], restart: tuple[str, ...], will_run: set[str]
) -> None:
  """Raises when a stage that started or finished on the outputs of a redone stage is not restarted with it.

  Skipped or resumed, it would mix old and new outputs (a redo with the same config keeps the same
  fingerprint), so this holds whether or not this run names it, and for the stages that read it in turn.
  """
  redone, stale = set(will_run), {}
  grew = True
  while grew:
    grew = False
    for stage in stage_dependencies.STAGE_READS:
      if stage in restart or stage in stale:
        continue
      for kind in ("done", "started"):
        record = records.read(stage, kind)
        read = sorted(stage_dependencies.recorded_reads(record) & redone) if record else []
        if read:
          state = "finished" if kind == "done" else "started"
          which = "which this run redoes" if set(read) <= will_run else "which must be redone with it"
          stale[stage] = f"stage '{stage}' {state} on the outputs of {read}, {which}"
          redone.add(stage)
          grew = True
          break
  if not stale:
    return
  stages = list(names)
  if not set(stale) <= set(names):
    stages = config_lib.in_stage_order({*names, *stale})
  flags = f"--restart={','.join(n for n in stages if n in restart or n in stale)}"
  if stages != list(names):
    flags = f"--config.stages={','.join(stages)} {flags}"
  them = "it" if len(stale) == 1 else "them"
  raise config_lib.ConfigError(
    "; ".join(stale[n] for n in stages if n in stale) + f"; restart {them} too: pass {flags}, or use another --workdir"
  )


def run(ctx: RunContext, stages: Mapping[str, Stage], restart: tuple[str, ...] = ()) -> None:
  """Runs the stages of `ctx.config.stages` in order, skipping those already done with the same config.

  Args:
    ctx: the run.
    stages: stage name -> its function.
    restart: stages whose earlier outputs are set aside (kept under `replaced/`) so they start over.

  Raises:
    ConfigError: before any stage runs, when a stage started or finished in this workdir with other config
      values (naming them) and is not restarted.
    RuntimeError: another live run holds the workdir.
  """
  config, workdir = ctx.config, ctx.layout.workdir
  names = config_lib.stage_names(config)
  unknown = [n for n in restart if n not in names]
  if unknown:
    raise config_lib.ConfigError(f"--restart names {unknown}, which are not in field 'stages' = {config.stages!r}")
  records = run_state.StageRecords(workdir)
  group = ctx.process_group
  with contextlib.ExitStack() as held:

    def refuse_or_record():
      held.enter_context(WorkdirLock(workdir))
      _refuse_before_work(records, config, names, restart)
      _warn_of_other_code(records, config, names, restart)
      for name in restart:
        moved = records.set_aside(name, stage_dependencies.restart_outputs(name, ctx.layout))
        if moved:
          print(f"[{name}] earlier outputs set aside to {moved}")
      _record_config(ctx)

    # Process 0 decides from the markers it writes; a refusal there stops every host now, not at a barrier.
    process_group.on_coordinator(group, refuse_or_record)
    for name in names:

      def started_record(name=name):
        fingerprint = records.fingerprint(config, name)
        if records.check(name, fingerprint):
          return None
        return records.started_record(name, fingerprint, code_version.current())

      record = process_group.on_coordinator(group, started_record)
      if record is None:
        logging.info("stage %s: already done, skipping", name)
        print(f"[{name}] already done, skipping")
        continue
      if ctx.is_coordinator:
        records.write(name, "started", record)
      print(f"[{name}] starting")
      start = time.time()
      stages[name](ctx)
      seconds = time.time() - start
      ctx.sync(f"stage {name} done")
      if ctx.is_coordinator:
        outputs = [
          p
          for p in stage_dependencies.stage_outputs(name, config, ctx.layout)
          if os.path.exists(os.path.join(workdir, p))
        ]
        records.write(name, "done", {**record, "seconds": seconds, "outputs": outputs})
      print(f"[{name}] done in {seconds:.1f}s")
