#ifndef METATRAIN_TOOLS_METACTL_PROGRESS_H_
#define METATRAIN_TOOLS_METACTL_PROGRESS_H_

// What metactl prints about a job: the live progress line, evaluation results, status
// summaries and listings. Pure formatting: no I/O, no RPC.

#include <string>

#include "metatrain/v1/job_service.pb.h"

namespace metatrain::metactl {

// "RUNNING", "SUCCEEDED", ...
std::string StateName(v1::JobState state);
bool IsTerminal(v1::JobState state);

// Seconds as "45s", "3m05s", "1h02m".
std::string FormatDuration(double seconds);

// One progress line: "step 120/1000 [#####.....]  12% loss 0.5321 acc 45.2% 812 tasks/s
// ETA 1m05s". With `bar_width` 0 there is no bar (plain, non-TTY output).
std::string FormatProgress(const v1::JobStatus& status, int bar_width);

// "2.981 ± 0.213" (loss) or "48.1% ± 1.2%" (accuracy).
std::string FormatMetric(const v1::MetricSummary& metric, bool percent);

// Evaluation result on one or two lines: loss before -> after, accuracy before -> after
// (classification only).
std::string FormatEvaluation(const v1::EvaluationResult& result, const std::string& indent);

// The task setting a result belongs to, on one line: "omniglot, split maml, 5-way 1-shot,
// 15 query per class" or "sinusoid, K = 10, 10 query points".
std::string FormatTaskSetting(const v1::JobSpec& spec);

// "best validation (step N, by loss|accuracy):" and its metrics, one line each, ending in a
// newline; empty before the first validation.
std::string FormatBestValidation(const v1::JobStatus& status);

// Multi-line description for `metactl status`.
std::string FormatStatus(const v1::JobStatus& status);

// Table for `metactl list`, with a header line.
std::string FormatJobTable(const v1::ListJobsResponse& jobs);

// The validation curve for `metactl history` as CSV with a header line:
// step,loss_before,loss_after,loss_after_ci95,accuracy_before,accuracy_after,
// accuracy_after_ci95 (accuracies as fractions; empty for regression).
std::string FormatHistoryCsv(const v1::JobStatus& status);

}  // namespace metatrain::metactl

#endif  // METATRAIN_TOOLS_METACTL_PROGRESS_H_
