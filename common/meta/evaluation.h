#ifndef METATRAIN_COMMON_META_EVALUATION_H_
#define METATRAIN_COMMON_META_EVALUATION_H_

// Meta-validation and meta-test: adapt to fresh tasks and report query metrics as
// mean ± 1.96·σ/√N over tasks, as the papers do.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/learner.h"
#include "common/meta/task_family.h"

namespace metatrain::meta {

struct MeanCi {
  double mean = 0;
  double ci95 = 0;  // 1.96 * sample std / sqrt(n)
  int64_t n = 0;
};
MeanCi Summarize(const std::vector<double>& values);

struct EvaluationSummary {
  MeanCi loss_before, loss_after;
  MeanCi accuracy_before, accuracy_after;  // n == 0 for regression
  std::string ToString() const;
};

// Accumulates per-task metrics (from any number of Adaptation results, in task order).
class EvaluationAccumulator {
 public:
  void Add(const Adaptation& adaptation);
  EvaluationSummary Summary() const;
  int64_t count() const { return static_cast<int64_t>(loss_before_.size()); }

 private:
  std::vector<double> loss_before_, loss_after_, accuracy_before_, accuracy_after_;
};

// Evaluates `num_tasks` tasks of `split` (round `round`), `batch` tasks at a time.
absl::StatusOr<EvaluationSummary> EvaluateTasks(const MetaLearner& learner,
                                                const TaskFamily& family,
                                                const TensorList& meta_params, uint64_t seed,
                                                Split split, int64_t round, int64_t num_tasks,
                                                int steps, int64_t batch, at::ScalarType dtype);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_EVALUATION_H_
