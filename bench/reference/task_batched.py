#!/usr/bin/env python3
"""Meta-training in plain PyTorch with the tasks of a meta-batch computed together: the
strongest plain-PyTorch formulation we know (no functorch/vmap in 1.13's Debian build).

Every meta-parameter is expanded to a leading task dimension ([T, shape...], a view, no
copy); the inner-loop gradient is taken with respect to those per-task views, so one
backward gives every task's own gradient, and the fast weights are [T, ...] tensors.
Linear layers are one torch.baddbmm for all tasks; the MLP's batch norm is one
F.batch_norm with the tasks folded into the features; the inner update is one torch.add
per parameter. The conv net's body
(conv, batch norm, ReLU, max-pool) runs:
- --conv_body stacked (default): task by task on each task's [n, C, H, W] (a Python loop,
  results stacked), as metatrain's core does, with PyTorch's default (oneDNN) convolution;
- --conv_body grouped: once for all tasks, the tasks folded into the channels
  ([n, T * C, H, W], a grouped convolution with groups = T, one F.batch_norm over the
  folded channels). Several times slower than stacked on this machine, with more memory
  (docs/benchmarks.md has the figures), so not the default.
Same math as per_task.py, which --check verifies.

Usage: /usr/bin/python3 bench/reference/task_batched.py --workload sinusoid --order 2
       /usr/bin/python3 bench/reference/task_batched.py --check [--workload W ...] [--order O]
The first prints one JSON line like per_task.py ("impl": "pytorch-python-task-batched");
--check compares the meta-gradient with per_task.py's on the same parameters and tasks
(in float64) and exits 1 when any parameter's differs by more than --tolerance times the
norm of the whole meta-gradient.
"""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import per_task  # noqa: E402
from workloads import (MLP_SIZES, WORKLOADS, Workload, report, stack_tasks,  # noqa: E402
                       time_steps)

BN_EPS = 1e-5


def linear(x, w, b):
    """x [T, n, in], w [T, out, in], b [T, out] -> [T, n, out]."""
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def mlp_forward(params, x, num_layers, batch_norm):
    x = x.reshape(x.shape[0], x.shape[1], -1)
    it = iter(params)
    for i in range(num_layers):
        w, b = next(it), next(it)
        x = linear(x, w, b)
        if i < num_layers - 1:
            if batch_norm:
                # One F.batch_norm with the tasks folded into the features, [n, T * C]:
                # ~10% faster here than mean/var on [T, n, C], and closer to per_task.py's
                # float32 results (its kernel is the same).
                g, beta = next(it), next(it)
                tasks, n, features = x.shape
                x = F.batch_norm(x.transpose(0, 1).reshape(n, tasks * features), None, None,
                                 g.reshape(-1), beta.reshape(-1), training=True, eps=BN_EPS)
                x = x.reshape(n, tasks, features).transpose(0, 1)
            x = F.relu(x)
    return x


def conv_forward_grouped(params, x):
    """x [T, n, 1, 28, 28]; the T tasks ride in the channels: [n, T * C, H, W]."""
    tasks, n = x.shape[0], x.shape[1]
    x = x.transpose(0, 1).reshape(n, tasks * x.shape[2], x.shape[3], x.shape[4])
    for i in range(4):
        w, b, g, beta = params[4 * i:4 * i + 4]
        x = F.conv2d(x, w.reshape(-1, *w.shape[2:]), b.reshape(-1), padding=1, groups=tasks)
        x = F.batch_norm(x, None, None, g.reshape(-1), beta.reshape(-1), training=True,
                         eps=BN_EPS)
        x = F.max_pool2d(F.relu(x), 2)
    x = x.reshape(n, tasks, -1).transpose(0, 1)
    return linear(x, params[16], params[17])


def conv_forward_stacked(params, x):
    """The conv body task by task (unbind, per-task F.conv2d / F.batch_norm, stack), the
    head batched: metatrain's own formulation, with PyTorch's default (oneDNN) conv."""
    outs = []
    for t in range(x.shape[0]):
        h = x[t]
        for i in range(4):
            w, b, g, beta = (q[t] for q in params[4 * i:4 * i + 4])
            h = F.conv2d(h, w, b, padding=1)
            h = F.batch_norm(h, None, None, g, beta, training=True, eps=BN_EPS)
            h = F.max_pool2d(F.relu(h), 2)
        outs.append(h.reshape(h.shape[0], -1))
    return linear(torch.stack(outs), params[16], params[17])


