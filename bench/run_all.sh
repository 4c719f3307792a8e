#!/usr/bin/env bash
# Core throughput: metatrain's batched C++ core against the same loop in PyTorch Python,
# for every workload x {MAML, FOMAML} x {1, 2} threads. Prints a markdown table for
# docs/benchmarks.md. Usage: bench/run_all.sh [build_dir]   (run on an idle machine)
set -euo pipefail
build=${1:-build}
export OPENBLAS_NUM_THREADS=1
results=$(mktemp)
trap 'rm -f "$results"' EXIT

run() {  # workload order threads steps repeats
  local workload=$1 order=$2 threads=$3 steps=$4 repeats=$5
  local algorithm=maml
  [[ $order == 1 ]] && algorithm=fomaml
  "$build/bench/metatrain-core-bench" --workload "$workload" --algorithm "$algorithm" \
      --threads "$threads" --steps "$steps" --repeats "$repeats" >>"$results"
  # Python gets the same allocator settings metatrain sets for itself (common/meta/runtime.h).
  MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864 \
  /usr/bin/python3 bench/reference_maml.py --workload "$workload" --order "$order" \
      --threads "$threads" --steps "$steps" --repeats "$repeats" >>"$results"
}

for threads in 1 2; do
  for order in 2 1; do
    run sinusoid "$order" "$threads" 40 5
    run omniglot_fc "$order" "$threads" 10 5
    run omniglot_conv "$order" "$threads" 1 3
  done
done

/usr/bin/python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["workload"], r["order"], r["threads"])
cpp = {key(r): r for r in rows if r["impl"].startswith("metatrain")}
py = {key(r): r for r in rows if r["impl"].startswith("pytorch")}
print("| workload | order | threads | metatrain C++ tasks/s | PyTorch Python tasks/s | ratio | peak RSS C++ / Python (MiB) |")
print("|---|---|---|---|---|---|---|")
for k in sorted(cpp, key=lambda k: (k[0], -k[1], k[2])):
    c, p = cpp[k], py.get(k)
    ratio = f"{c['median'] / p['median']:.1f}x" if p else "-"
    pm = f"{p['median']:.0f}" if p else "-"
    prss = f"{p['peak_rss_mib']:.0f}" if p else "-"
    print(f"| {k[0]} | {'2nd' if k[1] == 2 else '1st'} | {k[2]} | {c['median']:.0f} | {pm} | {ratio} | {c['peak_rss_mib']:.0f} / {prss} |")
PY
