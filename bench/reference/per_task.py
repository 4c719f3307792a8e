#!/usr/bin/env python3
"""Meta-training in plain PyTorch, one task at a time: the loop learn2learn and `higher`
run (a functional forward from a list of tensors, torch.autograd.grad with
create_graph=True for second order, the query loss's backward per task into .grad).

One of the two baselines metatrain's core is measured against (bench/run_all.sh,
docs/benchmarks.md); the other is task_batched.py. Workloads: workloads.py.

Usage: /usr/bin/python3 bench/reference/per_task.py --workload sinusoid --order 2 --threads 1
Prints one JSON line: {"impl": "pytorch-python-per-task", "workload": ..., "order": ...,
"threads": ..., "tasks_per_second": [one per round], "median": ..., "peak_rss_mib": ...}.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workloads import MLP_SIZES, WORKLOADS, Workload, report, time_steps  # noqa: E402


def mlp_forward(params, x, num_layers, batch_norm):
    x = x.reshape(x.shape[0], -1)
    it = iter(params)
    for i in range(num_layers):
        w, b = next(it), next(it)
        x = F.linear(x, w, b)
        if i < num_layers - 1:
            if batch_norm:
                g, beta = next(it), next(it)
                x = F.batch_norm(x, None, None, g, beta, training=True)
            x = F.relu(x)
    return x


def conv_forward(params, x):
    for i in range(4):
        w, b, g, beta = params[4 * i:4 * i + 4]
        x = F.conv2d(x, w, b, padding=1)
        x = F.batch_norm(x, None, None, g, beta, training=True)
        x = F.max_pool2d(F.relu(x), 2)
    x = x.reshape(x.shape[0], -1)
    return F.linear(x, params[16], params[17])


def forward_and_loss(workload):
    if workload.is_conv:
        forward = conv_forward
    else:
        layers = len(MLP_SIZES[workload.name]) - 1
        forward = lambda p, x: mlp_forward(p, x, layers, workload.batch_norm)  # noqa: E731
    loss = F.mse_loss if workload.regression else F.cross_entropy
    return forward, loss


def accumulate_meta_gradient(workload, order, params, tasks):
    """Adds the mean over `tasks` of each task's meta-gradient to the params' .grad."""
    forward, loss_fn = forward_and_loss(workload)
    for xs, ys, xq, yq in tasks:
        grads = torch.autograd.grad(loss_fn(forward(params, xs), ys), params,
                                    create_graph=order == 2)
        fast = [p - workload.inner_lr * g for p, g in zip(params, grads)]
        (loss_fn(forward(fast, xq), yq) / len(tasks)).backward()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=WORKLOADS, required=True)
    ap.add_argument("--order", type=int, choices=[1, 2], default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--meta_batch", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    workload = Workload(args.workload, args.meta_batch)
    params = workload.init_params()
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        tasks = [workload.sample_task() for _ in range(workload.meta_batch)]
        accumulate_meta_gradient(workload, args.order, params, tasks)
        opt.step()

    report("pytorch-python-per-task", workload, args.order, args.threads,
           time_steps(step, args.steps, args.repeats))


if __name__ == "__main__":
    main()
