"""Extra inputs for functional problems and the behaviour of correct samples on them.

Every correct sample gives the same results on the grading tests, so behaviour there cannot tell two
correct strategies apart. A problem's *probe inputs* are new argument tuples for its entry point: those
the problem provides, or, by default, variations of the literal arguments its assert tests pass
(`generated_probe_inputs`): each argument in turn replaced by a neighbour, a negative, an empty value, a
float or a reordering, including values outside the statement's domain, where a formula and a loop, or
`str` and `% 10`, give different results or raise different exceptions. A sample's behaviour is the list
of `repr`s of its results (or the exception type it raised) on the probe inputs, run in the sandbox.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

from ssd_jax.data.problems import Problem, TestCase
from ssd_jax.evals.evaluate import EvalResult
from ssd_jax.evals.sandbox import ExecutionJob, Sandbox
from ssd_jax.evals.verdicts import TestRun

MAX_PROBES = 16
MARKER = "@@probe "
_MAX_REPR_CHARS = 200
_TEST_FUNCTION_ALIASES = ("candidate",)  # HumanEval's check(candidate) calls the entry point by this name

ProbeInputs = Callable[[Problem], Sequence[tuple[Any, ...]] | None]


def _literal_calls(code: str, names: set[str]) -> Iterator[tuple[Any, ...]]:
  """Argument tuples of the calls to one of `names` in `code` whose arguments are all literals."""
  try:
    tree = ast.parse(code)
  except SyntaxError:
    return
  for node in ast.walk(tree):
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names):
      continue
    if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
      continue
    try:
      yield tuple(ast.literal_eval(arg) for arg in node.args)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
      continue


def _variations(value: Any) -> list[Any]:
  """Values near `value` and of its kind, some outside a typical statement's domain."""
  if isinstance(value, bool):
    return [not value]
  if isinstance(value, int):
    return [value + 1, -value - 1, 0, -abs(value) - 3, value + 0.5, 2 * abs(value) + 11]
  if isinstance(value, float):
    return [-value, 0.0, value + 1.0, int(value)]
  if isinstance(value, str):
    return ["", value.upper() + "1 ", value[::-1] + value, " ".join(value), list(value)]
  if isinstance(value, list):
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    extra = [[-v for v in value], [v + 0.5 for v in value], value[:1] * 3] if numeric else [value[:1] * 3]
    return [[], value[::-1], value + value, *extra, tuple(value)]
  if isinstance(value, tuple):
    return [(), value[::-1], list(value)]
  return []


def generated_probe_inputs(problem: Problem, max_probes: int = MAX_PROBES) -> list[tuple[Any, ...]]:
  """Probe inputs made from the literal arguments of the problem's assert tests (none for stdio problems).

  Each test call gives variations with one argument replaced at a time; inputs that repeat a test's
  own arguments or an earlier probe are dropped; at most `max_probes` are kept, in a fixed order
  (round-robin over the test calls, so every test contributes).
  """
  if not problem.entry_point:
    return []
  names = {problem.entry_point, *_TEST_FUNCTION_ALIASES}
  calls = [args for test in problem.tests if test.code for args in _literal_calls(test.code, names)]
  seen = {repr(args) for args in calls}
  per_call = []
  for args in calls:
    options = [args[:i] + (v,) + args[i + 1 :] for i, value in enumerate(args) for v in _variations(value)]
    per_call.append(options)
  probes = []
  for round_index in range(max((len(options) for options in per_call), default=0)):
    for options in per_call:
      if round_index < len(options) and repr(options[round_index]) not in seen and len(probes) < max_probes:
        seen.add(repr(options[round_index]))
        probes.append(options[round_index])
  return probes


def probe_test(entry_point: str, inputs: Sequence[tuple[Any, ...]]) -> TestCase:
  """One test that calls the entry point on each input (fresh arguments each time) and prints a
  marked line per call: the result's repr (capped) or `raised <ExceptionType>`."""
  lines = []
  for args in inputs:
    call = f"{entry_point}({''.join(repr(a) + ', ' for a in args)})"
    lines += [
      "try:",
      f"    _probe_value = repr({call})[:{_MAX_REPR_CHARS}]",
      "except Exception as _probe_error:",
      "    _probe_value = 'raised ' + type(_probe_error).__name__",
      f"print({MARKER!r} + _probe_value, flush=True)",
    ]
  return TestCase(name="probe", code="\n".join(lines))


def behaviour_on_probes(run: TestRun) -> tuple[Hashable, ...]:
  """The marked result lines of a probe run; a run that did not finish (timeout, crash) adds its verdict."""
  results = tuple(line[len(MARKER) :] for line in run.stdout.splitlines() if line.startswith(MARKER))
  return results if run.passed else (*results, run.verdict.value)


def correct_sample_behaviours(
  problems: Sequence[Problem],
  result: EvalResult,
  sandbox: Sandbox,
  probe_inputs: ProbeInputs = generated_probe_inputs,
) -> dict[str, list[tuple[Hashable, ...]] | None]:
  """Runs every correct sample on its problem's probe inputs.

  Args:
    problems: the evaluated problems (those in `result` must be among them).
    result: the evaluation whose correct samples are probed.
    sandbox: the pool to run in.
    probe_inputs: problem -> argument tuples (None or empty: the problem has no probes).

  Returns:
    task_id -> one behaviour per correct sample in sample order, or None for problems without probes.
    Samples with the same program share one run.
  """
  by_id: Mapping[str, Problem] = {p.task_id: p for p in problems}
  programs: dict[str, list[str] | None] = {}
  jobs: dict[tuple[str, str], ExecutionJob] = {}
  for problem_result in result.problems:
    problem = by_id[problem_result.task_id]
    inputs = probe_inputs(problem)
    if not inputs:
      programs[problem.task_id] = None
      continue
    test = probe_test(problem.entry_point, inputs)
    programs[problem.task_id] = [s.program for s in problem_result.samples if s.passed]
    for program in programs[problem.task_id]:
      # Each distinct program runs once: copies of it get one behaviour, not one per run (a probe near the
      # time limit could time out in one run and not in another).
      jobs.setdefault(
        (problem.task_id, program), ExecutionJob(program, (test,), problem.starter_code, problem.entry_point)
      )
  seen = {key: behaviour_on_probes(runs[0]) for key, runs in zip(jobs, sandbox.run_many(list(jobs.values())))}
  return {
    task_id: None if listed is None else [seen[(task_id, program)] for program in listed]
    for task_id, listed in programs.items()
  }
