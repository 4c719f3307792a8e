#ifndef METATRAIN_COMMON_META_LOCAL_GRADIENT_SOURCE_H_
#define METATRAIN_COMMON_META_LOCAL_GRADIENT_SOURCE_H_

// Computes every round with the job's own learner, in this process: the meta-batch in groups
// of `task_group_size` tasks (0: the model's default), `threads` groups at once
// (common/meta/task_groups.h); evaluations spec.meta_batch_size() tasks at a time.

#include "common/meta/gradient_source.h"
#include "common/meta/trainer.h"

namespace metatrain::meta {

class LocalGradientSource final : public GradientSource {
 public:
  // `job` must outlive the source.
  explicit LocalGradientSource(const JobContext& job, int threads = 1, int64_t task_group_size = 0)
      : job_(job), threads_(threads), task_group_size_(task_group_size) {}

  absl::StatusOr<TrainingRound> ComputeTraining(int64_t step, const TensorList& params) override;
  absl::StatusOr<EvaluationSummary> Evaluate(const EvaluationRequest& request,
                                             const TensorList& params) override;

 private:
  const JobContext& job_;
  const int threads_;
  const int64_t task_group_size_;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_LOCAL_GRADIENT_SOURCE_H_
