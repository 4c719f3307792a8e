#include "common/meta/evaluation.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status/status_macros.h"

namespace metatrain::meta {
namespace {

void Append(const at::Tensor& values, std::vector<double>& out) {
  if (!values.defined()) return;
  at::Tensor v = values.detach().to(at::kDouble).contiguous().reshape({-1});
  const double* data = v.data_ptr<double>();
  out.insert(out.end(), data, data + v.numel());
}

std::string FormatLoss(const MeanCi& m) { return absl::StrFormat("%.3g ± %.2g", m.mean, m.ci95); }

std::string FormatAccuracy(const MeanCi& m) {
  return absl::StrFormat("%.1f%% ± %.1f", 100 * m.mean, 100 * m.ci95);
}

}  // namespace

MeanCi Summarize(const std::vector<double>& values) {
  MeanCi out;
  out.n = static_cast<int64_t>(values.size());
  if (values.empty()) return out;
  double sum = 0;
  for (double v : values) sum += v;
  out.mean = sum / out.n;
  if (out.n > 1) {
    double ss = 0;
    for (double v : values) ss += (v - out.mean) * (v - out.mean);
    out.ci95 = 1.96 * std::sqrt(ss / (out.n - 1)) / std::sqrt(static_cast<double>(out.n));
  }
  return out;
}

std::string EvaluationSummary::ToString() const {
  std::string out = absl::StrCat("loss ", FormatLoss(loss_before), " -> ", FormatLoss(loss_after));
  if (accuracy_after.n > 0) {
    absl::StrAppend(&out, ", accuracy ", FormatAccuracy(accuracy_before), " -> ",
                    FormatAccuracy(accuracy_after));
  }
  absl::StrAppend(&out, " (", loss_after.n, " tasks)");
  return out;
}

void EvaluationAccumulator::Add(const Adaptation& adaptation) {
  Append(adaptation.loss_before, loss_before_);
  Append(adaptation.loss_after, loss_after_);
  Append(adaptation.accuracy_before, accuracy_before_);
  Append(adaptation.accuracy_after, accuracy_after_);
}

EvaluationSummary EvaluationAccumulator::Summary() const {
  EvaluationSummary s;
  s.loss_before = Summarize(loss_before_);
  s.loss_after = Summarize(loss_after_);
  s.accuracy_before = Summarize(accuracy_before_);
  s.accuracy_after = Summarize(accuracy_after_);
  return s;
}

absl::StatusOr<EvaluationSummary> EvaluateTasks(const MetaLearner& learner,
                                                const TaskFamily& family,
                                                const TensorList& meta_params, uint64_t seed,
                                                Split split, int64_t round, int64_t num_tasks,
                                                int steps, int64_t batch, at::ScalarType dtype) {
  if (num_tasks <= 0) return absl::InvalidArgumentError("evaluation needs at least one task");
  if (batch <= 0) batch = num_tasks;
  (void)seed;  // The family was built with the job seed; tasks depend on (seed, key) only.
  EvaluationAccumulator acc;
  for (int64_t first = 0; first < num_tasks; first += batch) {
    const int64_t n = std::min(batch, num_tasks - first);
    std::vector<TaskKey> keys;
    keys.reserve(n);
    for (int64_t i = 0; i < n; ++i) keys.push_back(TaskKey{split, round, first + i});
    ASSIGN_OR_RETURN(TaskBatch tasks, family.Sample(keys, dtype));
    ASSIGN_OR_RETURN(Adaptation adaptation, learner.Evaluate(meta_params, tasks, steps));
    acc.Add(adaptation);
  }
  return acc.Summary();
}

}  // namespace metatrain::meta
