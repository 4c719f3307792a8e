#!/usr/bin/env bash
# Runs one job file through the real service (coordinator + N workers on loopback) and
# records what docs/results.md needs: the watch log (progress, validation, meta-test),
# the best checkpoint, the validation history as CSV, wall time and the commit.
#
#   bench/reproduce.sh JOB.json OUT_DIR [WORKERS]
#
# OUT_DIR/ckpt is the coordinator's checkpoint dir: rerunning with the same OUT_DIR
# resumes an interrupted job (--resume) instead of starting again.
set -euo pipefail
job=${1:?usage: bench/reproduce.sh JOB.json OUT_DIR [WORKERS]}
out=${2:?usage: bench/reproduce.sh JOB.json OUT_DIR [WORKERS]}
workers=${3:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${METATRAIN_BUILD_DIR:-$root/build}
export OPENBLAS_NUM_THREADS=1
# As the Makefile does: OpenBLAS 0.3.21 does not recognise recent AVX-512 CPUs and falls back
# to generic kernels (4x slower GEMMs here) unless told the core type.
if [[ -z ${OPENBLAS_CORETYPE:-} ]] && grep -qm1 avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
mkdir -p "$out/ckpt"
cp "$job" "$out/job.json"
git -C "$root" rev-parse --short HEAD > "$out/commit" 2>/dev/null || true

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

resume=()
if compgen -G "$out/ckpt/job-*/resume.pt" > /dev/null; then resume=(--resume); fi
: > "$out/coordinator.out"
"$bin/coordinator/metatrain-coordinator" --listen 127.0.0.1:0 --insecure --checkpoint_dir "$out/ckpt" \
  "${resume[@]}" > "$out/coordinator.out" 2> "$out/coordinator.err" &
pids+=($!)
for _ in $(seq 1 200); do grep -q '^listening on ' "$out/coordinator.out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$out/coordinator.out")
[ -n "$addr" ] || { echo "coordinator did not start: $(cat "$out/coordinator.err")" >&2; exit 1; }
for i in $(seq 1 "$workers"); do
  "$bin/worker/metatrain-worker" --coordinator "$addr" --insecure --name "w$i" > "$out/worker$i.log" 2>&1 &
  pids+=($!)
done

metactl=("$bin/tools/metactl/metactl" --coordinator "$addr" --insecure)
start=$(date +%s)
if [ ${#resume[@]} -gt 0 ]; then
  job_id=$("${metactl[@]}" list | grep -o 'job-[0-9]*' | tail -1)
  "${metactl[@]}" watch "$job_id" >> "$out/watch.log" 2>&1 || true
else
  "${metactl[@]}" submit "$out/job.json" --watch > "$out/watch.log" 2>&1 || true
  job_id=$(grep -o 'job-[0-9]*' "$out/watch.log" | head -1)
fi
echo "wall_s=$(( $(date +%s) - start )) workers=$workers" >> "$out/wall"
"${metactl[@]}" status "$job_id" > "$out/status.txt" 2>&1 || true
"${metactl[@]}" history "$job_id" > "$out/history.csv" 2>&1 || true
"${metactl[@]}" fetch "$job_id" -o "$out/best.pt" >> "$out/watch.log" 2>&1 || true
tail -4 "$out/watch.log"
