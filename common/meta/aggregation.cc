#include "common/meta/aggregation.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace metatrain::meta {

TaskOrderAggregator::TaskOrderAggregator(std::vector<ParamSpec> specs, int64_t num_groups,
                                         int64_t num_tasks)
    : specs_(std::move(specs)),
      gradients_(num_groups > 0 ? num_groups : 0),
      num_tasks_(num_tasks > 0 ? num_tasks : static_cast<int64_t>(gradients_.size())) {}

absl::Status TaskOrderAggregator::Add(int64_t index, TensorList gradient) {
  const auto num_tasks = static_cast<int64_t>(gradients_.size());
  if (index < 0 || index >= num_tasks) {
    return absl::InvalidArgumentError(
        absl::StrCat("gradient index ", index, " out of range [0, ", num_tasks, ")"));
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
                                                      gradients_.size(), " gradients received"));
  }
  TensorList mean = SumInOrder(gradients_, 0, gradients_.size());
  for (size_t i = 0; i < mean.size(); ++i) {
    mean[i].div_(static_cast<double>(num_tasks_));
    // A NaN or infinity in any addend leaves the sum NaN or infinite, so one pass over the
    // mean finds what a pass over every gradient would (and an overflowing sum too), at a
    // fraction of the coordinator's cost per gradient.
    if (!AllFinite(mean[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "meta-gradient of ", specs_[i].name,
          " has non-finite values (a task's gradient was NaN or infinite, or the sum overflowed)"));
    }
  }
  return mean;
}

namespace {

// sum = gradients[begin][i] + gradients[begin + 1][i] + ..., element by element, left to
// right: the bits of a clone and one add_ per addend (ATen's add with alpha 1 rounds
// once per addition, like this loop, which the compiler may vectorise over elements but
// not reassociate), without an operator call per addend. Blocks of elements keep the
// running sum in cache while the addends stream past.
template <typename Scalar>
void AddInOrder(const std::vector<const Scalar*>& addends, Scalar* sum, int64_t n) {
  constexpr int64_t kBlock = 2048;
  for (int64_t start = 0; start < n; start += kBlock) {
    const int64_t stop = std::min(n, start + kBlock);
    const Scalar* first = addends[0];
    for (int64_t e = start; e < stop; ++e) sum[e] = first[e];
    for (size_t t = 1; t < addends.size(); ++t) {
      const Scalar* g = addends[t];
      for (int64_t e = start; e < stop; ++e) sum[e] = sum[e] + g[e];
    }
  }
}

template <typename Scalar>
bool TrySumRaw(const std::vector<TensorList>& gradients, size_t begin, size_t end, size_t param,
               at::Tensor& sum) {
  const at::Tensor& head = gradients[begin][param];
  std::vector<const Scalar*> addends;
  addends.reserve(end - begin);
  for (size_t t = begin; t < end; ++t) {
    const at::Tensor& g = gradients[t][param];
    if (g.scalar_type() != head.scalar_type() || !g.is_contiguous() || !g.device().is_cpu() ||
        g.sizes() != head.sizes()) {
      return false;
    }
    addends.push_back(g.data_ptr<Scalar>());
  }
  sum = at::empty(head.sizes(), head.options().memory_format(at::MemoryFormat::Contiguous));
  AddInOrder<Scalar>(addends, sum.data_ptr<Scalar>(), head.numel());
  return true;
}

}  // namespace

TensorList SumInOrder(const std::vector<TensorList>& gradients, size_t begin, size_t end) {
  TensorList sum;
  if (begin >= end) return sum;
  sum.reserve(gradients[begin].size());
  for (size_t i = 0; i < gradients[begin].size(); ++i) {
    at::Tensor s;
    const at::ScalarType dtype = gradients[begin][i].scalar_type();
    const bool raw = (dtype == at::kFloat && TrySumRaw<float>(gradients, begin, end, i, s)) ||
                     (dtype == at::kDouble && TrySumRaw<double>(gradients, begin, end, i, s));
    if (!raw) {
      // Fixed left-to-right order: ((g0 + g1) + g2) + ... so every path gets the same bits.
      s = gradients[begin][i].clone(at::MemoryFormat::Contiguous);
      for (size_t t = begin + 1; t < end; ++t) s.add_(gradients[t][i]);
    }
    sum.push_back(std::move(s));
  }
  return sum;
}

std::vector<TensorList> SumGroups(std::vector<TensorList> per_task, int64_t group_size) {
  if (group_size <= 1) return per_task;
  const auto num_tasks = static_cast<int64_t>(per_task.size());
  std::vector<TensorList> groups;
  groups.reserve(NumGroups(num_tasks, group_size));
  for (int64_t g = 0; g < NumGroups(num_tasks, group_size); ++g) {
    const int64_t begin = GroupBegin(g, group_size);
    groups.push_back(SumInOrder(per_task, begin, begin + GroupTasks(g, group_size, num_tasks)));
  }
  return groups;
}

namespace {

// Row t of p, as p.select(0, t) gives it, built without the dispatcher: a step splits every
// parameter's [T, ...] gradient into T rows, which on sinusoid (25 tasks x 6 parameters)
// made select and as_strided a fifth of a first-order meta-step's operator time. Only for
// tensors outside autograd (a view made here records no view relation, which autograd
// would need).
at::Tensor Row(const at::Tensor& p, int64_t t) {
  if (p.requires_grad() || !p.device().is_cpu() || p.is_conj() || p.is_neg()) {
    return p.select(0, t);
  }
  at::Tensor row = at::detail::make_tensor<c10::TensorImpl>(
      c10::TensorImpl::VIEW, c10::Storage(p.storage()), p.key_set(), p.dtype());
  row.unsafeGetTensorImpl()->set_sizes_and_strides(p.sizes().slice(1), p.strides().slice(1));
  row.unsafeGetTensorImpl()->set_storage_offset(p.storage_offset() + t * p.stride(0));
  return row;
}

}  // namespace

std::vector<TensorList> SplitPerTask(const TensorList& per_task) {
  std::vector<TensorList> out;
  if (per_task.empty()) return out;
  const int64_t num_tasks = per_task[0].size(0);
  out.resize(num_tasks);
  for (int64_t t = 0; t < num_tasks; ++t) {
    out[t].reserve(per_task.size());
    for (const auto& p : per_task) out[t].push_back(Row(p, t));
  }
  return out;
}

}  // namespace metatrain::meta
