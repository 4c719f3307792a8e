#ifndef METATRAIN_COMMON_META_TRAINER_H_
#define METATRAIN_COMMON_META_TRAINER_H_

// A job in this process (Train), and the building blocks of the one training loop
// (training_loop.h, NOTE [The one training loop]) that the single process and the
// coordinator share: the job's context, its task keys, initial parameters, schedules,
// the outer update, and the evaluation rounds.

#include <functional>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/meta/evaluation.h"
#include "common/meta/learner.h"
#include "common/meta/optimizer.h"
#include "metatrain/v1/job.pb.h"

namespace metatrain::meta {

struct StepReport {
  int64_t step = 0;            // 1-based, after the update
  double train_loss = 0;       // mean query loss after adaptation over the meta-batch
  double train_accuracy = -1;  // classification only
  double lr = 0;
  double tasks_per_second = 0;
  std::optional<EvaluationSummary> validation;  // set on validation steps
  bool new_best = false;       // this step's validation is the best so far (select_best_by)
  bool stopped_early = false;  // early stopping ends the run after this step
  // Where the step's time went, by the loop's clock. How the source spent the training
  // round (dispatch, waiting, decoding) is the source's to tell.
  struct Timings {
    absl::Duration training_round;  // GradientSource::ComputeTraining
    absl::Duration aggregate;       // task-order mean and clipping
    absl::Duration optimizer;       // the outer update
    absl::Duration validation;      // GradientSource::Evaluate, on validation steps
  } timings;
  int64_t tasks = 0;  // training tasks of the step
};

struct TrainingResult {
  TensorList final_params;  // after the last step
  TensorList best_params;   // best by select_best_by (final_params if no validation)
  int64_t best_step = 0;    // the step best_params come from
  int64_t steps_run = 0;
  bool stopped_early = false;
  EvaluationSummary test;  // meta-test of best_params
};

// Everything a job needs, built once from a normalised spec.
struct JobContext {
  v1::JobSpec spec;
  at::ScalarType dtype;
  std::shared_ptr<const Model> model;
  std::unique_ptr<TaskFamily> family;
  std::unique_ptr<MetaLearner> learner;
  // What the job's files may hold (InitialMetaParams reads initial_weights within them).
  JobFileLimits file_limits;
};
absl::StatusOr<JobContext> MakeJobContext(const v1::JobSpec& normalized_spec,
                                          const JobFileLimits& file_limits = {});

// The keys of the meta-batch of training step `step` (0-based).
std::vector<TaskKey> TrainingKeys(const v1::JobSpec& spec, int64_t step);

// Initial meta-parameters: from spec.initial_weights if set, else the learner's init
// drawn from the job seed.
absl::StatusOr<TensorList> InitialMetaParams(const JobContext& job);

// The outer learning rate of 0-based step `step` under the "linear" schedule: anneals from
// outer.lr towards 0 over spec.steps() (Reptile).
double LinearScheduleLr(const v1::JobSpec& spec, int64_t step);

// The meta-validation score that spec.select_best_by ranks by, lower is better: the loss
// after adaptation, or minus the accuracy after adaptation.
double SelectionScore(const v1::JobSpec& spec, const EvaluationSummary& validation);

// One outer update from a meta-batch's per-task gradients (MetaGradients::per_task layout
// split with SplitPerTask): sums them in spec.gradient_group_size() groups and aggregates
// (aggregation.h), clips to outer.clip_grad_norm, steps the optimizer. Returns the
// pre-clipping gradient norm.
absl::StatusOr<double> ApplyMetaUpdate(const v1::JobSpec& spec, const std::vector<ParamSpec>& specs,
                                       std::vector<TensorList> task_gradients,
                                       OuterOptimizer& optimizer, TensorList& meta_params);
// ApplyMetaUpdate's two halves, for a caller that times them: the mean of `num_tasks` tasks
// from their gradient groups' sums (group order), then clipping and the optimizer step
// (returns the pre-clipping norm).
absl::StatusOr<TensorList> AggregateGroupGradients(const std::vector<ParamSpec>& specs,
                                                   std::vector<TensorList> group_gradients,
                                                   int64_t num_tasks);
absl::StatusOr<double> ClipAndStep(const v1::JobSpec& spec, TensorList mean,
                                   OuterOptimizer& optimizer, TensorList& meta_params);

// Meta-validation after 1-based step `step`: spec.validation_tasks() tasks of the
// validation split, round `step`, adapted with inner.test_steps.
absl::StatusOr<EvaluationSummary> MetaValidate(const JobContext& job, const TensorList& meta_params,
                                               int64_t step);

// Final meta-test: spec.test_tasks() tasks of the test split, adapted with inner.test_steps.
absl::StatusOr<EvaluationSummary> MetaTest(const JobContext& job, const TensorList& meta_params);

// Runs the whole job in this process: the one training loop over a LocalGradientSource.
// `on_step` (optional) sees every step's report and may return false to cancel (CANCELLED).
// Meta-gradients are computed `task_group_size` tasks at a time (0: the model's default),
// `threads` groups at once (common/meta/task_groups.h); the bits depend on neither.
absl::StatusOr<TrainingResult> Train(const JobContext& job,
                                     const std::function<bool(const StepReport&)>& on_step = {},
                                     int threads = 1, int64_t task_group_size = 0);

}  // namespace metatrain::meta

#endif  // METATRAIN_COMMON_META_TRAINER_H_
