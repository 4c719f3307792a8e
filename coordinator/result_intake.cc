#include "coordinator/result_intake.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/gradient_groups.h"

namespace metatrain::coordinator {
namespace {

Refusal Malformed(std::string message) { return Refusal{Refusal::kMalformed, std::move(message)}; }

}  // namespace

GradientIntake::GradientIntake(int64_t begin, int64_t end, int64_t group_size, int64_t num_tasks,
                               std::vector<meta::ParamSpec> specs, at::ScalarType dtype,
                               bool classification)
    : begin_(begin),
      end_(end),
      group_size_(std::max<int64_t>(1, group_size)),
      num_tasks_(num_tasks),
      classification_(classification),
      assembler_(std::move(specs), dtype),
      sent_(end > begin ? end - begin : 0, 0) {}

GradientIntake::Outcome GradientIntake::Add(const v1::TaskGradient& gradient,
                                            const std::vector<char>& completed) {
  Outcome out;
  const int64_t first = gradient.task_index();
  // Workers of this version always set task_count; the group must be one of the round's.
  const int64_t g = first >= 0 && first % group_size_ == 0 ? first / group_size_ : -1;
  const int64_t tasks = meta::GroupTasks(g, group_size_, num_tasks_);
  if (g < begin_ || g >= end_ || (sent_[g - begin_] && current_group_ != g)) {
    out.refusal =
        Malformed(absl::StrCat("gradient for task ", first, " outside the assignment's open ",
                               group_size_ == 1 ? "tasks" : "gradient groups"));
    return out;
  }
  if (gradient.task_count() != tasks) {
    out.refusal =
        Malformed(absl::StrCat("gradient of tasks [", first, ", ", first + gradient.task_count(),
                               "): the gradient group is [", first, ", ", first + tasks, ")"));
    return out;
  }
  if (current_group_ == -1) {
    current_group_ = g;
    skipping_ = completed[g] != 0;
    assembler_.Reset();
  } else if (current_group_ != g) {
    out.refusal =
        Malformed(absl::StrCat("gradient chunks of task ", first, " interleaved with task ",
                               meta::GroupBegin(current_group_, group_size_)));
    return out;
  }
  if (skipping_) {
    if (gradient.last()) {
      current_group_ = -1;
      sent_[g - begin_] = 1;
      out.redundant = true;
    }
    return out;
  }
  absl::Status status = assembler_.Add(gradient.chunk());
  if (!status.ok()) {
    out.refusal = Malformed(absl::StrCat("task ", first, ": ", status.message()));
    return out;
  }
  if (!gradient.last()) return out;
  auto tensors = assembler_.Finish();
  if (!tensors.ok()) {
    out.refusal = Malformed(absl::StrCat("task ", first, ": ", tensors.status().message()));
    return out;
  }
  if (gradient.query_loss_size() != tasks || gradient.query_accuracy_size() != tasks) {
    out.refusal = Malformed(absl::StrCat("task ", first, ": ", gradient.query_loss_size(),
                                         " query losses and ", gradient.query_accuracy_size(),
                                         " accuracies for ", tasks, " task(s)"));
    return out;
  }
  for (int64_t i = 0; i < tasks; ++i) {
    if (!std::isfinite(gradient.query_loss(i)) ||
        (classification_ && !std::isfinite(gradient.query_accuracy(i)))) {
      out.refusal = Refusal{Refusal::kNonFinite,
                            absl::StrCat("task ", first + i, ": non-finite query metrics")};
      return out;
    }
  }
  current_group_ = -1;
  sent_[g - begin_] = 1;
  if (completed[g]) {
    out.redundant = true;  // the other copy finished it while these chunks arrived
    return out;
  }
  out.group = Group{
      g, std::move(tensors).value(),
      std::vector<double>(gradient.query_loss().begin(), gradient.query_loss().end()),
      std::vector<double>(gradient.query_accuracy().begin(), gradient.query_accuracy().end())};
  return out;
}

MetricsOutcome CheckEvaluationMetrics(const v1::AssignmentDone& done, int64_t begin, int64_t end,
                                      bool classification) {
  MetricsOutcome out;
  std::vector<const v1::TaskMetrics*> by_task(end - begin, nullptr);
  for (const auto& m : done.metrics()) {
    const int64_t t = m.task_index();
    if (t < begin || t >= end || by_task[t - begin] != nullptr) {
      out.refusal = Malformed(absl::StrCat("metrics for unexpected task ", t));
      return out;
    }
    bool finite = std::isfinite(m.loss_before()) && std::isfinite(m.loss_after());
    if (classification) {
      finite = finite && std::isfinite(m.accuracy_before()) && std::isfinite(m.accuracy_after());
    }
    if (!finite) {
      out.refusal = Refusal{Refusal::kNonFinite, absl::StrCat("task ", t, ": non-finite metrics")};
      return out;
    }
    by_task[t - begin] = &m;
  }
  for (int64_t t = begin; t < end; ++t) {
    if (by_task[t - begin] == nullptr) {
      out.refusal = Malformed(absl::StrCat("no metrics for task ", t));
      return out;
    }
  }
  out.metrics.reserve(by_task.size());
  for (const v1::TaskMetrics* m : by_task) out.metrics.push_back(*m);
  return out;
}

std::optional<int64_t> RoutingAssignmentId(const v1::WorkerMessage& message) {
  if (message.has_gradient()) return message.gradient().assignment_id();
  if (message.has_done()) return message.done().assignment_id();
  if (!message.has_gradients()) return std::nullopt;
  const auto& batch = message.gradients().gradients();
  if (batch.empty()) return std::nullopt;
  const int64_t id = batch[0].assignment_id();
  for (const v1::TaskGradient& gradient : batch) {
    if (gradient.assignment_id() != id) return std::nullopt;
  }
  return id;
}

}  // namespace metatrain::coordinator
