#!/usr/bin/env bash
# Core throughput, all in one run: metatrain's batched C++ core (build/bench/metatrain-core-bench)
# against the two PyTorch baselines of bench/reference/ (the per-task loop of learn2learn and
# `higher`, and the task-batched loop), for every workload x {MAML, FOMAML}, with the
# one-thread kernel roofline measured before and after. Prints the markdown tables of
# docs/benchmarks.md ("Core"). About 10 minutes on 2 cores.
# Usage: bench/run_all.sh [build_dir]    (THREADS="1 2" for more thread counts; idle machine)
set -euo pipefail
build=${1:-build}
threads_list=${THREADS:-1}
export OPENBLAS_NUM_THREADS=1
# As the Makefile does: OpenBLAS 0.3.21 does not recognise recent AVX-512 CPUs and falls back
# to generic kernels (4x slower GEMMs here) unless told the core type.
if [[ -z ${OPENBLAS_CORETYPE:-} ]] && grep -qm1 avx512f /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
python=/usr/bin/python3
results=$(mktemp)
trap 'rm -f "$results"' EXIT

# Python gets the same allocator settings metatrain sets for itself (common/meta/runtime.h):
# without them, page faults on freshly mmap'd multi-MiB tensors cost the batched loop up to 3x.
py() {
  MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864 \
    "$python" "$@"
}

run() {  # workload order threads steps repeats
  local workload=$1 order=$2 threads=$3 steps=$4 repeats=$5
  local algorithm=maml
  [[ $order == 1 ]] && algorithm=fomaml
  echo "  $workload order $order, $threads thread(s)" >&2
  "$build/bench/metatrain-core-bench" --workload "$workload" --algorithm "$algorithm" \
      --threads "$threads" --steps "$steps" --repeats "$repeats" >>"$results"
  local impl
  for impl in per_task task_batched; do
    py "bench/reference/$impl.py" --workload "$workload" --order "$order" \
        --threads "$threads" --steps "$steps" --repeats "$repeats" >>"$results"
  done
}

start=$(date +%s)
echo "roofline" >&2
py bench/reference/roofline.py --threads 1 >>"$results"
for threads in $threads_list; do
  for order in 2 1; do
    run sinusoid "$order" "$threads" 40 7
    run omniglot_fc "$order" "$threads" 10 7
    run omniglot_conv "$order" "$threads" 2 5
  done
done
echo "roofline" >&2
py bench/reference/roofline.py --threads 1 >>"$results"
echo "whole run: $(( $(date +%s) - start )) s, $(date -u '+%Y-%m-%d %H:%M UTC')" >&2

"$python" bench/reference/table.py "$results"
if [[ -n ${BENCH_RESULTS:-} ]]; then cp "$results" "$BENCH_RESULTS"; fi

# One coordinator's intake with 64 simulated workers, per gradient group size
# (docs/benchmarks.md, "Coordinator intake with many workers"; about 1 min).
echo >&2
echo "coordinator intake, 64 simulated workers" >&2
"$build/bench/coordinator_intake_bench" --workers 64 --workload omniglot_fc --group_sizes 1,4,16
