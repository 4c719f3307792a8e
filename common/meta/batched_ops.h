#ifndef METATRAIN_COMMON_META_BATCHED_OPS_H_
#define METATRAIN_COMMON_META_BATCHED_OPS_H_

// Building blocks of the functional models: layers whose weights carry a leading task
// dimension T, and PyTorch's default initialisers drawn from our portable Rng.
//
// NOTE [Task independence is bitwise]
// Task t's output and its gradients, first and second order, must be bit-identical
// whether t is computed alone or inside a batch of any size: that is what makes a
// distributed run independent of how tasks are sharded over workers. LibTorch's CPU
// kernels do not promise this: a reduction's result depends on where its elements sit in
// memory (vectorised lanes vs. scalar tail, how TensorIterator coalesces dimensions),
// so the same task gives different bits at a different position in a bigger tensor.
// Measured on LibTorch 1.13 (CPU), each of these broke it:
//  - at::baddbmm's broadcast bias (its gradient is a sum over the batch of a transposed
//    gradient tensor);
//  - grouped at::conv2d (oneDNN), forward and backward;
//  - at::batch_norm's double backward on [B, T*F] (tasks folded into channels), and
//    at::batch_norm itself on [1, T*C, L] inputs with small L.
// What keeps it:
//  - Per-task matrix products: one GEMM per task on shapes that do not depend on T
//    (BatchedMatmul, batched_matmul.h, which calls BLAS as at::bmm does, minus ATen's
//    per-task dispatch). A linear layer adds its bias onto its product's result and
//    takes the bias gradient as a product with ones (BatchedLinearAffine), so that is a
//    GEMM too. The MLP's batch norm computes
//    its mean and variance as products with a ones vector and broadcasts them back by a
//    product with ones, so its backward and double backward reduce with GEMMs as well.
//  - The conv net's body runs task by task: convolution and at::batch_norm on one
//    task's [B, C, H, W] at a time, i.e. exactly the computation of a batch of one. We
//    measured the alternatives for a MAML step (Omniglot, 64 filters, 8 tasks of 80
//    images, one core): im2col + bmm over all tasks (bitwise, batched) 10-12 s, grouped
//    conv + folded batch norm (not bitwise) 3.7-4.7 s, the per-task loop 3.2-4.2 s.
//    Each call still processes B images, so the loop costs nothing measurable.
//    The convolution is at::conv2d, i.e. oneDNN for float32: its results on a task's own
//    [B, C, H, W] do not depend on the task's place in the batch, but they do change with
//    the intra-op thread count, so every task is computed on one thread (NOTE [One
//    intra-op thread per task], runtime.h). ATen's im2col + GEMM (thnn_conv2d), which
//    metatrain used before and which does not depend on the thread count, is 2-3x slower
//    on these shapes (docs/benchmarks.md).
//  - Everything else is elementwise (ReLU, the normalisation arithmetic), per-plane
//    (max-pool) or data movement (reshape, permute, cat, unbind, stack).
//  - No fused multiply-add whose vector/scalar-tail split depends on position (e.g.
//    `a.sub(b, alpha)` uses FMA in vector lanes only): inner updates are written
//    `phi - (lr * g)`, two separately rounded ops.
// tests/common/meta/batch_independence_test.cc checks the property for every model and
// algorithm with at::equal.
//
// The bits are also independent of how many threads compute task groups at once
// (common/meta/task_groups.h), which the same test checks for every model with 1 vs 4
// threads: each task runs on one intra-op thread (runtime.h); OPENBLAS_NUM_THREADS must
// stay 1 (metatrain's default), since a multi-threaded OpenBLAS GEMM may split its
// reductions by thread.

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "common/meta/rng.h"

namespace metatrain::meta::internal {

// PyTorch's batch-norm epsilon.
inline constexpr double kBatchNormEps = 1e-5;

// x [T, B, in], weight [T, out, in] (PyTorch's nn.Linear layout), bias [T, out].
// Returns [T, B, out].
at::Tensor BatchedLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// Batch norm with the current batch's statistics (biased variance, eps 1e-5, no running
// statistics), per task and per feature, over dimension 1: x [T, B, F]; weight, bias
// [T, F].
at::Tensor BatchNormOverBatch(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias);

// U(-bound, bound) of `shape`, drawn element by element in row-major order from `rng`
// (in double, then rounded to `dtype`), so the values do not depend on the dtype's
// width beyond that final rounding.
at::Tensor UniformTensor(Rng& rng, const std::vector<int64_t>& shape, double bound,
                         at::ScalarType dtype);

// PyTorch's default bound for nn.Linear / nn.Conv2d weights and biases:
// kaiming_uniform_(a=sqrt(5)) gives gain*sqrt(3/fan_in) = 1/sqrt(fan_in), and the bias
// uses the same 1/sqrt(fan_in).
double DefaultInitBound(int64_t fan_in);

}  // namespace metatrain::meta::internal

#endif  // METATRAIN_COMMON_META_BATCHED_OPS_H_
