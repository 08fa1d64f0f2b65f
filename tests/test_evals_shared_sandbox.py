"""Grading shared across processes: each host runs its share of the jobs and every host gets every verdict."""

import json
import os
import sys
import threading

import multiprocess_fixtures as mp
import pytest
import shared_grading_cases as cases
import shared_grading_worker as worker

from ssd_jax.evals import Sandbox, evaluate, summarize
from ssd_jax.evals.shared_sandbox import SharedSandbox, shared
from ssd_jax.process_group import ProcessGroup, single_process

TIMEOUT_S = 300


def _threads_as_processes(count: int) -> list[ProcessGroup]:
  """`count` groups whose allgather meets across threads: the exchange without JAX."""
  slots: list[bytes | None] = [None] * count
  barrier = threading.Barrier(count)

  def group(index):
    def allgather(payload):
      slots[index] = payload
      barrier.wait()
      gathered = list(slots)
      barrier.wait()  # Nobody writes the next round before everyone has read this one.
      return gathered

    return ProcessGroup(index, count, allgather)

  return [group(i) for i in range(count)]


def test_process_group_checks_its_index_and_splits_round_robin():
  with pytest.raises(ValueError, match="process index 2"):
    ProcessGroup(2, 2, lambda p: [p])
  assert list(ProcessGroup(1, 3, lambda p: [p]).share(8)) == [1, 4, 7]
  assert single_process().allgather(b"x") == [b"x"]


def test_shared_leaves_a_lone_process_its_pool():
  with Sandbox(workers=1) as pool:
    assert shared(pool, None) is pool and shared(pool, single_process()) is pool
    assert isinstance(shared(pool, _threads_as_processes(2)[0]), SharedSandbox)


def test_three_hosts_in_threads_see_the_verdicts_of_one(tmp_path):
  problems, completions = cases.problems_and_completions()
  with Sandbox(workers=1) as pool:
    alone = cases.verdicts(evaluate(problems, completions, sandbox=pool))
  groups, results, ran = _threads_as_processes(3), [None] * 3, [0] * 3

  def host(i):
    with SharedSandbox(Sandbox(workers=1), groups[i]) as sandbox:
      results[i] = cases.verdicts(evaluate(problems, completions, sandbox=sandbox))
      ran[i] = sandbox.jobs_run_here

  threads = [threading.Thread(target=host, args=(i,)) for i in range(3)]
  for t in threads:
    t.start()
  for t in threads:
    t.join(TIMEOUT_S)
  assert results == [alone] * 3
  assert ran == [4, 4, 4]  # 12 jobs, each run on exactly one host.
  assert {v for per_task in alone.values() for sample in per_task for v in sample} == {"passed", "failed", "error"}


def test_two_processes_grade_half_each_and_total_what_one_process_does(tmp_path):
  port = mp.free_port()
  commands = [[sys.executable, worker.__file__, str(i), "2", str(port), str(tmp_path)] for i in range(2)]
  logs = [tmp_path / f"process_{i}.log" for i in range(2)]
  env = mp.process_env(devices_each=1)
  env["PYTHONPATH"] = os.pathsep.join([str(mp.REPO / "tests"), env["PYTHONPATH"]])
  mp.wait(mp.start(commands, logs, env), logs, TIMEOUT_S)
  graded = json.loads((tmp_path / "graded.json").read_text())
  ran = [json.loads((tmp_path / f"ran_{i}.json").read_text()) for i in range(2)]
  assert ran == [6, 6]

  # Referee: one process grading everything.
  problems, completions = cases.problems_and_completions()
  with Sandbox(workers=1) as pool:
    result = evaluate(problems, completions, sandbox=pool)
  assert graded["verdicts"] == cases.verdicts(result)
  assert graded["summary"] == json.loads(json.dumps(cases.totals(summarize(result, (1, 2)))))
