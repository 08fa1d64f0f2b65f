"""Summary numbers, report files, comparison, and the command line."""

import json

import pytest

from ssd_jax.evals import cli, report
from ssd_jax.evals.evaluate import EvalResult, ProblemResult, SampleResult
from ssd_jax.evals.pass_at_k import paired_difference_text, pass_at_k
from ssd_jax.evals.report import compare_reports, samples_records, write_report
from ssd_jax.evals.summary import summarize
from ssd_jax.evals.verdicts import TestRun, Verdict


def sample(passed, code="x = 1"):
  verdict = Verdict.PASSED if passed else Verdict.FAILED
  return SampleResult("raw", code, code, (TestRun("t", verdict),), "")


def toy_result():
  return EvalResult(
    (
      ProblemResult("a", "easy", tuple(sample(i < 2, f"x = {i}") for i in range(4))),
      ProblemResult("b", "hard", tuple(sample(False) for _ in range(4))),
      ProblemResult("c", "easy", tuple(sample(True) for _ in range(4))),
    )
  )


def test_summary_numbers():
  summary = summarize(toy_result(), ks=(1, 2, 8), num_resamples=200)
  assert summary["ks"] == [1, 2, 4]  # 8 > n dropped, n added
  expected = (pass_at_k(4, 2, 2) + 0 + 1) / 3
  assert summary["pass_at_k"]["2"]["mean"] == pytest.approx(expected)
  assert summary["by_difficulty"]["easy"]["pass_at_k"]["1"]["mean"] == pytest.approx(0.75)
  assert summary["by_difficulty"]["hard"]["num_problems"] == 1
  assert summary["diversity"]["mean_distinct_programs"] == pytest.approx((4 + 1 + 1) / 3)
  assert summary["diversity"]["mean_distinct_behaviours"] == pytest.approx((2 + 1 + 1) / 3)
  assert summary["diversity"]["mean_pass_at_k_gain_1_to_n"] == pytest.approx(0.5 / 3)
  assert summary["verdict_counts"] == {"failed": 6, "passed": 6}


def test_report_and_comparison_files(tmp_path):
  summary = summarize(toy_result(), num_resamples=100)
  paths = write_report(summary, tmp_path / "run", "toy", toy_result())
  for path in paths.values():
    assert path.exists() and path.stat().st_size > 0
  assert json.loads(paths["json"].read_text())["pass_at_k"]["1"]["mean"] == pytest.approx(0.5)
  assert "| all | 3 |" in paths["markdown"].read_text()
  assert paths["plot"].read_bytes()[:4] == b"\x89PNG"
  assert len(paths["samples"].read_text().splitlines()) == 12
  compared = compare_reports({"a": summary, "b": summary}, tmp_path / "cmp")
  assert compared["plot"].read_bytes()[:4] == b"\x89PNG"
  assert "| b | 3 |" in compared["markdown"].read_text()
  # What a run's own report says about its verdicts and coverage, the comparison repeats.
  weak = summary | {"sandbox": {"weak": "no user namespaces"}}
  partial = summary | {"coverage": {"problems": 4, "with_completions": 3, "unknown_task_ids": 0}}
  text = compare_reports({"a": weak, "b": partial}, tmp_path / "cmp2")["markdown"].read_text()
  assert "- a: **WEAK SANDBOX**: verdicts were obtained without full isolation (no user namespaces)." in text
  assert "- b: **PARTIAL**: completions covered 3 of 4 problems" in text
  with pytest.raises(ValueError):
    compare_reports({"a": summary}, tmp_path / "cmp")


def test_report_files_are_whole_or_absent(tmp_path, monkeypatch):
  summary = summarize(toy_result(), num_resamples=20)

  def killed_midway(result):
    yield from list(samples_records(result))[:3]
    raise KeyboardInterrupt

  monkeypatch.setattr(report, "samples_records", killed_midway)
  with pytest.raises(KeyboardInterrupt):
    write_report(summary, tmp_path, "toy", toy_result())
  assert (tmp_path / "report.md").is_file() and not list(tmp_path.glob("samples.jsonl*"))  # No torn file, no leftover.


def test_compare_pairs_runs_over_the_same_problems_and_refuses_others(tmp_path):
  base = summarize(toy_result(), num_resamples=100)
  # Problem a: 2 of 4 correct -> 4 of 4; b and c unchanged: pass@1 +0.5 on one problem of three.
  better = toy_result().problems
  better = EvalResult((ProblemResult("a", "easy", tuple(sample(True) for _ in range(4))), *better[1:]))
  markdown = compare_reports({"base": base, "ssd": summarize(better, num_resamples=100)}, tmp_path / "cmp")
  ssd_row = next(line for line in markdown["markdown"].read_text().splitlines() if line.startswith("| ssd |"))
  # Paired over problems: the difference is 0 on b and c; over three problems the t interval is wide.
  assert "+16.7 [-55.1, +88.4]" in ssd_row
  fewer = summarize(EvalResult(toy_result().problems[:2]), num_resamples=100)
  with pytest.raises(ValueError, match=r"over different problems \(1 in one only, e.g. \['c'\]\)"):
    compare_reports({"base": base, "ssd": fewer}, tmp_path / "cmp")


