#include "tools/metactl/progress.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace metatrain::metactl {

std::string StateName(v1::JobState state) {
  switch (state) {
    case v1::QUEUED:
      return "QUEUED";
    case v1::RUNNING:
      return "RUNNING";
    case v1::SUCCEEDED:
      return "SUCCEEDED";
    case v1::FAILED:
      return "FAILED";
    case v1::CANCELLED:
      return "CANCELLED";
    default:
      return "UNKNOWN";
  }
}

bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string FormatProgress(const v1::JobStatus& status, int bar_width) {
  const int64_t total = std::max<int64_t>(status.total_steps(), 1);
  const int64_t step = std::clamp<int64_t>(status.step(), 0, total);
  const double fraction = static_cast<double>(step) / static_cast<double>(total);
  std::string line = absl::StrFormat("step %d/%d", step, status.total_steps());
  if (bar_width > 0) {
    const int filled = static_cast<int>(fraction * bar_width);
    absl::StrAppend(&line, " [", std::string(filled, '#'), std::string(bar_width - filled, '.'),
                    "]");
  }
  absl::StrAppend(&line, absl::StrFormat(" %3d%%", static_cast<int>(fraction * 100)));
  if (step > 0) {
    absl::StrAppend(&line, absl::StrFormat(" loss %.4f", status.train_loss()));
    if (status.train_accuracy() >= 0) {
      absl::StrAppend(&line, absl::StrFormat(" acc %.1f%%", 100 * status.train_accuracy()));
    }
  }
  if (status.tasks_per_second() > 0) {
    absl::StrAppend(&line, absl::StrFormat(" %.0f tasks/s", status.tasks_per_second()));
    const int64_t batch = std::max(1, status.spec().meta_batch_size());
    const double eta = static_cast<double>(total - step) * batch / status.tasks_per_second();
    if (step < total) absl::StrAppend(&line, " ETA ", FormatDuration(eta));
  }
  if (status.workers() > 0) absl::StrAppend(&line, " ", status.workers(), "w");
  return line;
}

std::string FormatMetric(const v1::MetricSummary& metric, bool percent) {
  if (percent) return absl::StrFormat("%.2f%% ± %.2f%%", 100 * metric.mean(), 100 * metric.ci95());
  return absl::StrFormat("%.4f ± %.4f", metric.mean(), metric.ci95());
}

std::string FormatEvaluation(const v1::EvaluationResult& result, const std::string& indent) {
  std::string out =
      absl::StrCat(indent, "loss      before ", FormatMetric(result.loss_before(), false),
                   "  ->  after ", FormatMetric(result.loss_after(), false));
  if (result.accuracy_after().n() > 0) {
    absl::StrAppend(&out, "\n", indent, "accuracy  before ",
                    FormatMetric(result.accuracy_before(), true), "  ->  after ",
                    FormatMetric(result.accuracy_after(), true));
  }
  return out;
}

std::string FormatTaskSetting(const v1::JobSpec& spec) {
  const v1::TaskSpec& tasks = spec.tasks();
  std::string out = tasks.family();
  if (tasks.family() == "tensor_file") return absl::StrCat(out, " ", tasks.tensor_file());
  if (!tasks.split().empty()) absl::StrAppend(&out, ", split ", tasks.split());
  if (tasks.family() == "sinusoid" || tasks.family() == "linear") {
    return absl::StrCat(out, ", K = ", tasks.shots(), ", ", tasks.query_size(), " query points");
  }
  return absl::StrCat(out, ", ", tasks.ways(), "-way ", tasks.shots(), "-shot, ",
                      tasks.query_size(), " query per class");
}

std::string FormatStatus(const v1::JobStatus& status) {
  const auto& spec = status.spec();
  std::string out = absl::StrCat("job        ", status.job_id(), "\n");
  if (!spec.name().empty()) absl::StrAppend(&out, "name       ", spec.name(), "\n");
  absl::StrAppend(&out, "algorithm  ", spec.algorithm(), "\n");
  absl::StrAppend(&out, "tasks      ", FormatTaskSetting(spec), "\n");
  absl::StrAppend(&out, "state      ", StateName(status.state()),
                  status.stopped_early() ? " (stopped early)" : "", "\n");
  absl::StrAppend(&out, "progress   ", FormatProgress(status, 0), "\n");
  absl::StrAppend(&out, absl::StrFormat("outer lr   %g\n", status.learning_rate()));
  absl::StrAppend(&out, "workers    ", status.workers(), "\n");
  absl::StrAppend(&out, FormatBestValidation(status));
  if (status.test().loss_after().n() > 0) {
    absl::StrAppend(&out, "meta-test (", status.test().loss_after().n(), " tasks, ",
                    status.test().inner_steps(), " inner steps):\n",
                    FormatEvaluation(status.test(), "  "), "\n");
  }
  if (!status.error().empty()) absl::StrAppend(&out, "error      ", status.error(), "\n");
  return out;
}

std::string FormatJobTable(const v1::ListJobsResponse& jobs) {
  std::string out = absl::StrFormat("%-12s %-24s %-10s %-9s %-14s %s\n", "JOB", "NAME", "ALGORITHM",
                                    "STATE", "STEP", "LOSS");
  for (const auto& job : jobs.jobs()) {
    std::string name = job.spec().name();
    if (name.size() > 24) name = name.substr(0, 21) + "...";
    absl::StrAppend(
        &out, absl::StrFormat("%-12s %-24s %-10s %-9s %-14s %s\n", job.job_id(), name,
                              job.spec().algorithm(), StateName(job.state()),
                              absl::StrCat(job.step(), "/", job.total_steps()),
                              job.step() > 0 ? absl::StrFormat("%.4f", job.train_loss()) : "-"));
  }
  return out;
}

std::string FormatHistoryCsv(const v1::JobStatus& status) {
  std::string out =
      "step,loss_before,loss_after,loss_after_ci95,accuracy_before,accuracy_after,"
      "accuracy_after_ci95\n";
  for (const v1::ValidationPoint& point : status.validation_history()) {
    const v1::EvaluationResult& r = point.result();
    absl::StrAppend(&out, absl::StrFormat("%d,%.6g,%.6g,%.6g", point.step(), r.loss_before().mean(),
                                          r.loss_after().mean(), r.loss_after().ci95()));
    if (r.accuracy_after().n() > 0) {
      absl::StrAppend(&out, absl::StrFormat(",%.6g,%.6g,%.6g\n", r.accuracy_before().mean(),
                                            r.accuracy_after().mean(), r.accuracy_after().ci95()));
    } else {
      absl::StrAppend(&out, ",,,\n");
    }
  }
  return out;
}

std::string FormatBestValidation(const v1::JobStatus& status) {
  if (status.best_step() == 0 || status.best_validation().loss_after().n() == 0) return "";
  const std::string& metric = status.spec().select_best_by();
  return absl::StrCat("best validation (step ", status.best_step(), ", by ",
                      metric.empty() ? "loss" : metric, "):\n",
                      FormatEvaluation(status.best_validation(), "  "), "\n");
}

}  // namespace metatrain::metactl
