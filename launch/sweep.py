#!/usr/bin/env python3
"""A grid of `--config.*` overrides: one run and one workdir per point, a results table at the end.

  python3 launch/sweep.py --config=configs/default.py --root=runs/sweep \\
    --grid=sampling.temperature=1.2,1.6,2.0 --grid=sampling.top_k=10,20

  python3 launch/sweep.py --config=configs/tpu_v5.py --root=/mnt/runs/sweep --sweep_file=sweep.json \\
    --runner=queued_resource --launcher_args='--project=P --zone=us-east5-a --accelerator=v5p-32'

A grid axis is FIELD=V1,V2,... (--grid, repeatable) or a JSON sweep file {"FIELD": [V1, V2], ...} (values may
hold spaces and commas there). Every combination runs as
  python -m ssd_jax.main --config=CONFIG --workdir=ROOT/<key>-<hash> --config.FIELD=V ... [ARGS after --]
or, with --runner=queued_resource, through launch/queued_resource.py on its own slice. <key> reads like
`temperature=1.2_top_k=10`, <hash> is 8 hex digits of CONFIG, the overrides and the ARGS after --, so
names stay short and a point never shares a workdir with another config. A failing point is recorded and the grid
goes on; a point whose report stage finished (its done marker exists) is not run again. The table (also
ROOT/sweep_results.json) lists each point's status and each model's dev pass@1 and pass@n at its selected setting,
from `report/comparison.json` (dev, not test: choose points there, report the chosen one's test); a point whose
report cannot be read is "unreadable".
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys

REPORT = os.path.join("report", "comparison.json")
# The report stage's done marker (RunLayout.stage_marker): written after every file of report/.
REPORT_DONE = os.path.join("stages", "report.done.json")
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "queued_resource.py")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
  extra: list[str] = []
  if "--" in argv:
    split = argv.index("--")
    argv, extra = argv[:split], argv[split + 1 :]
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--config", required=True, help="config file, e.g. configs/default.py")
  p.add_argument("--root", required=True, help="directory holding one workdir per point")
  p.add_argument("--grid", action="append", default=[], help="FIELD=V1,V2,... (repeatable)")
  p.add_argument("--sweep_file", help='JSON {"FIELD": [V1, V2, ...], ...}')
  p.add_argument("--runner", choices=("local", "queued_resource"), default="local")
  p.add_argument("--main_command", default=f"{shlex.quote(sys.executable)} -m ssd_jax.main", help="local runner")
  p.add_argument("--launcher_args", default="", help="arguments for launch/queued_resource.py (its flags)")
  p.add_argument(
    "--local_root",
    default="",
    help="queued_resource runner: where this machine sees --root (the workers' bucket mounted here too); the "
    "sweep reads done markers and reports there (default: --root)",
  )
  p.add_argument("--dry_run", action="store_true", help="print each point's command without running it")
  args = p.parse_args(argv)
  if args.local_root and args.runner == "local":
    # The local runner's points write under --root, so looking anywhere else would relaunch every point.
    p.error("--local_root is for --runner=queued_resource; the local runner reads --root, where its points write")
  return args, extra


def grid_axes(grid: list[str], sweep_file: str | None) -> dict[str, list[str]]:
  """{field: [values as flag text]} from --grid items and the sweep file, in the order given."""
  axes: dict[str, list[str]] = {}
  for item in grid:
    field, sep, values = item.partition("=")
    if not sep or not field or not values:
      raise ValueError(f"--grid {item!r}: expected FIELD=V1,V2,...")
    axes[field] = values.split(",")
  if sweep_file:
    with open(sweep_file) as f:
      loaded = json.load(f)
    if not isinstance(loaded, dict) or not all(isinstance(v, list) and v for v in loaded.values()):
      raise ValueError(f"{sweep_file}: expected a JSON object of non-empty lists")
    for field, values in loaded.items():
      axes[field] = [json.dumps(v) if isinstance(v, bool) else str(v) for v in values]
  for field in axes:
    if field.startswith("--"):
      raise ValueError(f"grid field {field!r}: give the config path without '--config.', e.g. sft.steps")
  return axes


def points(axes: dict[str, list[str]]) -> list[dict[str, str]]:
  """Every combination, first axis slowest; one empty point for an empty grid."""
  fields = list(axes)
  return [dict(zip(fields, combo)) for combo in itertools.product(*(axes[f] for f in fields))]


def point_name(config: str, overrides: dict[str, str], extra: list[str]) -> str:
  """A readable key of the overrides plus a short hash of all the run gets (config, overrides, arguments after --):
  'temperature=1.2_steps=10-1a2b3c4d' (or 'base-<hash>')."""
  key = "_".join(f"{field.rsplit('.', 1)[-1]}={value}" for field, value in overrides.items()) or "base"
  key = re.sub(r"[^A-Za-z0-9._=+-]+", "-", key)[:80]
  run = {"config": config, "overrides": overrides, "extra": extra}
  digest = hashlib.sha1(json.dumps(run, sort_keys=True).encode()).hexdigest()[:8]
  return f"{key}-{digest}"


def point_command(
  args: argparse.Namespace, extra: list[str], name: str, overrides: dict[str, str], workdir: str
) -> list[str]:
  main_args = [f"--config={args.config}", *(f"--config.{f}={v}" for f, v in overrides.items()), *extra]
  if args.runner == "queued_resource":
    launcher = [sys.executable, LAUNCHER, *shlex.split(args.launcher_args), f"--name=sweep-{name[-8:]}"]
    log_dir = os.path.join("logs", "sweep", name)  # Here; the workdir may exist only on the slice.
    return [*launcher, f"--workdir={workdir}", f"--log_dir={log_dir}", "--", *main_args]
  return [*shlex.split(args.main_command), f"--workdir={workdir}", *main_args]


def finished(workdir: str) -> bool:
  """Whether the point's run has finished its report stage (a kill before that leaves no marker)."""
  return os.path.isfile(os.path.join(workdir, REPORT_DONE))


