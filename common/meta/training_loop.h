#ifndef METATRAIN_COMMON_META_TRAINING_LOOP_H_
#define METATRAIN_COMMON_META_TRAINING_LOOP_H_

// NOTE [The one training loop]. Every rule of a job's life is here, once, for the single
// process (metatrain-train, meta::Train) and the cluster (coordinator::JobRunner) alike:
//
//   per step s (0-based):  lr <- LinearScheduleLr(s)            (schedule "linear")
//                          source.ComputeTraining(s, params)    tasks TrainingKeys(spec, s)
//                          ApplyMetaUpdate: task-order mean -> clip -> optimizer step
//                          train loss / accuracy: mean over tasks in the job's dtype
//   every validation_interval steps: source.Evaluate(validation, round s+1), plateau
//                          schedule, early stopping and best by select_best_by
//                          observer.OnStep, then OnNewBest, then OnResumePoint every
//                          checkpoint_interval steps or checkpoint_interval_seconds
//   stopped (ABORTED) between steps: OnResumePoint of the last finished step
//   at the end:            best := params if never validated; OnTrainingEnd; OnResumePoint;
//                          meta-test of the best parameters (test split, round 0)
//
// Where the per-task results come from is the GradientSource's business
// (gradient_source.h); what becomes of progress and checkpoints is the observer's. Since
// tasks derive from (seed, key) and aggregation is in task order, the bits depend on
// neither: a job run in one process and the same job run over any number of workers
// produce the same meta-parameters by construction.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/meta/gradient_source.h"
#include "common/meta/trainer.h"
#include "common/time/clock.h"

namespace metatrain::meta {

// Everything needed to continue a run bit-identically after `step` steps.
struct LoopState {
  int64_t step = 0;  // steps completed
  TensorList params;
  std::map<std::string, at::Tensor> optimizer_state;
  // Every meta-validation so far, in order: the plateau schedule and early stopping are
  // replayed from them. Accuracies may be empty unless select_best_by is "accuracy".
  std::vector<double> validation_losses;
  std::vector<double> validation_accuracies;
  TensorList best_params;  // empty before the first validation
  int64_t best_step = 0;
};

// What the loop tells its caller. Every method runs on the loop's thread; a non-OK status
// ends the run with that status (CANCELLED from OnStep cancels it).
class TrainingObserver {
 public:
  virtual ~TrainingObserver() = default;
  // After every step, its validation included.
  virtual absl::Status OnStep(const StepReport& /*report*/) { return absl::OkStatus(); }
  // The parameters of step `step` are the new best (after that step's OnStep).
  virtual absl::Status OnNewBest(const TensorList& /*best_params*/, int64_t /*step*/) {
    return absl::OkStatus();
  }
  // A point the run can resume from exactly: the start of a fresh run, every
  // checkpoint_interval steps or checkpoint_interval_seconds, the end of training, and a
  // stop (ABORTED from the source) at a step boundary.
  virtual absl::Status OnResumePoint(const LoopState& /*state*/) { return absl::OkStatus(); }
  // Training is over, before the meta-test: the final and the best parameters.
  virtual absl::Status OnTrainingEnd(const TensorList& /*final_params*/, int64_t /*steps_run*/,
                                     const TensorList& /*best_params*/, int64_t /*best_step*/) {
    return absl::OkStatus();
  }
};

struct LoopOptions {
  // Continue from this state instead of the job's initial parameters.
  std::optional<LoopState> resume;
  // The initial meta-parameters of a fresh run; InitialMetaParams(job) when empty.
  TensorList initial_params;
  TrainingObserver* observer = nullptr;  // optional
  Clock* clock = nullptr;                // Clock::Real() when null
};

// Runs `job` to its end: training, then the meta-test of the best parameters.
absl::StatusOr<TrainingResult> RunTrainingLoop(const JobContext& job, GradientSource& source,
                                               LoopOptions options);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_TRAINING_LOOP_H_
