#ifndef METATRAIN_COMMON_META_BATCHED_MATMUL_H_
#define METATRAIN_COMMON_META_BATCHED_MATMUL_H_

// A batched matrix product, differentiable to any order, that calls BLAS once per task
// on raw pointers.
//
// NOTE [Batched products without per-task dispatch]
// at::bmm on CPU (LibTorch 1.13, float and double) runs one GEMM per batch entry too, but
// reaches each through three at::select calls and a dispatched addmm: some ten ATen
// operator calls per task and product. For sinusoid's 10 x 41 x 40 products that
// bookkeeping outweighs the arithmetic (in a profile of the MAML step, select,
// as_strided and resolve_conj took more time than the GEMMs themselves). BatchedMatmul
// makes one strided BLAS call per task instead, and its backward is BatchedMatmul again,
// so MAML's double backward stays on this path.
// Task independence (NOTE [Task independence is bitwise], batched_ops.h) holds the same
// way as for at::bmm: each task's product is its own GEMM call on shapes and strides that
// do not depend on the number of tasks. Float32 and float64 only (what metatrain's
// parameters can be); other dtypes go to at::bmm.

#include <ATen/ATen.h>

namespace metatrain::meta::internal {

// a [T, M, K], b [T, K, N] -> [T, M, N], like at::bmm.
at::Tensor BatchedMatmul(const at::Tensor& a, const at::Tensor& b);

// x [T, B, in] @ weight[t]^T + bias[t] (weight [T, out, in], bias [T, out]) -> [T, B, out]:
// one autograd node, one GEMM per task with the bias added onto its result; the backward
// is three BatchedMatmul products, the bias gradient a product with ones.
at::Tensor BatchedLinearAffine(const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias);

}  // namespace metatrain::meta::internal

#endif  // METATRAIN_COMMON_META_BATCHED_MATMUL_H_