def test_cli_evaluate_and_compare(tmp_path, capsys):
  problems = tmp_path / "problems.jsonl"
  problems.write_text(
    json.dumps(
      {
        "task_id": "sq",
        "question": "square",
        "entry_point": "sq",
        "difficulty": "easy",
        "tests": [{"code": "assert sq(3) == 9"}],
      }
    )
    + "\n"
  )
  completions = tmp_path / "completions.jsonl"
  lines = [
    {"task_id": "sq", "completion": "def sq(x):\n    return x * x\n"},
    {"task_id": "sq", "completions": ["def sq(x):\n    return x + x\n"]},
  ]
  completions.write_text("\n".join(map(json.dumps, lines)) + "\n")
  cli.main(
    [
      f"--problems={problems}",
      f"--completions={completions}",
      f"--out={tmp_path / 'T=1.2'}",  # sweep points are named field=value
      "--ks=2",  # pass@1 is reported all the same
      "--bootstrap=50",
      "--workers=2",
    ]
  )
  results = tmp_path / "T=1.2" / "results.json"
  result = json.loads(results.read_text())
  assert result["pass_at_k"]["1"]["mean"] == pytest.approx(0.5)
  assert result["pass_at_k"]["2"]["mean"] == pytest.approx(1.0)
  cli.main(["compare", f"--out={tmp_path / 'cmp'}", f"x={results}", str(results)])
  table = (tmp_path / "cmp" / "comparison.md").read_text()
  assert "| x |" in table and "| T=1.2 |" in table, table
  assert "+0.0 (no problem differs)" in table  # The same run twice: not a zero-width interval.
  # Runs are named after their folders: two in folders of one name would overwrite each other silently.
  with pytest.raises(SystemExit):
    cli.main(["compare", f"--out={tmp_path / 'cmp2'}", str(results), str(results)])
  assert "two runs are named 'T=1.2'" in capsys.readouterr().err


def test_difficulties_are_reported_easy_medium_hard():
  problems = tuple(
    ProblemResult(name, difficulty, (sample(True),))
    for name, difficulty in (("a", "hard"), ("b", "easy"), ("c", "medium"))
  )
  summary = summarize(EvalResult(problems), ks=(1,), num_resamples=10)
  assert list(summary["by_difficulty"]) == ["easy", "medium", "hard"]


def test_cli_input_errors_are_one_line_and_coverage_is_reported(tmp_path, capsys):
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n{"task_id": oops}\n')
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--problems=humaneval", f"--completions={bad}", f"--out={tmp_path / 'out'}"])
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.strip() == f"error: {bad}:2: not valid JSON (Expecting value, column 13)"
  unknown = tmp_path / "unknown.jsonl"
  unknown.write_text('{"task_id": "Other/1", "completion": "x"}\n')
  with pytest.raises(SystemExit):
    cli.main(["--problems=humaneval", f"--completions={unknown}", f"--out={tmp_path / 'out'}"])
  assert "none of its 1 task ids" in capsys.readouterr().err
  # A file that covers one problem of 164 would score over that one alone: refused unless asked for, and
  # then every report says so.
  partial = tmp_path / "partial.jsonl"
  partial.write_text('{"task_id": "HumanEval/0", "completion": "    return False"}\n')
  command = ["--problems=humaneval", f"--completions={partial}", f"--out={tmp_path / 'out'}", "--bootstrap=10"]
  with pytest.raises(SystemExit):
    cli.main(command)
  assert "covers 1 of 164 problems (none for e.g. ['HumanEval/1'," in capsys.readouterr().err
  assert not (tmp_path / "out").exists()
  # Listed with no completion is not covered either.
  empty = tmp_path / "empty.jsonl"
  empty.write_text(
    '{"task_id": "HumanEval/0", "completion": "    return False"}\n{"task_id": "HumanEval/1", "completions": []}\n'
  )
  with pytest.raises(SystemExit):
    cli.main(["--problems=humaneval", f"--completions={empty}", f"--out={tmp_path / 'out'}"])
  assert "covers 1 of 164 problems (none for e.g. ['HumanEval/1'," in capsys.readouterr().err
  cli.main([*command, "--allow_partial"])
  assert "completions cover 1 of 164 problems (every number is over those alone)" in capsys.readouterr().err
  assert json.loads((tmp_path / "out" / "results.json").read_text())["coverage"]["with_completions"] == 1
  assert "**PARTIAL**: completions covered 1 of 164 problems" in (tmp_path / "out" / "report.md").read_text()


def test_a_bound_that_rounds_to_zero_prints_as_plus_zero():
  interval = paired_difference_text({"num_problems": 1, "ci_low": -1e-17, "difference": 0.0, "ci_high": 0.1})
  assert interval == "+0.0 [+0.0, +10.0]"  # "-0.0" would read as an interval reaching below zero.
  assert paired_difference_text({"num_problems": 1, "ci_low": -0.002, "difference": 0.01, "ci_high": 0.1}) == (
    "+1.0 [-0.2, +10.0]"
  )


def test_cli_reads_completions_after_the_thinking_opener_their_template_wrote(tmp_path):
  problems = tmp_path / "problems.jsonl"
  problems.write_text(
    json.dumps({"task_id": "sq", "question": "square", "entry_point": "sq", "tests": [{"code": "assert sq(3) == 9"}]})
    + "\n"
  )
  # A thinking model's answer cut off inside its reasoning: the template opened <think>, the file does not show it.
  draft = "Let me try.\n```python\ndef sq(x):\n    return x * x\n```\nWait, but what if x is"
  completions = tmp_path / "completions.jsonl"
  completions.write_text(json.dumps({"task_id": "sq", "completion": draft}) + "\n")
  mean = {}
  for opener in ("", "<think>"):
    out = tmp_path / f"out{len(opener)}"
    flags = [f"--problems={problems}", f"--completions={completions}", f"--out={out}", "--bootstrap=10"]
    cli.main([*flags, f"--thinking_opener={opener}", "--no_probe", "--workers=1"])
    mean[opener] = json.loads((out / "results.json").read_text())["pass_at_k"]["1"]["mean"]
  assert mean == {"": 1.0, "<think>": 0.0}  # Without it, a draft in unfinished reasoning passes.
