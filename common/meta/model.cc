#include "common/meta/model.h"

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/meta/conv_net.h"
#include "common/meta/mlp.h"

namespace metatrain::meta {
namespace {

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> MakeModel(const v1::ModelSpec& spec,
                                                 const std::vector<int64_t>& input_shape,
                                                 int64_t output_size) {
  if (output_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model output size must be > 0 (got ", output_size, ")"));
  }
  if (input_shape.empty()) {
    return absl::InvalidArgumentError("model input shape must not be empty");
  }
  for (int64_t d : input_shape) {
    if (d <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model input shape must be positive (got ", ShapeString(input_shape), ")"));
    }
  }
  if (spec.kind() == "mlp") {
    std::vector<int64_t> hidden;
    for (int i = 0; i < spec.hidden_sizes_size(); ++i) {
      if (spec.hidden_sizes(i) <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model.hidden_sizes[", i, "] must be > 0 (got ", spec.hidden_sizes(i), ")"));
      }
      hidden.push_back(spec.hidden_sizes(i));
    }
    return std::make_unique<Mlp>(input_shape, std::move(hidden), spec.batch_norm(), output_size);
  }
  if (spec.kind() == "conv") {
    if (spec.filters() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.filters must be > 0 (got ", spec.filters(), ")"));
    }
    // The conv net always has batch norm (job.proto), whatever spec.batch_norm() says.
    if (input_shape.size() != 3) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model.kind 'conv' needs image inputs [C, H, W] (got ", ShapeString(input_shape), ")"));
    }
    constexpr int64_t kMinSide = int64_t{1} << ConvNet::kBlocks;
    if (input_shape[1] < kMinSide || input_shape[2] < kMinSide) {
      return absl::InvalidArgumentError(
          absl::StrCat("model.kind 'conv' needs images of at least ", kMinSide, "x", kMinSide,
                       " (four 2x2 poolings; got ", input_shape[1], "x", input_shape[2], ")"));
    }
    return std::make_unique<ConvNet>(input_shape, spec.filters(), output_size);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("model.kind: unknown '", spec.kind(), "' (expected one of mlp, conv)"));
}

}  // namespace metatrain::meta
