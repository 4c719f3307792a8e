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
//  - at::batch_norm's double backward (sums over all but the channel dimension), and
//    at::batch_norm itself on [1, T*C, L] inputs with small L.
// What keeps it, and what this file therefore uses, is to do every reduction as a
// per-task matrix product: at::bmm runs one GEMM per task on shapes that do not depend
// on T, so each task's arithmetic is the same whatever the batch. Concretely:
//  - a linear layer is one bmm with the bias folded in (inputs get a column of ones);
//  - a convolution is im2col (pure data movement) + that same bmm;
//  - batch norm computes its mean and variance as products with a vector of ones and
//    broadcasts them back with a product by ones, so its backward and double backward
//    reduce with GEMMs too;
//  - everything else is elementwise (ReLU, the normalisation arithmetic), per-plane
//    (max-pool) or data movement (reshape, permute, cat);
//  - no fused multiply-add whose vector/scalar-tail split depends on position (e.g.
//    `a.sub(b, alpha)` uses FMA in vector lanes only): inner updates are written
//    `phi - (lr * g)`, two separately rounded ops.
// The price is memory: im2col materialises 9x the input activations of each convolution.
// tests/common/meta/batch_independence_test.cc checks the property for every model and
// algorithm with at::equal.

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>

#include "common/meta/rng.h"

namespace metatrain::meta::internal {

// x [T, B, in], weight [T, out, in] (PyTorch's nn.Linear layout), bias [T, out].
// Returns [T, B, out].
at::Tensor BatchedLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

// Batch norm with the current batch's statistics (biased variance, eps 1e-5, no running
// statistics), per task and per feature, over dimension 1: x [T, B, F]; weight, bias
// [T, F].
at::Tensor BatchNormOverBatch(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias);

// Same, over the last dimension: x [T, C, L] (L = batch x spatial positions of channel
// c); weight, bias [T, C].
at::Tensor BatchNormOverLast(const at::Tensor& x, const at::Tensor& weight,
                             const at::Tensor& bias);

// 3x3 convolution, padding 1, stride 1, for T tasks: x [T, B, C, H, W], weight
// [T, F, C, 3, 3], bias [T, F]. Returns [T, F, B*H*W] (channel-major, ready for
// BatchNormOverLast).
at::Tensor BatchedConv3x3(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias);

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
