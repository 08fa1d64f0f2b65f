"""One process of the shared-grading test (run by tests/test_evals_shared_sandbox.py, not by pytest).

  python tests/shared_grading_worker.py PROCESS_ID NUM_PROCESSES PORT OUT_DIR

Joins the run over gloo on 127.0.0.1 and grades `shared_grading_cases.completions()` with a SharedSandbox;
writes how many jobs it ran to OUT_DIR/ran_<id>.json and, on process 0, the verdicts and summary it got.
"""

from __future__ import annotations

import json
import os
import sys

import shared_grading_cases as cases

from ssd_jax import distributed, process_group
from ssd_jax.evals import Sandbox, evaluate, summarize
from ssd_jax.evals.shared_sandbox import SharedSandbox


def main(process_id: int, num_processes: int, port: int, out_dir: str) -> None:
  distributed.start_distributed(
    coordinator_address=f"127.0.0.1:{port}", num_processes=num_processes, process_id=process_id
  )
  group = process_group.current()
  assert (group.index, group.count) == (process_id, num_processes), group
  problems, completions = cases.problems_and_completions()
  with SharedSandbox(Sandbox(workers=1), group) as sandbox:
    result = evaluate(problems, completions, sandbox=sandbox)
    ran = sandbox.jobs_run_here
  with open(os.path.join(out_dir, f"ran_{process_id}.json"), "w") as f:
    json.dump(ran, f)
  if process_id == 0:
    with open(os.path.join(out_dir, "graded.json"), "w") as f:
      json.dump({"verdicts": cases.verdicts(result), "summary": cases.totals(summarize(result, (1, 2)))}, f)


if __name__ == "__main__":
  main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
