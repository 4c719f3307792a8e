#include "common/meta/params.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace metatrain::meta {
namespace {

// Bits, Float: an unsigned integer of the float's width. A float is finite exactly when its
// bits without the sign are below those of +inf (NaNs and infinities have all exponent bits
// set). An integer max-reduction vectorises (integer max is associative, a float reduction is
// not without -ffast-math); per 4,096 elements, so a NaN stops the scan early. On the
// coordinator this runs over every received gradient chunk: 1.7x the previous float-compare
// loop (6.7 -> 11.2 GB/s on 1 MB, 2026-12-07).
template <typename Float, typename Bits>
bool AllFiniteContiguous(const Float* data, int64_t n) {
  static_assert(sizeof(Float) == sizeof(Bits));
  constexpr Bits kAbsMask = std::numeric_limits<Bits>::max() >> 1;
  const Float inf = std::numeric_limits<Float>::infinity();
  Bits inf_bits;
  std::memcpy(&inf_bits, &inf, sizeof(inf));
  constexpr int64_t kBlock = 4096;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t end = std::min(n, start + kBlock);
    Bits largest = 0;
    for (int64_t i = start; i < end; ++i) {
      Bits bits;
      std::memcpy(&bits, data + i, sizeof(bits));
      bits &= kAbsMask;
      largest = largest > bits ? largest : bits;
    }
    if (largest >= inf_bits) return false;
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

bool AllFinite(const at::Tensor& tensor) { return AllFinite(tensor, 0, tensor.numel()); }

bool AllFinite(const at::Tensor& tensor, int64_t begin, int64_t end) {
  if (!at::isFloatingType(tensor.scalar_type())) return true;
  if (tensor.device().is_cpu() && tensor.is_contiguous()) {
    if (tensor.scalar_type() == at::kFloat) {
      return AllFiniteContiguous<float, uint32_t>(tensor.data_ptr<float>() + begin, end - begin);
    }
    if (tensor.scalar_type() == at::kDouble) {
      return AllFiniteContiguous<double, uint64_t>(tensor.data_ptr<double>() + begin, end - begin);
    }
  }
  return at::isfinite(tensor.reshape({-1}).slice(0, begin, end)).all().item<bool>();
}

}  // namespace metatrain::meta
