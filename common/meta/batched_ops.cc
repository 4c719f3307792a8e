#include "common/meta/batched_ops.h"

#include <cmath>

namespace metatrain::meta::internal {
namespace {

constexpr double kBatchNormEps = 1e-5;
// Unused without running statistics, but at::batch_norm wants a value.
constexpr double kBatchNormMomentum = 0.1;

}  // namespace

at::Tensor BatchedLinear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2));
}

at::Tensor BatchedBatchNorm1d(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias) {
  const int64_t t = x.size(0), b = x.size(1), f = x.size(2);
  // [T, B, F] -> [B, T*F]: every (task, feature) pair becomes one batch-norm channel.
  at::Tensor folded = x.transpose(0, 1).reshape({b, t * f});
  at::Tensor y = at::batch_norm(folded, weight.reshape({t * f}), bias.reshape({t * f}),
                                /*running_mean=*/{}, /*running_var=*/{}, /*training=*/true,
                                kBatchNormMomentum, kBatchNormEps, /*cudnn_enabled=*/true);
  return y.reshape({b, t, f}).transpose(0, 1);
}

at::Tensor BatchedBatchNorm2d(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias) {
  return at::batch_norm(x, weight.reshape({-1}), bias.reshape({-1}), {}, {},
                        /*training=*/true, kBatchNormMomentum, kBatchNormEps,
                        /*cudnn_enabled=*/true);
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
