#!/usr/bin/env bash
# Runs ssd_jax on a Cloud TPU slice through a queued resource.
#
#   PROJECT=my-proj ZONE=us-east5-a ACCELERATOR=v5p-32 NAME=ssd-v5p \
#     launch/queued_resource.sh --config=configs/tpu_v5.py --workdir=/mnt/runs/v5p --config.model.hf_dir=/mnt/ckpt
#
# --workdir must be a directory every worker sees (e.g. a gcsfuse mount of a bucket at /mnt/runs).
# Steps: request the slice (waits until it is ACTIVE), copy this checkout to every worker, install the
# package with the tpu extra, then run the same command on all workers at once (multi-host:
# jax.distributed.initialize() is called by ssd_jax.main when the slice has several hosts).
# Set SPOT=1 for spot capacity, KEEP=1 to keep the slice after the run.
set -euo pipefail

: "${PROJECT:?set PROJECT}" "${ZONE:?set ZONE}" "${ACCELERATOR:?set ACCELERATOR, e.g. v5p-32 or v5litepod-16}"
NAME="${NAME:-ssd-jax-$(date +%Y%m%d-%H%M%S)}"
case "${ACCELERATOR}" in
  v5litepod-*|v5e-*) RUNTIME="${RUNTIME:-v2-alpha-tpuv5-lite}" ;;
  v5p-*) RUNTIME="${RUNTIME:-v2-alpha-tpuv5}" ;;
  v6e-*) RUNTIME="${RUNTIME:-v2-alpha-tpuv6e}" ;;
  *) RUNTIME="${RUNTIME:-tpu-ubuntu2204-base}" ;;
esac
SPOT_FLAG=()
[[ "${SPOT:-0}" == 1 ]] && SPOT_FLAG=(--spot)

gcloud compute tpus queued-resources create "${NAME}" --node-id="${NAME}" --project="${PROJECT}" \
  --zone="${ZONE}" --accelerator-type="${ACCELERATOR}" --runtime-version="${RUNTIME}" "${SPOT_FLAG[@]}"

echo "waiting for ${NAME} to become ACTIVE"
until [[ "$(gcloud compute tpus queued-resources describe "${NAME}" --project="${PROJECT}" --zone="${ZONE}" \
             --format='value(state.state)')" == "ACTIVE" ]]; do
  sleep 30
done

ssh_all() {
  gcloud compute tpus tpu-vm ssh "${NAME}" --project="${PROJECT}" --zone="${ZONE}" --worker=all --command="$1"
}
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
tar -C "${REPO_ROOT}" --exclude=.venv --exclude=.git --exclude=runs -czf /tmp/ssd_jax_src.tgz .
gcloud compute tpus tpu-vm scp /tmp/ssd_jax_src.tgz "${NAME}":/tmp/ --project="${PROJECT}" --zone="${ZONE}" --worker=all
ssh_all "mkdir -p ~/ssd_jax && tar -C ~/ssd_jax -xzf /tmp/ssd_jax_src.tgz && cd ~/ssd_jax && \
  python3 -m venv .venv && . .venv/bin/activate && pip install -q -e '.[tpu]'"
ARGS="$(printf ' %q' "$@")"
ssh_all "cd ~/ssd_jax && . .venv/bin/activate && python -m ssd_jax.main${ARGS}"

if [[ "${KEEP:-0}" != 1 ]]; then
  gcloud compute tpus queued-resources delete "${NAME}" --project="${PROJECT}" --zone="${ZONE}" --force --quiet
fi
