#ifndef METATRAIN_COMMON_META_LOCAL_GRADIENT_SOURCE_H_
#define METATRAIN_COMMON_META_LOCAL_GRADIENT_SOURCE_H_

// Computes every round with the job's own learner, in this process: the meta-batch as one
// batch, evaluations spec.meta_batch_size() tasks at a time.

#include "common/meta/gradient_source.h"
#include "common/meta/trainer.h"

namespace metatrain::meta {

class LocalGradientSource final : public GradientSource {
 public:
  // `job` must outlive the source.
  explicit LocalGradientSource(const JobContext& job) : job_(job) {}

  absl::StatusOr<TrainingRound> ComputeTraining(int64_t step, const TensorList& params) override;
  absl::StatusOr<EvaluationSummary> Evaluate(const EvaluationRequest& request,
                                             const TensorList& params) override;

 private:
  const JobContext& job_;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_LOCAL_GRADIENT_SOURCE_H_
