"""launch/sweep.py: grid from flags and a sweep file, one workdir per point, failures recorded, a results table."""

import json
import os
import subprocess
import sys

from config_files import ROOT as REPO
from config_files import load_module

from ssd_jax.pipeline.layout import RunLayout

SWEEP = REPO / "launch" / "sweep.py"
FAKE_MAIN = f"{sys.executable} {REPO / 'tests' / 'fake_main.py'}"


def sweep(*args, env=None, cwd=None, config="configs/default.py"):
  command = [sys.executable, str(SWEEP), f"--config={config}", *args]
  return subprocess.run(command, text=True, capture_output=True, timeout=300, env=env, cwd=cwd)


def test_grid_runs_every_point_records_failures_and_tabulates(tmp_path):
  sweep_file = tmp_path / "sweep.json"
  sweep_file.write_text(json.dumps({"sft.note": ["two words", "a,b"]}))
  root = tmp_path / "runs"
  done = sweep(
    f"--root={root}",
    "--grid=x=0.25,0.75",
    "--grid=fail=no,yes",
    f"--sweep_file={sweep_file}",
    f"--main_command={FAKE_MAIN}",
    "--",
    "--extra=1",
  )
  assert done.returncode == 1, done.stderr  # One axis value fails: the sweep says so, after running everything.
  results = json.loads((root / "sweep_results.json").read_text())
  assert len(results) == 8
  assert [r["status"] for r in results].count("exit 3") == 4 and [r["status"] for r in results].count("ok") == 4
  names = [r["name"] for r in results]
  assert len(set(names)) == 8 and all((root / n).is_dir() for n in names)
  assert names[0].startswith("x=0.25_fail=no_note=two-words-") and len(names[0].rsplit("-", 1)[1]) == 8
  argv = json.loads((root / names[0] / "argv.json").read_text())
  assert "--config.sft.note=two words" in argv and "--extra=1" in argv and "--config=configs/default.py" in argv
  assert "--config.sft.note=a,b" in json.loads((root / names[1] / "argv.json").read_text())
  ok = next(r for r in results if r["overrides"] == {"x": "0.75", "fail": "no", "sft.note": "two words"})
  assert ok["metrics"] == {"base dev pass@1": 75.0, "base dev pass@8": 100.0}
  table = done.stdout.splitlines()[-9:]
  assert "base dev pass@1" in table[0] and any("75.0" in line and "ok" in line for line in table)


def test_rerun_skips_finished_points(tmp_path):
  root = tmp_path / "runs"
  first = sweep(f"--root={root}", "--grid=x=0.1,0.2", f"--main_command={FAKE_MAIN}")
  assert first.returncode == 0, first.stderr
  again = sweep(f"--root={root}", "--grid=x=0.1,0.2", "--main_command=false")
  assert again.returncode == 0
  assert [r["status"] for r in json.loads((root / "sweep_results.json").read_text())] == ["done", "done"]


def test_points_of_other_configs_or_arguments_get_their_own_workdirs(tmp_path):
  root = tmp_path / "runs"
  assert sweep(f"--root={root}", "--grid=x=0.1", f"--main_command={FAKE_MAIN}").returncode == 0
  again = sweep(
    f"--root={root}",
    "--grid=x=0.1",
    f"--main_command={FAKE_MAIN}",
    "--",
    "--config.sft.steps=999",
    config="configs/qwen3_4b_instruct.py",
  )
  assert again.returncode == 0, again.stderr
  assert [r["status"] for r in json.loads((root / "sweep_results.json").read_text())] == ["ok"]  # Ran, not "done".
  argvs = [json.loads((d / "argv.json").read_text()) for d in root.iterdir() if d.is_dir()]
  assert len(argvs) == 2 and any("--config.sft.steps=999" in a for a in argvs)
  assert all(d.name.startswith("x=0.1-") for d in root.iterdir() if d.is_dir())


def _sweep_module():
  return load_module(SWEEP, "sweep")


def _point_dir(root, overrides):
  return root / _sweep_module().point_name("configs/default.py", overrides, [])


def test_finished_means_the_report_stage_done_marker(tmp_path):
  root = tmp_path / "runs"
  killed = _point_dir(root, {"x": "0.1"})  # comparison.json written, killed before the done marker.
  (killed / "report").mkdir(parents=True)
  (killed / "report" / "comparison.json").write_text('{"models": {}}')
  torn = _point_dir(root, {"x": "0.2"})  # Marked done but its comparison.json is torn.
  (torn / "report").mkdir(parents=True)
  (torn / "report" / "comparison.json").write_text('{"models": {"ba')
  (torn / "stages").mkdir()
  (torn / "stages" / "report.done.json").write_text("{}")
  done = sweep(f"--root={root}", "--grid=x=0.1,0.2,0.3", f"--main_command={FAKE_MAIN}")
  assert done.returncode == 1 and "cannot read" in done.stderr
  results = json.loads((root / "sweep_results.json").read_text())
  assert [r["status"] for r in results] == ["ok", "unreadable", "ok"]  # The sweep goes on past the torn one.
  assert (killed / "argv.json").is_file() and results[0]["metrics"]["base dev pass@1"] == 10.0


