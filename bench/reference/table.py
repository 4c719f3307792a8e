#!/usr/bin/env python3
"""The markdown tables of docs/benchmarks.md ("Core") from the JSON lines bench/run_all.sh
collects: metatrain-core-bench, per_task.py, task_batched.py and roofline.py.

Usage: /usr/bin/python3 bench/reference/table.py results.jsonl
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import WORKLOADS, Workload  # noqa: E402

IMPLS = ("metatrain-cpp-batched", "pytorch-python-per-task", "pytorch-python-task-batched")


def span(values, digits=0):
    """'median (min–max)' of per-round values."""
    ordered = sorted(values)
    f = f"{{:.{digits}f}}".format
    return f"{f(ordered[len(ordered) // 2])} ({f(ordered[0])}–{f(ordered[-1])})"


def digits_for(value):
    return 0 if value >= 100 else 1 if value >= 10 else 2


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    roofline = {}
    for row in rows:
        if row["impl"] == "roofline":
            for key, values in row.items():
                if key.endswith("_gflops"):
                    roofline.setdefault(key, []).extend(values)
    runs = {(r["impl"], r["workload"], r["order"], r["threads"]): r
            for r in rows if r["impl"] in IMPLS}
    # The roofline of a workload: the median round of the fastest kernel its work is made
    # of (the median, not the best round: a round can read high when the clock boosts).
    best = {key: sorted(values)[len(values) // 2] for key, values in roofline.items()}
    conv_best = max(best.get("conv_fwd_bwd_onednn_gflops", 0),
                    best.get("conv_fwd_bwd_thnn_gflops", 0))
    peak = {"sinusoid": best.get("matmul_512_gflops", 0),
            "omniglot_fc": best.get("matmul_512_gflops", 0), "omniglot_conv": conv_best}

    print("| workload | order | threads | MFLOP/task | metatrain tasks/s "
          "| per-task PyTorch tasks/s | task-batched PyTorch tasks/s "
          "| metatrain / strongest PyTorch | peak RSS MiB (metatrain / per-task / batched) "
          "| GFLOP/s (metatrain / per-task / batched) "
          "| % of roofline (metatrain / per-task / batched) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    threads_seen = sorted({k[3] for k in runs})
    for threads in threads_seen:
        for name in WORKLOADS:
            for order in (2, 1):
                found = [runs.get((impl, name, order, threads)) for impl in IMPLS]
                if not any(found):
                    continue
                flops = Workload(name).flops_per_task(order)
                cells, rss, gflops, share = [], [], [], []
                for run in found:
                    if not run:
                        cells.append("-"), rss.append("-"), gflops.append("-"), share.append("-")
                        continue
                    median = run["median"]
                    cells.append(span(run["tasks_per_second"], digits_for(median)))
                    rss.append(f"{run['peak_rss_mib']:.0f}")
                    achieved = median * flops / 1e9
                    gflops.append(f"{achieved:.{digits_for(achieved)}f}")
                    share.append(f"{100 * achieved / peak[name]:.1f}%" if peak[name] else "-")
                ratio = "-"
                python = [r for r in found[1:] if r]
                if found[0] and python:
                    strongest = max(python, key=lambda r: r["median"])
                    which = "per-task" if strongest is found[1] else "batched"
                    lo = min(found[0]["tasks_per_second"]) / max(strongest["tasks_per_second"])
                    hi = max(found[0]["tasks_per_second"]) / min(strongest["tasks_per_second"])
                    ratio = (f"**{found[0]['median'] / strongest['median']:.2f}x** "
                             f"({lo:.2f}–{hi:.2f}) vs {which}")
                print(f"| {name} | {'2nd' if order == 2 else '1st'} | {threads} "
                      f"| {flops / 1e6:.1f} | {' | '.join(cells)} | {ratio} "
                      f"| {' / '.join(rss)} | {' / '.join(gflops)} | {' / '.join(share)} |")

    names = {"matmul_512_gflops": "matmul 512×512×512 (OpenBLAS sgemm)",
             "conv_fwd_onednn_gflops":
                 "conv 3×3 64→64 on [32,64,14,14], forward, oneDNN (F.conv2d; metatrain's)",
             "conv_fwd_bwd_onednn_gflops": "same conv, forward + backward, oneDNN",
             "conv_fwd_thnn_gflops":
                 "same conv, forward, thnn_conv2d (im2col + sgemm; metatrain's until 2026-12-07)",
             "conv_fwd_bwd_thnn_gflops": "same conv, forward + backward, thnn_conv2d"}
    if roofline:
        print()
        print("| roofline kernel (1 thread) | GFLOP/s median (min–max) |")
        print("|---|---|")
        for key, label in names.items():
            if key in roofline:
                print(f"| {label} | {span(roofline[key])} |")


if __name__ == "__main__":
    main()
