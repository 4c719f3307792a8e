#include "common/meta/batched_matmul.h"

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <climits>
#include <cstdint>

// The Fortran BLAS that LibTorch itself calls (libblas.so.3: OpenBLAS, install-deps.sh).
extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
            const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
            const double* alpha, const double* a, const int* lda, const double* b, const int* ldb,
            const double* beta, double* c, const int* ldc);
}

namespace metatrain::meta::internal {
namespace {

// How BLAS (column-major) reads a row-major matrix X [rows, cols] with the given
// strides so that op(X) is X transposed: a row-major matrix with unit column stride is
// its transpose stored column-major ('N'); one with unit row stride is itself stored
// column-major ('T').
struct Operand {
  bool usable = false;
  char trans = 'N';
  int ld = 1;
};

Operand Describe(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride) {
  const int64_t min_row_ld = std::max<int64_t>(cols, 1), min_col_ld = std::max<int64_t>(rows, 1);
  char trans = 0;
  int64_t ld = 0;
  if ((col_stride == 1 || cols == 1) && (rows == 1 || row_stride >= min_row_ld)) {
    trans = 'N';
    ld = rows == 1 ? min_row_ld : row_stride;
  } else if ((row_stride == 1 || rows == 1) && (cols == 1 || col_stride >= min_col_ld)) {
    trans = 'T';
    ld = cols == 1 ? min_col_ld : col_stride;
  }
  // BLAS takes int leading dimensions.
  if (trans == 0 || ld > INT_MAX) return Operand{};
  return Operand{true, trans, static_cast<int>(ld)};
}

Operand DescribeMatrices(const at::Tensor& x) {
  return Describe(x.size(1), x.size(2), x.stride(1), x.stride(2));
}

template <typename Scalar, typename Gemm>
void GemmPerTask(const at::Tensor& a, const Operand& op_a, const at::Tensor& b, const Operand& op_b,
                 at::Tensor& out, bool accumulate, Gemm gemm) {
  const int m = static_cast<int>(a.size(1)), k = static_cast<int>(a.size(2)),
            n = static_cast<int>(b.size(2));
  const int ldc = std::max(n, 1);
  const Scalar one = 1, beta = accumulate ? 1 : 0;
  const Scalar* a_data = a.data_ptr<Scalar>();
  const Scalar* b_data = b.data_ptr<Scalar>();
  Scalar* out_data = out.data_ptr<Scalar>();
  // Row-major C = A B is column-major C^T = B^T A^T.
  for (int64_t t = 0; t < a.size(0); ++t) {
    gemm(&op_b.trans, &op_a.trans, &n, &m, &k, &one, b_data + t * b.stride(0), &op_b.ld,
         a_data + t * a.stride(0), &op_a.ld, &beta, out_data + t * out.stride(0), &ldc);
  }
}

// out[t] = a[t] @ b[t] (+ out[t] when accumulating); out is contiguous [T, M, N].
void RawBatchedMatmulInto(at::Tensor a, at::Tensor b, at::Tensor& out, bool accumulate) {
  if (out.numel() == 0) return;
  if (a.size(2) == 0) {
    if (!accumulate) out.zero_();
    return;
  }
  Operand op_a = DescribeMatrices(a), op_b = DescribeMatrices(b);
  if (!op_a.usable) {
    a = a.contiguous();
    op_a = DescribeMatrices(a);
  }
  if (!op_b.usable) {
    b = b.contiguous();
    op_b = DescribeMatrices(b);
  }
  if (a.scalar_type() == at::kFloat) {
    GemmPerTask<float>(a, op_a, b, op_b, out, accumulate, sgemm_);
  } else {
    GemmPerTask<double>(a, op_a, b, op_b, out, accumulate, dgemm_);
  }
}

at::Tensor RawBatchedMatmul(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor out = at::empty({a.size(0), a.size(1), b.size(2)}, a.options());
  RawBatchedMatmulInto(a, b, out, /*accumulate=*/false);
  return out;
}

class BatchedMatmulFunction : public torch::autograd::Function<BatchedMatmulFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a,
                            const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return RawBatchedMatmul(a, b);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    at::Tensor grad_a, grad_b;
    if (grad.defined() && ctx->needs_input_grad(0)) {
      grad_a = BatchedMatmul(grad, saved[1].transpose(1, 2));
    }
    if (grad.defined() && ctx->needs_input_grad(1)) {
      grad_b = BatchedMatmul(saved[0].transpose(1, 2), grad);
    }
    return {grad_a, grad_b};
  }
};

// x [T, B, in] @ weight[t]^T + bias[t]: the product with beta = 1 onto rows that hold the
// bias already, so the bias is added once, after the product's own sum, as a separate
// x @ W^T + b would add it.
class BatchedLinearFunction : public torch::autograd::Function<BatchedLinearFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& weight, const at::Tensor& bias) {
    ctx->save_for_backward({x, weight});
    at::Tensor out = bias.unsqueeze(1).expand({x.size(0), x.size(1), bias.size(1)}).contiguous();
    RawBatchedMatmulInto(x, weight.transpose(1, 2), out, /*accumulate=*/true);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::autograd::variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &weight = saved[1];
    const at::Tensor& grad = grads[0];
    at::Tensor grad_x, grad_weight, grad_bias;
    if (!grad.defined()) return {grad_x, grad_weight, grad_bias};
    if (ctx->needs_input_grad(0)) grad_x = BatchedMatmul(grad, weight);
    if (ctx->needs_input_grad(1)) grad_weight = BatchedMatmul(grad.transpose(1, 2), x);
    if (ctx->needs_input_grad(2)) {
      // A product with ones, not a sum over the batch: a GEMM per task, whatever T is.
      const at::Tensor ones_row = at::ones({grad.size(0), 1, grad.size(1)}, grad.options());
      grad_bias = BatchedMatmul(ones_row, grad).squeeze(1);
    }
    return {grad_x, grad_weight, grad_bias};
  }
};

bool BlasCanCompute(const at::Tensor& a, const at::Tensor& b) {
  const bool floating = a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble;
  return a.dim() == 3 && b.dim() == 3 && a.device().is_cpu() && b.device().is_cpu() && floating &&
         b.scalar_type() == a.scalar_type() && a.size(0) == b.size(0) && a.size(2) == b.size(1) &&
         a.size(1) < INT_MAX && a.size(2) < INT_MAX && b.size(2) < INT_MAX;
}

}  // namespace

at::Tensor BatchedLinearAffine(const at::Tensor& x, const at::Tensor& weight,
                               const at::Tensor& bias) {
  if (!BlasCanCompute(x, weight.transpose(1, 2)) || bias.dim() != 2 ||
      bias.scalar_type() != x.scalar_type() || bias.size(0) != x.size(0) ||
      bias.size(1) != weight.size(1)) {
    return at::bmm(x, weight.transpose(1, 2)) + bias.unsqueeze(1);
  }
  return BatchedLinearFunction::apply(x, weight, bias);
}

at::Tensor BatchedMatmul(const at::Tensor& a, const at::Tensor& b) {
  // Anything else (including shape errors, which at::bmm reports) stays with ATen.
  if (!BlasCanCompute(a, b)) return at::bmm(a, b);
  return BatchedMatmulFunction::apply(a, b);
}

}  // namespace metatrain::meta::internal