def test_done_marker_is_the_pipelines(tmp_path):
  module = _sweep_module()
  layout = RunLayout(str(tmp_path))
  assert os.path.join(str(tmp_path), module.REPORT_DONE) == layout.stage_marker("report")
  assert os.path.join(str(tmp_path), module.REPORT) == os.path.join(layout.report_dir, "comparison.json")


def test_dry_run_and_bad_grid(tmp_path):
  done = sweep(f"--root={tmp_path}", "--grid=x=1,2", "--dry_run")
  assert done.returncode == 0 and done.stdout.count("+ ") == 2 and not any(tmp_path.iterdir())
  bad = sweep(f"--root={tmp_path}", "--grid=x")
  assert bad.returncode == 2 and "FIELD=V1,V2" in bad.stderr


def test_local_root_is_refused_with_the_local_runner(tmp_path):
  root = tmp_path / "runs"
  done = sweep(f"--root={root}", "--grid=x=0.1", f"--local_root={tmp_path}", f"--main_command={FAKE_MAIN}")
  # Its points write under --root: read elsewhere, every point would be relaunched and read as 'no report'.
  assert done.returncode == 2 and "--local_root is for --runner=queued_resource" in done.stderr
  assert not root.exists()  # Refused before any launch.


def test_queued_resource_runner_launches_one_slice_per_point(tmp_path):
  fake = tmp_path / "gcloud_state"
  fake.mkdir()
  (fake / "states").write_text("ACTIVE\n")
  (fake / "jobs").write_text("0\n")
  env = dict(os.environ, PATH=f"{REPO / 'tests' / 'fake_gcloud'}{os.pathsep}{os.environ['PATH']}")
  env["FAKE_GCLOUD_DIR"] = str(fake)

  def queued_sweep(*args):
    return sweep(
      f"--root={tmp_path / 'runs'}",
      *args,
      "--grid=sampling.temperature=1.2,1.6",
      "--runner=queued_resource",
      "--launcher_args=--project=p --zone=z --accelerator=v5p-32 --poll=0",
      env=env,
      cwd=tmp_path,
    )

  done = queued_sweep()
  calls = [json.loads(line) for line in (fake / "calls.jsonl").read_text().splitlines()]
  creates = [c for c in calls if c[3] == "create"]
  assert len(creates) == 2 and creates[0][4] != creates[1][4]  # One slice per point, each its own name.
  runs = [a for c in calls for a in c if a.startswith("--command=") and "nohup" in a]
  assert any("--config.sampling.temperature=1.2" in r for r in runs)
  assert any("--config.sampling.temperature=1.6" in r for r in runs)
  # The workdir is on the workers (a mount): no report here, and the table says so.
  statuses = [r["status"] for r in json.loads((tmp_path / "runs" / "sweep_results.json").read_text())]
  assert statuses == ["no report", "no report"] and done.returncode == 1
  assert "is not a directory here" in done.stderr
  assert len(list((tmp_path / "logs" / "sweep").iterdir())) == 2  # Each point's host logs, fetched here.

  # The workers' root mounted here as well (--local_root): a finished point is seen, read, and not launched.
  mounted = tmp_path / "mounted"
  finished = mounted / _sweep_module().point_name("configs/default.py", {"sampling.temperature": "1.2"}, [])
  (finished / "stages").mkdir(parents=True)
  (finished / "stages" / "report.done.json").write_text("{}")
  (finished / "report").mkdir()
  (finished / "report" / "comparison.json").write_text('{"models": {}}')
  (fake / "calls.jsonl").unlink()
  again = queued_sweep(f"--local_root={mounted}")
  calls = [json.loads(line) for line in (fake / "calls.jsonl").read_text().splitlines()]
  runs = [a for c in calls for a in c if a.startswith("--command=") and "nohup" in a]
  assert len([c for c in calls if c[3] == "create"]) == 1 and all("temperature=1.6" in r for r in runs)
  statuses = [r["status"] for r in json.loads((tmp_path / "runs" / "sweep_results.json").read_text())]
  assert statuses == ["done", "no report"] and "is not a directory here" not in again.stderr

  # A first sweep into a new folder of the mount: the warning says so, not to pass the flag just passed.
  fresh = queued_sweep(f"--local_root={mounted / 'new'}")
  assert "does not exist yet" in fresh.stderr and "pass --local_root" not in fresh.stderr
