#include "coordinator/result_intake.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace metatrain::coordinator {
namespace {

Refusal Malformed(std::string message) { return Refusal{Refusal::kMalformed, std::move(message)}; }

}  // namespace

GradientIntake::GradientIntake(int64_t begin, int64_t end, std::vector<meta::ParamSpec> specs,
                               at::ScalarType dtype, bool classification)
    : begin_(begin),
      end_(end),
      classification_(classification),
      assembler_(std::move(specs), dtype),
      sent_(end > begin ? end - begin : 0, 0) {}

GradientIntake::Outcome GradientIntake::Add(const v1::TaskGradient& gradient,
                                            const std::vector<char>& completed) {
  Outcome out;
  const int64_t t = gradient.task_index();
  if (t < begin_ || t >= end_ || (sent_[t - begin_] && current_task_ != t)) {
    out.refusal =
        Malformed(absl::StrCat("gradient for task ", t, " outside the assignment's open tasks"));
    return out;
  }
  if (current_task_ == -1) {
    current_task_ = t;
    skipping_ = completed[t] != 0;
    assembler_.Reset();
  } else if (current_task_ != t) {
    out.refusal = Malformed(
        absl::StrCat("gradient chunks of task ", t, " interleaved with task ", current_task_));
    return out;
  }
  if (skipping_) {
    if (gradient.last()) {
      current_task_ = -1;
      sent_[t - begin_] = 1;
      out.redundant = true;
    }
    return out;
  }
  absl::Status status = assembler_.Add(gradient.chunk());
  if (!status.ok()) {
    out.refusal = Malformed(absl::StrCat("task ", t, ": ", status.message()));
    return out;
  }
  if (!gradient.last()) return out;
  auto tensors = assembler_.Finish();
  if (!tensors.ok()) {
    out.refusal = Malformed(absl::StrCat("task ", t, ": ", tensors.status().message()));
    return out;
  }
  if (!std::isfinite(gradient.query_loss()) ||
      (classification_ && !std::isfinite(gradient.query_accuracy()))) {
    out.refusal =
        Refusal{Refusal::kNonFinite, absl::StrCat("task ", t, ": non-finite query metrics")};
    return out;
  }
  current_task_ = -1;
  sent_[t - begin_] = 1;
  if (completed[t]) {
    out.redundant = true;  // the other copy finished it while these chunks arrived
    return out;
  }
  out.task = Task{t, std::move(tensors).value(), gradient.query_loss(), gradient.query_accuracy()};
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

}  // namespace metatrain::coordinator
