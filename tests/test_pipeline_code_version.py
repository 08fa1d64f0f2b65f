"""Stage records keep the code that ran them, outside the fingerprint; a run reusing another code's stages says so."""

import logging

import pytest
from pipeline_fixtures import micro_config

from ssd_jax.pipeline import code_version, run_state, runner

_COMMIT = "0123456789abcdef0123456789abcdef01234567"
_OTHER = {"version": "0.0.1", "revision": "fedcba9876543210fedcba9876543210fedcba98"}


def _checkout(root, head="ref: refs/heads/main", refs=None, packed=None):
  """A git directory at `root/.git` with `head` and loose `refs` ({ref: commit}) or `packed` refs."""
  git = root / ".git"
  git.mkdir(parents=True)
  (git / "HEAD").write_text(head + "\n")
  for ref, commit in (refs or {}).items():
    (git / ref).parent.mkdir(parents=True, exist_ok=True)
    (git / ref).write_text(commit + "\n")
  if packed:
    (git / "packed-refs").write_text("# pack-refs with: peeled\n" + "".join(f"{c} {r}\n" for r, c in packed.items()))
  return git


def test_the_revision_is_read_from_the_checkouts_files(tmp_path):
  assert code_version.git_revision(_checkout(tmp_path / "loose", refs={"refs/heads/main": _COMMIT}).parent) == _COMMIT
  assert (
    code_version.git_revision(_checkout(tmp_path / "packed", packed={"refs/heads/main": _COMMIT}).parent) == _COMMIT
  )
  assert code_version.git_revision(_checkout(tmp_path / "detached", head=_COMMIT).parent) == _COMMIT
  assert code_version.git_revision(_checkout(tmp_path / "unborn").parent) is None
  assert code_version.git_revision(tmp_path / "not_a_checkout") is None
  # A worktree: its .git file names its git directory, whose commondir holds the branches.
  main = _checkout(tmp_path / "main", refs={"refs/heads/topic": _COMMIT})
  own = main / "worktrees" / "tree"
  own.mkdir(parents=True)
  (own / "HEAD").write_text("ref: refs/heads/topic\n")
  (own / "commondir").write_text("../..\n")
  (tmp_path / "tree").mkdir()
  (tmp_path / "tree" / ".git").write_text(f"gitdir: {own}\n")
  assert code_version.git_revision(tmp_path / "tree") == _COMMIT


_ALL = ("pretrain", "eval", "report")


def _run(workdir, ran, stage_list=",".join(_ALL), restart=()):
  """Runs stand-in stages that only append their names to `ran`."""
  stages = {name: (lambda ctx, name=name: ran.append(name)) for name in _ALL}
  config = micro_config(stage_list)
  config.eval.models = "base"
  runner.run(runner.prepare(config, str(workdir), stages), stages, restart=restart)


def _set_code(records, name, code):
  """Rewrites stage `name`'s records as if `code` ran it (None: written before the code was kept)."""
  for kind in ("started", "done"):
    record = records.read(name, kind)
    record.pop("code", None)
    records.write(name, kind, record if code is None else {**record, "code": code})


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "other code" in r.getMessage()]


def test_the_records_keep_the_code_outside_the_fingerprint(tmp_path):
  _run(tmp_path, [])
  records = run_state.StageRecords(str(tmp_path))
  done = records.read("pretrain", "done")
  assert done["code"] == code_version.current() and records.code("pretrain") == code_version.current()
  assert done["fingerprint"] == records.fingerprint(micro_config("pretrain"), "pretrain").digest


def test_reusing_stages_other_code_ran_warns_once_naming_them_and_both_versions(tmp_path, caplog):
  ran = []
  _run(tmp_path, ran)
  records = run_state.StageRecords(str(tmp_path))
  _set_code(records, "pretrain", _OTHER)
  _set_code(records, "eval", {**_OTHER, "version": "0.0.2"})
  with caplog.at_level(logging.WARNING):
    _run(tmp_path, ran)
  here = code_version.describe(code_version.current())
  assert _warnings(caplog) == [
    "reusing stages that other code ran: pretrain by ssd_jax 0.0.1 (git fedcba987654); eval by ssd_jax 0.0.2 "
    f"(git fedcba987654); this run is {here} (pass --restart=<stage> to redo one with it)"
  ]
  assert ran == list(_ALL)  # Reused, not redone.
  # A stage this run only reads, through another, counts too.
  _set_code(records, "eval", code_version.current())
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    _run(tmp_path, ran, "report")
  assert _warnings(caplog) == [
    f"reusing stages that other code ran: pretrain by ssd_jax 0.0.1 (git fedcba987654); this run is {here} (pass "
    "--restart=<stage> to redo one with it)"
  ]
  # Stages this run restarts are not reused.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    _run(tmp_path, ran, restart=_ALL)
  assert _warnings(caplog) == [] and ran == [*_ALL, *_ALL]


@pytest.mark.parametrize("code", ["same", None])
def test_no_warning_for_the_same_code_or_a_record_without_it(tmp_path, caplog, code):
  ran = []
  _run(tmp_path, ran)
  _set_code(run_state.StageRecords(str(tmp_path)), "pretrain", code_version.current() if code else None)
  with caplog.at_level(logging.WARNING):
    _run(tmp_path, ran)
  assert _warnings(caplog) == [] and ran == list(_ALL)


def test_a_stage_resumed_by_other_code_keeps_the_code_that_started_it(tmp_path, caplog):
  ran = []
  _run(tmp_path, ran, "pretrain")
  records = run_state.StageRecords(str(tmp_path))
  _set_code(records, "pretrain", _OTHER)
  started = records.read("pretrain", "started")
  records.write("pretrain", "started", {**started, "earlier_code": [{**_OTHER, "version": "0.0.0"}]})
  done = tmp_path / "stages" / "pretrain.done.json"
  done.unlink()  # killed before it finished: this run resumes it
  _run(tmp_path, ran, "pretrain")
  here = code_version.current()
  assert records.code("pretrain") == here and records.read("pretrain", "done")["code"] == here
  assert records.earlier_code("pretrain") == [{**_OTHER, "version": "0.0.0"}, _OTHER]  # oldest first
  done.unlink()  # resumed again by the same code: nothing repeats
  _run(tmp_path, ran, "pretrain")
  assert records.earlier_code("pretrain") == [{**_OTHER, "version": "0.0.0"}, _OTHER]
  # A later run that reads it is told, though the code that finished it is its own.
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    _run(tmp_path, ran, "pretrain,eval")
  assert _warnings(caplog) == [
    f"reusing stages that other code ran: pretrain by ssd_jax 0.0.0 (git fedcba987654); this run is "
    f"{code_version.describe(here)} (pass --restart=<stage> to redo one with it)"
  ]
