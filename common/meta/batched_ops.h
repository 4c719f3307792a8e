#ifndef METATRAIN_COMMON_META_BATCHED_OPS_H_
#define METATRAIN_COMMON_META_BATCHED_OPS_H_

// Building blocks of the functional models: layers whose weights carry a leading task
// dimension T, and PyTorch's default initialisers drawn from our portable Rng.
//
// NOTE [Task independence is bitwise]
// Task t's output (and its gradients, first and second order) must be bit-identical
// whether t is computed alone or inside a batch of any size: that is what makes a
// distributed run independent of how tasks are sharded over workers. Every op here
// therefore computes each task's slice with the same sequence of IEEE operations,
// whatever T is:
//  - matrix products are bmm/baddbmm (one GEMM per task, shapes independent of T);
//  - batch norm and max-pool see tasks as separate channels, and their kernels reduce
//    each channel on its own;
//  - no fused multiply-add across tensors whose vectorised/scalar-tail split would
//    depend on T (e.g. `a.sub(b, alpha)` uses FMA in the vector lanes but not in the
//    scalar tail, so an element's rounding would depend on its position, i.e. on T):
//    inner updates are written `phi - (lr * g)`, two separately rounded ops.
// tests/common/meta/batch_independence_test.cc checks this for every model.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "common/meta/rng.h"

namespace metatrain::meta::internal {

// x [T, B, in], weight [T, out, in] (PyTorch's nn.Linear layout), bias [T, out].
at::Tensor BatchedLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// Batch norm with the current batch's statistics (biased variance, eps 1e-5, no running
// statistics), per task and per feature. x [T, B, F]; weight, bias [T, F].
at::Tensor BatchedBatchNorm1d(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias);

// Same for images laid out with tasks folded into channels: x [B, T*C, H, W]; weight,
// bias [T, C]. Statistics are per (task, channel) over B, H, W.
at::Tensor BatchedBatchNorm2d(const at::Tensor& x, const at::Tensor& weight,
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
