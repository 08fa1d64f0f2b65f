"""Programs that try to pass by what they print, name or leave behind rather than by what they compute.

Each case failed (a wrong program passed, a correct one failed, or the whole evaluation crashed) before the
grader fix named in its comment; all run on one worker, in order, so state left by one program would reach
the next.
"""

import pytest

from ssd_jax.data.problems import TestCase
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox, SandboxLimits
from ssd_jax.evals.verdicts import Verdict

LIMITS = SandboxLimits(timeout_s=5.0, cpu_time_s=5.0, memory_mb=512, max_output_bytes=4096, tmpfs_mb=16)
SUM = (TestCase("sum", stdin="2 3\n", expected_stdout="5\n"),)
RIGHT_SUM = "print(sum(map(int, open('/dev/stdin').read().split())))\n"
PLANT = (
  "import glob, os\n"
  "targets = ['/planted', '/dev/planted', *(d + '/planted.py' for d in glob.glob('/usr/*/python3*/*-packages'))]\n"
  "for path in targets:\n"
  "    try:\n        open(path, 'w').write('40 2')\n    except OSError:\n        pass\n"
  "try:\n    os.unlink('/dev/stdin')\n    os.symlink('/dev/planted', '/dev/stdin')\nexcept OSError:\n    pass\n"
)
LEFT_BEHIND = (
  "import glob, os\n"
  "left = [p for p in ['/planted', '/dev/planted', *glob.glob('/usr/*/python3*/*-packages/planted.py')]"
  " if os.path.exists(p)]\n"
  "assert not left, left\n"
)
SPHERE = (TestCase("volume", code="assert math.isclose(volume_sphere(10), 4188.79, rel_tol=0.001)"),)
FORGED_MATH = "class _M:\n    def isclose(self, *a, **k):\n        return True\nmath = _M()\n"
CASES = {
  # name: (program, tests, expected verdicts). The fix each one checks:
  # Decimal('sNaN') == 5 raised InvalidOperation out of run_many; 'NaN' tokens now compare as text only.
  "snan": ("print('sNaN')\n", SUM, [Verdict.FAILED]),
  "nan_equals_itself_as_text": ("print('NaN')\n", (TestCase("nan", stdin="", expected_stdout="NaN\n"),), None),
  # A cut stdout was compared: the right first line, then a flood hiding a wrong last line, passed.
  "script_output_cut": ("print(5)\nprint('\\n' * 8000)\nprint('WRONG')\n", SUM, [Verdict.ERROR]),
  # The checker kept the last 64,000 characters of what a test printed: a wrong head was cut off. Now it
  # keeps 1 MiB, and a longer output is an error.
  "calls_output_long": (
    "def f(x):\n    return 'WRONG' + '\\n' * 70000 + '4'\n",
    (TestCase("f", code="print(f(2))", expected_stdout="4"),),
    [Verdict.FAILED],
  ),
  "calls_output_cut": (
    "def f(x):\n    return 'WRONG' + '\\n' * (1 << 20) + '4'\n",
    (TestCase("f", code="print(f(2))", expected_stdout="4"),),
    [Verdict.ERROR],
  ),
  # A test that uses `math` without importing it took the program's `math`, whose isclose said True.
  "forged_stdlib_module": (FORGED_MATH + "def volume_sphere(r):\n    return 1.0\n", SPHERE, [Verdict.FAILED]),
  "honest_stdlib_module": (
    "import math\ndef volume_sphere(r):\n    return 4 / 3 * math.pi * r**3\n",
    SPHERE,
    [Verdict.PASSED],
  ),
  # A lone surrogate in an error message crossed into feedback and broke every later encode.
  "lone_surrogate": (
    "def f(x):\n    raise ValueError('bad \\udc80 input')\n",
    (TestCase("f", code="assert f(1) == 1"),),
    [Verdict.ERROR],
  ),
  # The program's StopIteration was raised again as itself in the test's frame and ended its `map` early.
  "stop_iteration_ends_the_tests_loop": (
    "def double(x):\n    raise StopIteration\n",
    (TestCase("all", code="assert all(map(lambda x: double(x) == 2 * x, range(5)))"),),
    [Verdict.ERROR],
  ),
  # A module the program names is imported by the checker, outside the sandbox: `this` printed into the test's
  # output there (and `antigravity` would start a browser). Those stay opaque.
  "module_with_import_side_effects": (
    "import this as zen\n",
    (TestCase("zen", code="zen", expected_stdout=""),),
    [Verdict.PASSED],
  ),
  # Writable / and /dev: a program replaced /dev/stdin, so the next correct program read '40 2' and failed.
  "plant": (PLANT + RIGHT_SUM, SUM, [Verdict.PASSED]),
  "after_plant": (RIGHT_SUM, SUM, [Verdict.PASSED]),
  "nothing_left": (LEFT_BEHIND + RIGHT_SUM, SUM, [Verdict.PASSED]),
}


@pytest.fixture(scope="module")
def runs():
  jobs = [ExecutionJob(program, tests) for program, tests, _ in CASES.values()]
  with Sandbox(LIMITS, workers=1) as sandbox:
    assert sandbox.weak is None
    return dict(zip(CASES, sandbox.run_many(jobs)))


@pytest.mark.parametrize("name", list(CASES))
def test_verdict(runs, name):
  expected = CASES[name][2] or [Verdict.PASSED]
  assert [run.verdict for run in runs[name]] == expected, runs[name]


def test_cut_outputs_say_so(runs):
  for name in ("script_output_cut", "calls_output_cut"):
    assert "output limit exceeded" in runs[name][0].message


def test_texts_are_encodable(runs):
  (run,) = runs["lone_surrogate"]
  assert "bad" in run.message and "input" in run.message
  run.message.encode("utf-8")


def test_weak_sandbox_under_the_graders_uid_says_verdicts_can_be_forged(monkeypatch):
  from ssd_jax.evals import isolation

  monkeypatch.setattr(isolation, "find_bwrap", lambda: None)
  weak = isolation.setup_isolation(None, 1 << 20, allow_weak=True).weak
  assert "bubblewrap" in weak and "forge verdicts" in weak
