#ifndef METATRAIN_COMMON_META_PARAMS_H_
#define METATRAIN_COMMON_META_PARAMS_H_

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

namespace metatrain::meta {

// Parameters travel as an ordered list of tensors; the order is fixed by a list of specs.
using TensorList = std::vector<at::Tensor>;

struct ParamSpec {
  // state_dict key, named like the PyTorch module we mirror ("net.0.weight").
  std::string name;
  std::vector<int64_t> shape;
  // Part of the classifier/regressor head (the only part ANIL adapts).
  bool head = false;
};

int64_t NumElements(const ParamSpec& spec);
int64_t TotalNumElements(const std::vector<ParamSpec>& specs);

// True when no element is NaN or infinite. For contiguous CPU float/double tensors, one
// read pass without temporaries: at::isfinite materialises three full-size intermediates,
// which made it most of the coordinator's cost per received gradient (docs/benchmarks.md).
bool AllFinite(const at::Tensor& tensor);
// The same for elements [begin, end) of a contiguous CPU tensor, in memory order: a
// receiver checks each chunk right after copying it, while it is still in cache.
bool AllFinite(const at::Tensor& tensor, int64_t begin, int64_t end);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_PARAMS_H_
