"""A stand-in for `python -m ssd_jax.main` in sweep tests: writes a report from its overrides, or fails.

--config.fail=yes exits 3; otherwise report/comparison.json gets dev pass@1 = the value of --config.x (or 0.5),
then the report stage's done marker is written; argv.json records the arguments as received.
"""

import json
import os
import sys

args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
workdir = args["workdir"]
os.makedirs(os.path.join(workdir, "report"), exist_ok=True)
with open(os.path.join(workdir, "argv.json"), "w") as f:
  json.dump(sys.argv[1:], f)
if args.get("config.fail") == "yes":
  sys.exit(3)
score = float(args.get("config.x", 0.5))
# The fields of the pipeline's comparison.json that the sweep reads (test_pipeline_ssd checks them on a real one).
chosen = {"key": "final/T1.0", "dev": {"pass@1": score, "pass@n": min(1.0, 2 * score), "n": 8}}
report = {"models": {"base": {"selected": {"key": "final/T1.0"}, "candidates": [{"key": "final/T0.5"}, chosen]}}}
with open(os.path.join(workdir, "report", "comparison.json"), "w") as f:
  json.dump(report, f)
os.makedirs(os.path.join(workdir, "stages"), exist_ok=True)
with open(os.path.join(workdir, "stages", "report.done.json"), "w") as f:  # Last, as the pipeline's runner does.
  json.dump({}, f)