def read_report(workdir: str) -> dict | None:
  """The point's comparison, None until its report stage has finished."""
  if not finished(workdir):
    return None
  with open(os.path.join(workdir, REPORT)) as f:
    return json.load(f)


def headline(report: dict | None) -> dict[str, float]:
  """{'<model> dev pass@1': %, '<model> dev pass@<n>': %} at each model's selected decoding and checkpoint.

  Dev numbers only: choosing a sweep point by the test split's numbers would tune on the held-out problems.
  """
  cells: dict[str, float] = {}
  for model, entry in ((report or {}).get("models") or {}).items():
    chosen = next(c for c in entry["candidates"] if c["key"] == entry["selected"]["key"])
    dev = chosen["dev"]
    cells[f"{model} dev pass@1"] = 100 * dev["pass@1"]
    cells[f"{model} dev pass@{dev['n']}"] = 100 * dev["pass@n"]
  return cells


def table(results: list[dict]) -> str:
  columns = list(dict.fromkeys(c for r in results for c in r["metrics"]))
  width = max([len("point")] + [len(r["name"]) for r in results])
  lines = [f"{'point':<{width}}  {'status':<10}" + "".join(f"{c:>{max(12, len(c) + 2)}}" for c in columns)]
  for r in results:
    cells = "".join(
      f"{(format(r['metrics'][c], '.1f') if c in r['metrics'] else '-'):>{max(12, len(c) + 2)}}" for c in columns
    )
    lines.append(f"{r['name']:<{width}}  {r['status']:<10}" + cells)
  return "\n".join(lines)


def run_sweep(args: argparse.Namespace, extra: list[str]) -> list[dict]:
  results = []
  seen_root = args.local_root or args.root
  if args.runner == "queued_resource" and not args.dry_run and not os.path.isdir(seen_root):
    unseen = "finished points cannot be seen (each is launched again) and no report can be read"
    if args.local_root:  # A first sweep into a new folder of the mount: the workers create it.
      advice = f"--local_root {seen_root} does not exist yet: if it is not a new folder, check the mount ({unseen})"
    else:
      advice = f"{seen_root} is not a directory here: {unseen}; mount the workers' --root here and pass --local_root"
    print(f"warning: {advice}", file=sys.stderr, flush=True)
  for overrides in points(grid_axes(args.grid, args.sweep_file)):
    name = point_name(args.config, overrides, extra)
    workdir, seen = os.path.join(args.root, name), os.path.join(seen_root, name)
    command = point_command(args, extra, name, overrides, workdir)
    print(f"== {name}\n+ {shlex.join(command)}", flush=True)
    if args.dry_run:
      status = "dry run"
    elif finished(seen):
      status = "done"  # Finished before (a re-run sweep picks up where it stopped).
    else:
      if args.runner == "local":
        os.makedirs(workdir, exist_ok=True)
      code = subprocess.run(command).returncode
      status = "ok" if code == 0 else f"exit {code}"
      if code and args.runner == "local":
        print(f"point {name} failed with exit code {code}; continuing", file=sys.stderr, flush=True)
    metrics = {}
    if status in ("ok", "done"):
      try:
        report = read_report(seen)
        metrics = headline(report)
        if report is None:
          status = "no report"
      except Exception as e:  # Torn or malformed: this point's row says so and the sweep goes on.
        status = "unreadable"
        print(f"point {name}: cannot read {os.path.join(seen, REPORT)}: {e!r}", file=sys.stderr, flush=True)
    results.append({"name": name, "overrides": overrides, "status": status, "metrics": metrics})
  return results


def main(argv: list[str]) -> int:
  args, extra = parse_args(argv)
  try:
    results = run_sweep(args, extra)
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(table(results))
  if not args.dry_run:
    os.makedirs(args.root, exist_ok=True)
    with open(os.path.join(args.root, "sweep_results.json"), "w") as f:
      json.dump(results, f, indent=2)
  return 0 if all(r["status"] in ("ok", "done", "dry run") for r in results) else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
