#include "common/meta/batched_ops.h"

#include <cmath>

#include "common/meta/batched_matmul.h"

namespace metatrain::meta::internal {
at::Tensor BatchedLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return BatchedLinearAffine(x, weight, bias);
}

at::Tensor BatchNormOverBatch(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias) {
  const int64_t t = x.size(0), b = x.size(1);
  const at::Tensor ones_row = at::ones({t, 1, b}, x.options());           // reduces over B
  const at::Tensor ones_col = at::ones({t, b, 1}, x.options());           // broadcasts over B
  at::Tensor mean = BatchedMatmul(ones_row, x) / static_cast<double>(b);  // [T, 1, F]
  at::Tensor centered = x - BatchedMatmul(ones_col, mean);
  at::Tensor var = BatchedMatmul(ones_row, centered * centered) / static_cast<double>(b);
  at::Tensor scale = at::rsqrt(var + kBatchNormEps) * weight.unsqueeze(1);  // [T, 1, F]
  return centered * BatchedMatmul(ones_col, scale) + BatchedMatmul(ones_col, bias.unsqueeze(1));
}

at::Tensor UniformTensor(Rng& rng, const std::vector<int64_t>& shape, double bound,
                         at::ScalarType dtype) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<double> values(static_cast<size_t>(n));
  for (double& v : values) v = rng.Uniform(-bound, bound);
  return at::tensor(values, at::TensorOptions().dtype(at::kDouble)).reshape(shape).to(dtype);
}

double DefaultInitBound(int64_t fan_in) {
  return fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
}

}  // namespace metatrain::meta::internal
