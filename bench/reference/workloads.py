"""What the PyTorch reference loops share: the workloads, their models, task sampling,
the timing harness and the FLOP count of one task.

The workloads are those of bench/core_bench.cc (metatrain's JobSpec defaults): sinusoid
regression (MLP 1-40-40-1, K = 10 support + 10 query points, meta-batch 25, inner lr
0.01, MSE) and Omniglot-sized 5-way 1-shot classification (28x28x1 images, 15 queries per
class, meta-batch 32, inner lr 0.4, cross-entropy) with the fully-connected net
784-256-128-64-64-5 with batch norm or the 4-block conv net with 64 filters. One inner
step, Adam outer step (lr 1e-3). Batch norm uses the current batch's statistics (biased
variance, eps 1e-5), per task, support and query normalised separately, as metatrain does.
"""
import json
import math
import resource
import time

import torch

WORKLOADS = ("sinusoid", "omniglot_fc", "omniglot_conv")
WAYS, SHOTS, QUERIES = 5, 1, 15
SINUSOID_K = 10
MLP_SIZES = {"sinusoid": [1, 40, 40, 1], "omniglot_fc": [784, 256, 128, 64, 64, WAYS]}
CONV_FILTERS = 64


class Workload:
    def __init__(self, name, meta_batch=0):
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name}")
        self.name = name
        self.regression = name == "sinusoid"
        self.meta_batch = meta_batch or (25 if self.regression else 32)
        self.inner_lr = 0.01 if self.regression else 0.4
        self.support = SINUSOID_K if self.regression else WAYS * SHOTS
        self.query = SINUSOID_K if self.regression else WAYS * QUERIES
        self.is_conv = name == "omniglot_conv"
        self.batch_norm = name == "omniglot_fc"

    def init_params(self):
        """The meta-parameters, in state_dict order (PyTorch's default Linear/Conv2d init)."""
        if self.is_conv:
            return make_conv(CONV_FILTERS, WAYS)
        return make_mlp(MLP_SIZES[self.name], self.batch_norm)

    def sample_task(self):
        """One task: (support x, support y, query x, query y), x as [n, features...]."""
        if self.regression:
            return sinusoid_tasks(1, SINUSOID_K)[0]
        return image_tasks(1)[0]

    def sample_tasks(self, count):
        """`count` tasks stacked on a leading task dimension, drawn with a few calls."""
        if self.regression:
            return sinusoid_tasks(count, SINUSOID_K)
        return image_tasks(count)

    def forward_flops_per_example(self):
        """Multiply-add FLOPs (2 per MAC) of the forward GEMMs/convolutions, per layer."""
        if not self.is_conv:
            sizes = MLP_SIZES[self.name]
            return [2 * sizes[i] * sizes[i + 1] for i in range(len(sizes) - 1)]
        flops, size, channels = [], 28, 1
        for _ in range(4):
            flops.append(2 * size * size * CONV_FILTERS * channels * 9)  # 3x3, padding 1
            size, channels = size // 2, CONV_FILTERS  # 2x2 max-pool
        flops.append(2 * CONV_FILTERS * WAYS)
        return flops

    def flops_per_task(self, order):
        """GEMM/convolution FLOPs of one task's meta-gradient (docs/benchmarks.md,
        "FLOP count"). A product of forward cost f costs f more for the gradient of its
        weights and f for the gradient of its input, except in the first layer, whose
        input (the data) needs none. First order: forward + backward on the support set,
        forward + backward on the query set. Second order adds, on the support set, the
        backward of the inner backward (each of its products, weight and input gradients,
        differentiated in both operands: 2f each, the data operand excepted) and a second
        backward through the support forward: 9f per product (4f in the first layer)
        instead of 3f (2f)."""
        total = 0
        for layer, f in enumerate(self.forward_flops_per_example()):
            first = layer == 0
            once = 2 if first else 3
            twice = 4 if first else 9
            total += (twice if order == 2 else once) * f * self.support
            total += once * f * self.query
        return total


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


def sinusoid_tasks(count, k):
    """[(xs, ys, xq, yq)] for count == 1 (x [k, 1]), else the stacked [count, k, 1] tensors."""
    amp = torch.empty(count, 1, 1).uniform_(0.1, 5.0)
    phase = torch.empty(count, 1, 1).uniform_(0, math.pi)
    x = torch.empty(count, 2 * k, 1).uniform_(-5, 5)
    y = amp * torch.sin(x - phase)
    stacked = (x[:, :k], y[:, :k], x[:, k:], y[:, k:])
    return [tuple(t[0] for t in stacked)] if count == 1 else stacked


def image_tasks(count):
    """Omniglot-sized random images; labels 0..ways-1 in class order, as synthetic_images."""
    xs = torch.rand(count, WAYS * SHOTS, 1, 28, 28)
    xq = torch.rand(count, WAYS * QUERIES, 1, 28, 28)
    ys = torch.arange(WAYS).repeat_interleave(SHOTS).expand(count, -1)
    yq = torch.arange(WAYS).repeat_interleave(QUERIES).expand(count, -1)
    stacked = (xs, ys, xq, yq)
    return [tuple(t[0] for t in stacked)] if count == 1 else stacked


def stack_tasks(tasks):
    """Per-task tuples -> the stacked form the task-batched loop takes."""
    return tuple(torch.stack(parts) for parts in zip(*tasks))


def time_steps(step, steps, repeats):
    """Tasks-per-second of `repeats` rounds of `steps` meta-steps, after one warm-up step."""
    step()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps / (time.perf_counter() - start))
    return rates


def report(impl, workload, order, threads, step_rates):
    rates = [r * workload.meta_batch for r in step_rates]
    print(json.dumps({
        "impl": impl, "workload": workload.name, "order": order, "threads": threads,
        "meta_batch": workload.meta_batch, "tasks_per_second": rates,
        "median": sorted(rates)[len(rates) // 2],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
