#include "common/meta/evaluation_proto.h"

namespace metatrain::meta {
namespace {

v1::MetricSummary ToMetricSummary(const MeanCi& m) {
  v1::MetricSummary out;
  out.set_mean(m.mean);
  out.set_ci95(m.ci95);
  out.set_n(m.n);
  return out;
}

}  // namespace

v1::EvaluationResult ToEvaluationResult(const EvaluationSummary& summary, int inner_steps) {
  v1::EvaluationResult out;
  *out.mutable_loss_before() = ToMetricSummary(summary.loss_before);
  *out.mutable_loss_after() = ToMetricSummary(summary.loss_after);
  *out.mutable_accuracy_before() = ToMetricSummary(summary.accuracy_before);
  *out.mutable_accuracy_after() = ToMetricSummary(summary.accuracy_after);
  out.set_inner_steps(inner_steps);
  return out;
}

}  // namespace metatrain::meta
