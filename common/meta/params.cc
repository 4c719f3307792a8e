#include "common/meta/params.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace metatrain::meta {
namespace {

template <typename T>
bool AllFiniteContiguous(const T* data, int64_t n) {
  // |x| <= max is false exactly for NaN and +-inf; an and-reduction of comparisons
  // vectorises, where an early exit per element would not.
  constexpr T kMax = std::numeric_limits<T>::max();
  constexpr int64_t kBlock = 4096;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    bool finite = true;
    for (int64_t i = start; i < end; ++i) finite &= std::fabs(data[i]) <= kMax;
    if (!finite) return false;
  }
  return true;
}

}  // namespace

int64_t NumElements(const ParamSpec& spec) {
  int64_t n = 1;
  for (int64_t d : spec.shape) n *= d;
  return n;
}

int64_t TotalNumElements(const std::vector<ParamSpec>& specs) {
  int64_t n = 0;
  for (const auto& spec : specs) n += NumElements(spec);
  return n;
}

bool AllFinite(const at::Tensor& tensor) {
  if (!at::isFloatingType(tensor.scalar_type())) return true;
  if (tensor.device().is_cpu() && tensor.is_contiguous()) {
    if (tensor.scalar_type() == at::kFloat) {
      return AllFiniteContiguous(tensor.data_ptr<float>(), tensor.numel());
    }
    if (tensor.scalar_type() == at::kDouble) {
      return AllFiniteContiguous(tensor.data_ptr<double>(), tensor.numel());
    }
  }
  return at::isfinite(tensor).all().item<bool>();
}

}  // namespace metatrain::meta