def forward_and_loss(workload, conv_body="stacked"):
    """The forward pass and the sum over tasks of each task's mean loss."""
    if workload.is_conv:
        forward = conv_forward_stacked if conv_body == "stacked" else conv_forward_grouped
    else:
        layers = len(MLP_SIZES[workload.name]) - 1
        forward = lambda p, x: mlp_forward(p, x, layers, workload.batch_norm)  # noqa: E731
    if workload.regression:
        def loss(out, y):
            return F.mse_loss(out, y, reduction="sum") / (y.shape[1] * y.shape[2])
    else:
        def loss(out, y):
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                   reduction="sum") / y.shape[1]
    return forward, loss


def accumulate_meta_gradient(workload, order, params, tasks, conv_body="stacked"):
    """Adds the mean over the stacked tasks of each task's meta-gradient to .grad."""
    forward, loss_fn = forward_and_loss(workload, conv_body)
    xs, ys, xq, yq = tasks
    count = xs.shape[0]
    per_task_params = [p.unsqueeze(0).expand(count, *p.shape) for p in params]
    # The sum of the tasks' losses: its gradient with respect to task t's view is task t's.
    grads = torch.autograd.grad(loss_fn(forward(per_task_params, xs), ys), per_task_params,
                                create_graph=order == 2)
    fast = [torch.add(p, g, alpha=-workload.inner_lr) for p, g in zip(per_task_params, grads)]
    (loss_fn(forward(fast, xq), yq) / count).backward()


def check(workloads, orders, tolerance, meta_batch, conv_body):
    """Meta-gradients of both loops on the same parameters and tasks; False on a mismatch.

    In float64: in float32 the two loops' rounding alone differs by up to ~1e-4 of the
    FC net's meta-gradient (batch norm over 5 support images after an inner step of lr 0.4
    is ill-conditioned; float32 is ~3e-3 from float64 there), so a float32 comparison
    would test the reduction orders of the kernels rather than the formulation."""
    ok = True
    for name in workloads:
        workload = Workload(name, meta_batch)
        for order in orders:
            torch.manual_seed(1)
            params = [p.detach().double().requires_grad_() for p in workload.init_params()]
            tasks = [tuple(x.double() if x.is_floating_point() else x for x in task)
                     for task in (workload.sample_task() for _ in range(workload.meta_batch))]
            per_task.accumulate_meta_gradient(workload, order, params, tasks)
            expected = [p.grad.clone() for p in params]
            for p in params:
                p.grad = None
            accumulate_meta_gradient(workload, order, params, stack_tasks(tasks), conv_body)
            # Relative to the whole meta-gradient's norm, not each parameter's own: a bias
            # followed by batch norm has a meta-gradient of exactly 0 in exact arithmetic,
            # so both loops' values for it are rounding noise of different shapes.
            scale = torch.cat([e.reshape(-1) for e in expected]).norm().item()
            worst = max((p.grad - e).norm().item() for p, e in zip(params, expected)) / scale
            verdict = "ok" if worst <= tolerance else "MISMATCH"
            ok = ok and worst <= tolerance
            print(f"{name} order {order} ({workload.meta_batch} tasks): largest difference "
                  f"of a parameter's meta-gradient, relative to the meta-gradient's norm: "
                  f"{worst:.2e} {verdict}")
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=WORKLOADS, action="append")
    ap.add_argument("--order", type=int, choices=[1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--meta_batch", type=int, default=0)
    ap.add_argument("--conv_body", choices=["stacked", "grouped"], default="stacked",
                    help="how the conv net's body batches the tasks (module docstring)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--tolerance", type=float, default=1e-9)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.check:
        ok = check(args.workload or WORKLOADS, [args.order] if args.order else [2, 1],
                   args.tolerance, args.meta_batch, args.conv_body)
        sys.exit(0 if ok else 1)
    if not args.workload or len(args.workload) != 1:
        ap.error("give one --workload to benchmark")
    order = args.order or 2
    torch.manual_seed(0)
    workload = Workload(args.workload[0], args.meta_batch)
    params = workload.init_params()
    opt = torch.optim.Adam(params, lr=1e-3)

    def step():
        opt.zero_grad()
        accumulate_meta_gradient(workload, order, params,
                                 workload.sample_tasks(workload.meta_batch), args.conv_body)
        opt.step()

    report("pytorch-python-task-batched", workload, order, args.threads,
           time_steps(step, args.steps, args.repeats))


if __name__ == "__main__":
    main()
