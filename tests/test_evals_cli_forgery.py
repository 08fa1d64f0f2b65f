"""Through `python -m ssd_jax.evals`: forged passes score 0 on HumanEval; a weak sandbox is stated at the top."""

import json

import pytest

from ssd_jax.data.problem_files import load_humaneval_problems
from ssd_jax.evals import cli, isolation

# Each forgery is a function body (a continuation of the HumanEval prompt) followed by module-level code.
FORGERIES = {
  # replace json so that a runner writing its report with json reports "completed"
  "patch_json": (
    "    return None\n\n\nimport json as _json\n"
    "_json.dumps = lambda *args, **kwargs: '{\"status\": \"completed\", \"event\": \"done\", \"passed\": true}'\n"
    "_json.loads = lambda *args, **kwargs: {'status': 'completed', 'event': 'done', 'passed': True}\n"
  ),
  # walk up the interpreter's frames and make whatever serves the calls answer "True" from now on
  "walk_frames": (
    "    import sys\n    frame = sys._getframe()\n    while frame is not None:\n"
    "        served = frame.f_locals.get('self')\n        if served is not None and hasattr(served, 'answer'):\n"
    "            served.answer = lambda request: {'value': True}\n        frame = frame.f_back\n    return True\n"
  ),
  # an object equal to everything
  "always_equal": (
    "    class Anything:\n        def __eq__(self, other):\n            return True\n"
    "        def __ne__(self, other):\n            return False\n    return Anything()\n"
  ),
  # print what a passing run might print, then leave before any check
  "exit_after_printing": "    import os\n    print('passed', flush=True)\n    os._exit(0)\n",
}


def _write_completions(path, problems, bodies):
  with open(path, "w", encoding="utf-8") as f:
    for problem in problems:
      for body in bodies:
        f.write(json.dumps({"task_id": problem.task_id, "completion": body}) + "\n")


def test_forgeries_score_zero_on_humaneval(tmp_path):
  completions = tmp_path / "forged.jsonl"
  _write_completions(completions, load_humaneval_problems(), FORGERIES.values())
  out = tmp_path / "report"
  cli.main(["--problems=humaneval", f"--completions={completions}", f"--out={out}", "--ks=1", "--bootstrap=10"])
  summary = json.loads((out / "results.json").read_text())
  assert summary["sandbox"]["weak"] is None
  assert summary["num_problems"] == 164 and summary["num_samples"] == 164 * len(FORGERIES)
  assert summary["pass_at_k"]["1"]["mean"] == 0.0
  assert summary["verdict_counts"].get("passed", 0) == 0
  assert not (out / "report.md").read_text().startswith("**WEAK SANDBOX**")


def test_weak_sandbox_is_refused_or_stated(tmp_path, monkeypatch):
  problems = tmp_path / "problems.jsonl"
  problems.write_text(json.dumps({"task_id": "t/0", "question": "add", "tests": ["assert add(1, 2) == 3"]}) + "\n")
  completions = tmp_path / "completions.jsonl"
  completions.write_text(json.dumps({"task_id": "t/0", "completion": "def add(a, b):\n    return a + b\n"}) + "\n")
  monkeypatch.setattr(isolation, "find_bwrap", lambda: None)
  args = [f"--problems={problems}", f"--completions={completions}", "--ks=1", "--bootstrap=10"]
  with pytest.raises(isolation.IsolationError, match="bubblewrap.*allow_weak_sandbox"):
    cli.main(args + [f"--out={tmp_path / 'refused'}"])
  cli.main(args + [f"--out={tmp_path / 'weak'}", "--allow_weak_sandbox"])
  summary = json.loads((tmp_path / "weak" / "results.json").read_text())
  assert list(summary)[:2] == ["name", "sandbox"] and "bubblewrap" in summary["sandbox"]["weak"]
  assert summary["pass_at_k"]["1"]["mean"] == 1.0
  assert (tmp_path / "weak" / "report.md").read_text().startswith("**WEAK SANDBOX**")
