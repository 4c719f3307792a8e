#!/usr/bin/env python3
"""The same meta-training step written in plain PyTorch, one task at a time.

This is the baseline the C++ core is measured against (bench/core_bench): per-task MAML
as a PyTorch user writes it (functional forward, torch.autograd.grad with create_graph
for second order), Adam outer step, same models and task shapes.

Usage: /usr/bin/python3 bench/reference_maml.py --workload sinusoid --order 2 --threads 1
Prints one JSON line: {"workload":..., "order":..., "threads":..., "tasks_per_second": [...]}.
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F


def linear_init(fan_in, shape):
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


def make_mlp(sizes, batch_norm):
    params = []
    for i in range(len(sizes) - 1):
        params.append(linear_init(sizes[i], (sizes[i + 1], sizes[i])).requires_grad_())
        params.append(linear_init(sizes[i], (sizes[i + 1],)).requires_grad_())
        if batch_norm and i < len(sizes) - 2:
            params.append(torch.ones(sizes[i + 1]).requires_grad_())
            params.append(torch.zeros(sizes[i + 1]).requires_grad_())
    return params


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


def make_conv(filters, ways, in_ch=1):
    params = []
    c = in_ch
    for _ in range(4):
        params.append(linear_init(c * 9, (filters, c, 3, 3)).requires_grad_())
        params.append(linear_init(c * 9, (filters,)).requires_grad_())
        params.append(torch.ones(filters).requires_grad_())
        params.append(torch.zeros(filters).requires_grad_())
        c = filters
    params.append(linear_init(filters, (ways, filters)).requires_grad_())
    params.append(linear_init(filters, (ways,)).requires_grad_())
    return params


def conv_forward(params, x):
    for i in range(4):
        w, b, g, beta = params[4 * i:4 * i + 4]
        x = F.conv2d(x, w, b, padding=1)
        x = F.batch_norm(x, None, None, g, beta, training=True)
        x = F.max_pool2d(F.relu(x), 2)
    x = x.reshape(x.shape[0], -1)
    return F.linear(x, params[16], params[17])


def sinusoid_task(k):
    amp = torch.empty(1).uniform_(0.1, 5.0)
    phase = torch.empty(1).uniform_(0, math.pi)
    x = torch.empty(2 * k, 1).uniform_(-5, 5)
    y = amp * torch.sin(x - phase)
    return x[:k], y[:k], x[k:], y[k:]


def image_task(ways, shots, query):
    xs = torch.rand(ways * shots, 1, 28, 28)
    ys = torch.arange(ways).repeat_interleave(shots)
    xq = torch.rand(ways * query, 1, 28, 28)
    yq = torch.arange(ways).repeat_interleave(query)
    return xs, ys, xq, yq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=["sinusoid", "omniglot_fc", "omniglot_conv"], required=True)
    ap.add_argument("--order", type=int, choices=[1, 2], default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--meta_batch", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.workload == "sinusoid":
        params = make_mlp([1, 40, 40, 1], False)
        fwd = lambda p, x: mlp_forward(p, x, 3, False)
        sample = lambda: sinusoid_task(10)
        loss_fn = F.mse_loss
        inner_lr, meta_batch = 0.01, args.meta_batch or 25
    else:
        ways = 5
        if args.workload == "omniglot_fc":
            params = make_mlp([784, 256, 128, 64, 64, ways], True)
            fwd = lambda p, x: mlp_forward(p, x, 5, True)
        else:
            params = make_conv(64, ways)
            fwd = conv_forward
        sample = lambda: image_task(ways, 1, 15)
        loss_fn = F.cross_entropy
        inner_lr, meta_batch = 0.4, args.meta_batch or 32
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        for _ in range(meta_batch):
            xs, ys, xq, yq = sample()
            grads = torch.autograd.grad(loss_fn(fwd(params, xs), ys), params,
                                        create_graph=args.order == 2)
            fast = [p - inner_lr * g for p, g in zip(params, grads)]
            (loss_fn(fwd(fast, xq), yq) / meta_batch).backward()
        opt.step()

    step()  # warm-up
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        rates.append(args.steps * meta_batch / (time.perf_counter() - start))
    print(json.dumps({
        "impl": "pytorch-python-per-task", "workload": args.workload, "order": args.order,
        "threads": args.threads, "meta_batch": meta_batch,
        "tasks_per_second": rates, "median": sorted(rates)[len(rates) // 2],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
