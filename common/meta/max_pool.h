#ifndef METATRAIN_COMMON_META_MAX_POOL_H_
#define METATRAIN_COMMON_META_MAX_POOL_H_

// 2x2 max-pooling with stride 2, differentiable to any order, with at::max_pool2d's bits.
//
// NOTE [A max-pool kernel of our own]
// LibTorch 1.13's CPU max_pool2d walks every window through a general loop (any kernel,
// stride, padding, dilation; an index computation and a NaN test per element) and took a
// fifth to a quarter of a second-order conv MAML step (docs/benchmarks.md, "Conv net
// profile"). The conv net only pools 2x2 windows with stride 2, and this kernel does just
// that: four loads and three compares per output. The rules are ATen's, so values and
// indices are the same bits: a window's first maximum in row-major order wins, a NaN wins
// (a later NaN over an earlier one), odd sizes floor (the last row or column is dropped).
// Its backward is ATen's max_pool2d_with_indices_backward on the indices kept here, whose
// own derivative ATen has, so second order stays exact. Float32 and float64 on the CPU;
// anything else goes to at::max_pool2d.

#include <ATen/ATen.h>

namespace metatrain::meta::internal {

// x [N, C, H, W] with H, W >= 2 -> [N, C, H / 2, W / 2], like
// at::max_pool2d(x, {2, 2}, {2, 2}).
at::Tensor MaxPool2x2(const at::Tensor& x);

}  // namespace metatrain::meta::internal

#endif  // METATRAIN_COMMON_META_MAX_POOL_H_
