#include "common/meta/params.h"

namespace metatrain::meta {

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

}  // namespace metatrain::meta
