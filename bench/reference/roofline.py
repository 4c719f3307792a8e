#!/usr/bin/env python3
"""The one-thread kernel speeds the workloads are measured against (docs/benchmarks.md).

Python's torch (Debian's python3-torch) loads the very libtorch_cpu.so metatrain links
against (/usr/lib/x86_64-linux-gnu/libtorch_cpu.so.1.13), so these are LibTorch's kernels;
at these sizes (milliseconds per call) Python's few microseconds per call do not count.

- matmul: torch.mm of two 512x512 float32 matrices (OpenBLAS sgemm), 2 * 512^3 FLOPs.
- conv: 3x3 convolution, 64 -> 64 channels, padding 1, on [32, 64, 14, 14] (the shape of
  the conv net's second block), 2 * 32*14*14 * 64*64*9 FLOPs forward; forward + backward
  (input and weight gradients) counted as 3x that. Two kernels: F.conv2d (oneDNN,
  PyTorch's default on CPU, and what metatrain's conv body calls, one thread per task,
  docs/core-models.md) and thnn_conv2d (im2col + OpenBLAS GEMM, what metatrain called
  before, for bits independent of the intra-op thread count).

Usage: /usr/bin/python3 bench/reference/roofline.py [--threads 1] [--rounds 5]
Prints one JSON line: {"impl": "roofline", "<kernel>_gflops": [one per round], ...}.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def gflops_per_round(fn, flops, rounds, min_seconds=0.2):
    fn()
    calls = 1
    while True:  # enough calls per round to take min_seconds
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_seconds:
            break
        calls *= 2
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        rates.append(calls * flops / (time.perf_counter() - start) / 1e9)
    return rates


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = {"impl": "roofline", "threads": args.threads}

    a, b = torch.rand(512, 512), torch.rand(512, 512)
    result["matmul_512_gflops"] = gflops_per_round(lambda: torch.mm(a, b), 2 * 512**3,
                                                   args.rounds)

    x = torch.rand(32, 64, 14, 14, requires_grad=True)
    w = (torch.rand(64, 64, 3, 3) * 0.1).requires_grad_()
    bias = torch.zeros(64, requires_grad=True)
    grad_out = torch.rand(32, 64, 14, 14)
    forward_flops = 2 * 32 * 14 * 14 * 64 * 64 * 9
    kernels = {
        "onednn": lambda: F.conv2d(x, w, bias, padding=1),
        "thnn": lambda: torch._C._nn.thnn_conv2d(x, w, (3, 3), bias, (1, 1), (1, 1)),
    }
    for name, conv in kernels.items():
        with torch.no_grad():
            result[f"conv_fwd_{name}_gflops"] = gflops_per_round(conv, forward_flops,
                                                                 args.rounds)

        def forward_backward(conv=conv):
            torch.autograd.grad(conv(), (x, w, bias), grad_out)

        result[f"conv_fwd_bwd_{name}_gflops"] = gflops_per_round(
            forward_backward, 3 * forward_flops, args.rounds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
