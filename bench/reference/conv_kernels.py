"""The per-task PyTorch MAML loop on the conv net with either convolution kernel: oneDNN
(F.conv2d, what metatrain's conv body calls) or ATen's im2col + GEMM (thnn_conv2d, what it
called before), to measure what the kernel alone is worth on a whole second-order task.
It also saves the meta-gradient, so two runs with different --threads show whether a
kernel's bits depend on the intra-op thread count (oneDNN's do: docs/core-models.md).

Usage: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/reference/conv_kernels.py \\
           --kernel onednn|thnn [--threads 1] [--tasks 8] [--save grads.pt]
Prints one line: kernel, threads, tasks per second of one timed meta-step.
"""
import argparse
import time

import torch
import torch.nn.functional as F

import workloads


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--kernel", choices=("onednn", "thnn"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--save", default="")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)

    def conv(x, w, b):
        if args.kernel == "onednn":
            return F.conv2d(x, w, b, padding=1)
        return torch._C._nn.thnn_conv2d(x, w, (3, 3), b, (1, 1), (1, 1))

    def forward(p, x):
        for i in range(4):
            x = conv(x, p[4 * i], p[4 * i + 1])
            x = F.batch_norm(x, None, None, p[4 * i + 2], p[4 * i + 3], training=True)
            x = F.max_pool2d(F.relu(x), 2)
        return F.linear(x.flatten(1), p[16], p[17])

    workload = workloads.Workload("omniglot_conv")
    params = workload.init_params()
    tasks = [workload.sample_task() for _ in range(args.tasks)]

    def step():
        total = [torch.zeros_like(p) for p in params]
        for xs, ys, xq, yq in tasks:
            inner = torch.autograd.grad(F.cross_entropy(forward(params, xs), ys), params,
                                        create_graph=True)
            fast = [p - workload.inner_lr * g for p, g in zip(params, inner)]
            outer = torch.autograd.grad(F.cross_entropy(forward(fast, xq), yq), params)
            for t, g in zip(total, outer):
                t += g
        return total

    step()
    start = time.perf_counter()
    grads = step()
    elapsed = time.perf_counter() - start
    if args.save:
        torch.save(grads, args.save)
    print(f"{args.kernel} {args.threads} thread(s): {args.tasks / elapsed:.2f} tasks/s")


if __name__ == "__main__":
    main()
