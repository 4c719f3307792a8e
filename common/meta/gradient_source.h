#ifndef METATRAIN_COMMON_META_GRADIENT_SOURCE_H_
#define METATRAIN_COMMON_META_GRADIENT_SOURCE_H_

// Where the training loop (training_loop.h) gets per-task results from. The loop owns every
// rule of a job's life; a GradientSource only computes the tasks of one round, identified
// by keys that derive from the job seed, so any two sources return the same bits for the
// same round. Two implementations:
//   LocalGradientSource (local_gradient_source.h): the learner in this process
//     (metatrain-train, the core tests);
//   coordinator::WorkerPoolSource (coordinator/worker_pool_source.h): shards each round
//     over the worker pool, reassigns lost tasks and validates every result.
//
// A source is driven by one thread, the loop's.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/evaluation.h"
#include "common/meta/params.h"
#include "common/meta/task_family.h"

namespace metatrain::meta {

// The results of one training step's meta-batch, in task order.
struct TrainingRound {
  // Gradient group g's sum of its tasks' meta-gradients (aggregation.h; JobSpec.
  // gradient_group_size; with groups of one, task g's meta-gradient), one tensor per
  // parameter.
  std::vector<TensorList> group_gradients;
  std::vector<double> query_loss;      // per task, on the query set after adaptation
  std::vector<double> query_accuracy;  // per task; empty for regression families
};

struct EvaluationRequest {
  Split split = Split::kValidation;
  int64_t round = 0;      // TaskKey::step of the evaluated tasks
  int64_t num_tasks = 0;  // keys {split, round, 0 .. num_tasks-1}
  int steps = 0;          // inner steps of adaptation
  // Names the parameters: equal versions are equal parameters, so a source may reuse what
  // it already sent for this version. Training step s runs at version s.
  int64_t version = 0;
};

class GradientSource {
 public:
  virtual ~GradientSource() = default;

  // The meta-gradients of 0-based training step `step` (tasks TrainingKeys(spec, step)) at
  // `params`, the meta-parameters after `step` updates. CANCELLED / ABORTED when the job was
  // cancelled or stopped while waiting; any other error fails the job.
  virtual absl::StatusOr<TrainingRound> ComputeTraining(int64_t step, const TensorList& params) = 0;

  // Adapts the requested tasks from `params` and summarises their query metrics (task
  // order, mean ± 95% CI). Errors as for ComputeTraining.
  virtual absl::StatusOr<EvaluationSummary> Evaluate(const EvaluationRequest& request,
                                                     const TensorList& params) = 0;
};

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_GRADIENT_SOURCE_H_
