#!/usr/bin/env bash
# A grid over absl config overrides: one run (and workdir) per combination, run one after another.
#
#   launch/sweep.sh configs/default.py runs/sweep \
#     "sampling.temperature=1.2,1.6,2.0" "eval_sampling.temperature=0.7,1.1"
#
# Each argument after the workdir root is FIELD=V1,V2,...; every combination runs
#   python -m ssd_jax.main --config=CONFIG --workdir=ROOT/FIELD=V... --config.FIELD=V ...
# Set RUNNER to prefix each command (e.g. RUNNER="launch/queued_resource.sh" with its variables set).
set -euo pipefail
CONFIG="${1:?config file}"; ROOT="${2:?workdir root}"; shift 2

combos=("")
for axis in "$@"; do
  field="${axis%%=*}"; IFS=',' read -ra values <<< "${axis#*=}"
  next=()
  for c in "${combos[@]}"; do
    for v in "${values[@]}"; do next+=("${c} ${field}=${v}"); done
  done
  combos=("${next[@]}")
done

for c in "${combos[@]}"; do
  read -ra pairs <<< "${c}"
  name="$(IFS=_; echo "${pairs[*]}")"
  flags=()
  for p in "${pairs[@]}"; do flags+=("--config.${p}"); done
  echo "== ${name:-base}"
  ${RUNNER:-python -m ssd_jax.main} --config="${CONFIG}" --workdir="${ROOT}/${name:-base}" "${flags[@]}"
done
