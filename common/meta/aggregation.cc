#include "common/meta/aggregation.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace metatrain::meta {

TaskOrderAggregator::TaskOrderAggregator(std::vector<ParamSpec> specs, int64_t num_tasks)
    : specs_(std::move(specs)), gradients_(num_tasks > 0 ? num_tasks : 0) {}

absl::Status TaskOrderAggregator::Add(int64_t index, TensorList gradient) {
  const auto num_tasks = static_cast<int64_t>(gradients_.size());
  if (index < 0 || index >= num_tasks) {
    return absl::InvalidArgumentError(
        absl::StrCat("task index ", index, " out of range [0, ", num_tasks, ")"));
  }
  if (!gradients_[index].empty()) {
    return absl::AlreadyExistsError(absl::StrCat("gradient of task ", index, " already received"));
  }
  if (gradient.size() != specs_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("task ", index, ": ", gradient.size(),
                                                   " gradient tensors, expected ", specs_.size()));
  }
  for (size_t i = 0; i < specs_.size(); ++i) {
    const at::Tensor& g = gradient[i];
    if (!g.defined() || g.sizes() != at::IntArrayRef(specs_[i].shape)) {
      return absl::InvalidArgumentError(
          absl::StrCat("task ", index, ": gradient of ", specs_[i].name, " has shape [",
                       g.defined() ? absl::StrJoin(g.sizes(), ", ") : "undefined", "], expected [",
                       absl::StrJoin(specs_[i].shape, ", "), "]"));
    }
    if (!at::isFloatingType(g.scalar_type())) {
      return absl::InvalidArgumentError(
          absl::StrCat("task ", index, ": gradient of ", specs_[i].name, " is not floating point"));
    }
    if (!AllFinite(g)) {
      return absl::InvalidArgumentError(
          absl::StrCat("task ", index, ": gradient of ", specs_[i].name, " has non-finite values"));
    }
  }
  gradients_[index] = std::move(gradient);
  ++received_;
  return absl::OkStatus();
}

bool TaskOrderAggregator::complete() const {
  return !gradients_.empty() && received_ == static_cast<int64_t>(gradients_.size());
}

absl::StatusOr<TensorList> TaskOrderAggregator::Mean() const {
  if (!complete()) {
    return absl::FailedPreconditionError(absl::StrCat("aggregation incomplete: ", received_, " of ",
                                                      gradients_.size(), " tasks received"));
  }
  const auto num_tasks = static_cast<double>(gradients_.size());
  TensorList mean;
  mean.reserve(specs_.size());
  for (size_t i = 0; i < specs_.size(); ++i) {
    // Fixed left-to-right order: ((g0 + g1) + g2) + ... so every path gets the same bits.
    at::Tensor sum = gradients_[0][i].clone(at::MemoryFormat::Contiguous);
    for (size_t t = 1; t < gradients_.size(); ++t) sum.add_(gradients_[t][i]);
    mean.push_back(sum.div_(num_tasks));
  }
  return mean;
}

std::vector<TensorList> SplitPerTask(const TensorList& per_task) {
  std::vector<TensorList> out;
  if (per_task.empty()) return out;
  const int64_t num_tasks = per_task[0].size(0);
  out.resize(num_tasks);
  for (int64_t t = 0; t < num_tasks; ++t) {
    out[t].reserve(per_task.size());
    for (const auto& p : per_task) out[t].push_back(p.select(0, t));
  }
  return out;
}

}  // namespace metatrain::meta
