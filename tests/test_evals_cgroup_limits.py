"""cgroup v2 discovery and a worker cgroup's files; the whole-tree memory cap where a cgroup is writable."""

import pathlib

import pytest

from ssd_jax.data.problems import TestCase
from ssd_jax.evals import cgroup_limits
from ssd_jax.evals.sandbox import Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import Verdict

MOUNTINFO = (
  "25 30 0:22 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
  "26 30 0:23 / {mount} rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
)


def fake_hierarchy(tmp_path: pathlib.Path, controllers: str) -> tuple[str, str, pathlib.Path]:
  mount = tmp_path / "cgroup"
  base = mount / "user.slice" / "eval.scope"
  base.mkdir(parents=True)
  (base / "cgroup.subtree_control").write_text(controllers + "\n")
  (tmp_path / "mountinfo").write_text(MOUNTINFO.format(mount=mount))
  (tmp_path / "cgroup_self").write_text("1:memory:/x\n0::/user.slice/eval.scope\n")
  return str(tmp_path / "mountinfo"), str(tmp_path / "cgroup_self"), base


def test_parses_mountinfo_and_own_cgroup():
  assert cgroup_limits.cgroup2_mount(MOUNTINFO.format(mount="/sys/fs/cgroup/unified")) == pathlib.Path(
    "/sys/fs/cgroup/unified"
  )
  assert cgroup_limits.cgroup2_mount(MOUNTINFO.splitlines()[0]) is None
  assert cgroup_limits.own_cgroup("4:memory:/a\n0::/b/c\n") == "/b/c"
  assert cgroup_limits.own_cgroup("4:memory:/a\n") is None


def test_delegated_parent_needs_memory_and_pids(tmp_path):
  mountinfo, self_cgroup, base = fake_hierarchy(tmp_path, "cpu memory pids")
  assert cgroup_limits.delegated_parent(mountinfo, self_cgroup) == (base, "")
  (base / "cgroup.subtree_control").write_text("cpu memory\n")
  parent, why = cgroup_limits.delegated_parent(mountinfo, self_cgroup)
  assert parent is None and "pids" in why


def test_worker_cgroup_files(tmp_path):
  parent = tmp_path / "scope"
  parent.mkdir()
  cgroup = cgroup_limits.WorkerCgroup(parent, "w0", memory_bytes=3 << 20, max_processes=7)
  assert (cgroup.path / "memory.max").read_text() == str(3 << 20)
  assert (cgroup.path / "pids.max").read_text() == "7"
  cgroup.add([123])
  assert (cgroup.path / "cgroup.procs").read_text() == "123"
  (cgroup.path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n")
  assert cgroup.oom_kills() == 2
  for child in cgroup.path.iterdir():  # a real cgroup's files vanish with it
    child.unlink()
  cgroup.remove()
  assert not cgroup.path.exists()


@pytest.mark.skipif(cgroup_limits.delegated_parent()[0] is None, reason="no writable cgroup v2 with memory and pids")
def test_memory_across_forked_children_is_capped_for_the_tree():
  limits = SandboxLimits(timeout_s=5.0, cpu_time_s=5.0, memory_mb=256, max_processes=8, tmpfs_mb=16)
  program = (
    "import os, time\nfor _ in range(6):\n    if os.fork() == 0:\n        x = bytearray(200 * 2**20)\n"
    "        time.sleep(10)\n        os._exit(0)\ntime.sleep(10)\n"
  )
  with Sandbox(limits, workers=1) as sandbox:
    assert sandbox.describe()["layers"]["process tree"].startswith("cgroup v2")
    (run,) = sandbox.run(program, (TestCase("t", stdin="", expected_stdout=""),))
  assert run.verdict in {Verdict.MEMORY, Verdict.TIMEOUT}
