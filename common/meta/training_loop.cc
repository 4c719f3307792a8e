#include "common/meta/training_loop.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::meta {
namespace {

TensorList CloneParams(const TensorList& params) {
  TensorList out;
  out.reserve(params.size());
  for (const auto& p : params) out.push_back(p.detach().clone());
  return out;
}

// The mean of per-task values as the learner would take it over its [T] tensor: in the
// job's dtype. The values are exact in that dtype, so the result does not depend on which
// source produced them.
double MeanInDtype(const std::vector<double>& values, at::ScalarType dtype) {
  at::Tensor t = at::tensor(at::ArrayRef<double>(values), at::kDouble).to(dtype);
  return t.mean().item<double>();
}

// State of the rules that look at validations: replayed from the saved values on resume.
struct Schedules {
  PlateauSchedule plateau;
  EarlyStopping early;
  explicit Schedules(const v1::JobSpec& spec)
      : plateau(spec.outer().plateau_factor(), spec.outer().plateau_patience(),
                spec.outer().min_lr()),
        early(spec.early_stopping_patience()) {}
};

class Loop {
 public:
  Loop(const JobContext& job, GradientSource& source, LoopOptions options)
      : job_(job),
        spec_(job.spec),
        specs_(job.learner->meta_param_specs()),
        source_(source),
        observer_(options.observer != nullptr ? *options.observer : no_observer_),
        clock_(options.clock != nullptr ? *options.clock : *Clock::Real()),
        options_(std::move(options)),
        schedules_(job.spec) {}

  absl::StatusOr<TrainingResult> Run();

 private:
  absl::Status Start();
  absl::Status Step(int64_t step);
  absl::Status Finish();
  LoopState Snapshot() const;
  // Tells the observer the current state is a resume point and notes when.
  absl::Status ResumePoint();
  // After a step: a resume point if checkpoint_interval steps or checkpoint_interval_seconds
  // have passed since the last.
  absl::Status MaybeResumePoint();

  const JobContext& job_;
  const v1::JobSpec& spec_;
  const std::vector<ParamSpec>& specs_;
  GradientSource& source_;
  TrainingObserver no_observer_;
  TrainingObserver& observer_;
  Clock& clock_;
  LoopOptions options_;

  std::unique_ptr<OuterOptimizer> optimizer_;
  Schedules schedules_;
  LoopState state_;
  bool stopped_early_ = false;
  // state_ is exactly the state after state_.step steps: false from the moment a step
  // starts changing it until the step is over.
  bool at_step_boundary_ = true;
  int64_t last_resume_step_ = -1;
  absl::Time last_resume_time_;
};

absl::Status Loop::Start() {
  ASSIGN_OR_RETURN(optimizer_, MakeOuterOptimizer(spec_.outer(), specs_));
  if (!options_.resume) {
    if (options_.initial_params.empty()) {
      ASSIGN_OR_RETURN(state_.params, InitialMetaParams(job_));
    } else {
      state_.params = std::move(options_.initial_params);
    }
    return ResumePoint();
  }
  // Exactly the state the uninterrupted run had after `step` steps: the plateau schedule
  // and early stopping depend only on the validations seen, in order.
  state_ = std::move(*options_.resume);
  options_.resume.reset();
  RETURN_IF_ERROR(optimizer_->LoadState(state_.optimizer_state));
  state_.optimizer_state.clear();
  const size_t validations = state_.validation_losses.size();
  if (spec_.select_best_by() == "accuracy" && state_.validation_accuracies.size() != validations) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resume state has ", validations, " validation losses but ",
        state_.validation_accuracies.size(), " validation accuracies (select_best_by 'accuracy')"));
  }
  for (size_t i = 0; i < validations; ++i) {
    schedules_.plateau.Observe(state_.validation_losses[i], optimizer_->lr());
    EvaluationSummary replayed;
    replayed.loss_after.mean = state_.validation_losses[i];
    if (i < state_.validation_accuracies.size()) {
      replayed.accuracy_after.mean = state_.validation_accuracies[i];
    }
    schedules_.early.Observe(SelectionScore(spec_, replayed));
  }
  stopped_early_ = schedules_.early.should_stop();
  last_resume_step_ = state_.step;  // this state came from a resume point
  last_resume_time_ = clock_.Now();
  return absl::OkStatus();
}

absl::Status Loop::Step(int64_t step) {
  const absl::Time start = clock_.Now();
  if (spec_.outer().schedule() == "linear") {
    optimizer_->set_lr(LinearScheduleLr(spec_, step));
  }
  StepReport report;
  report.step = step + 1;
  report.lr = optimizer_->lr();

  ASSIGN_OR_RETURN(TrainingRound round, source_.ComputeTraining(step, state_.params));
  at_step_boundary_ = false;  // from here on state_ moves to step + 1
  const absl::Time computed = clock_.Now();
  const int64_t tasks = static_cast<int64_t>(round.query_loss.size());
  auto step_error = [&](const absl::Status& status) {
    return absl::Status(status.code(), absl::StrCat("step ", step + 1, ": ", status.message()));
  };
  auto mean = AggregateGroupGradients(specs_, std::move(round.group_gradients), tasks);
  if (!mean.ok()) return step_error(mean.status());
  const absl::Time aggregated = clock_.Now();
  auto update = ClipAndStep(spec_, std::move(mean).value(), *optimizer_, state_.params);
  if (!update.ok()) return step_error(update.status());
  const absl::Time updated = clock_.Now();
  report.tasks = tasks;
  report.timings.training_round = computed - start;
  report.timings.aggregate = aggregated - computed;
  report.timings.optimizer = updated - aggregated;
  RETURN_IF_ERROR(CatchTorch("training metrics", [&] {
    report.train_loss = MeanInDtype(round.query_loss, job_.dtype);
    if (!round.query_accuracy.empty()) {
      report.train_accuracy = MeanInDtype(round.query_accuracy, job_.dtype);
    }
    return absl::OkStatus();
  }));
  const double seconds = absl::ToDoubleSeconds(clock_.Now() - start);
  report.tasks_per_second = seconds > 0 ? tasks / seconds : 0;
  state_.step = step + 1;

  if (spec_.validation_interval() > 0 && (step + 1) % spec_.validation_interval() == 0) {
    EvaluationRequest request;
    request.split = Split::kValidation;
    request.round = step + 1;
    request.num_tasks = spec_.validation_tasks();
    request.steps = spec_.inner().test_steps();
    request.version = step + 1;
    const absl::Time validation_start = clock_.Now();
    ASSIGN_OR_RETURN(EvaluationSummary summary, source_.Evaluate(request, state_.params));
    report.timings.validation = clock_.Now() - validation_start;
    if (spec_.outer().schedule() == "plateau") {
      optimizer_->set_lr(schedules_.plateau.Observe(summary.loss_after.mean, optimizer_->lr()));
    }
    state_.validation_losses.push_back(summary.loss_after.mean);
    state_.validation_accuracies.push_back(summary.accuracy_after.mean);
    if (schedules_.early.Observe(SelectionScore(spec_, summary))) {
      RETURN_IF_ERROR(CatchTorch("best parameters", [&] {
        state_.best_params = CloneParams(state_.params);
        return absl::OkStatus();
      }));
      state_.best_step = step + 1;
      report.new_best = true;
    }
    report.validation = summary;
  }
  stopped_early_ = schedules_.early.should_stop();
  report.stopped_early = stopped_early_;

  at_step_boundary_ = true;
  RETURN_IF_ERROR(observer_.OnStep(report));
  if (report.new_best) RETURN_IF_ERROR(observer_.OnNewBest(state_.best_params, step + 1));
  return MaybeResumePoint();
}

absl::Status Loop::ResumePoint() {
  last_resume_step_ = state_.step;
  last_resume_time_ = clock_.Now();
  return observer_.OnResumePoint(Snapshot());
}

absl::Status Loop::MaybeResumePoint() {
  const bool by_steps =
      spec_.checkpoint_interval() > 0 && state_.step % spec_.checkpoint_interval() == 0;
  const bool by_time =
      spec_.checkpoint_interval_seconds() > 0 &&
      clock_.Now() - last_resume_time_ >= absl::Seconds(spec_.checkpoint_interval_seconds());
  return by_steps || by_time ? ResumePoint() : absl::OkStatus();
}

LoopState Loop::Snapshot() const {
  LoopState snapshot = state_;  // tensors are shared, not copied: the observer only reads
  snapshot.optimizer_state = optimizer_->State();
  return snapshot;
}

absl::StatusOr<TrainingResult> Loop::Run() {
  RETURN_IF_ERROR(Start());
  for (int64_t step = state_.step; step < spec_.steps() && !stopped_early_; ++step) {
    absl::Status stepped = Step(step);
    if (stepped.ok()) continue;
    // Stopped (the coordinator shutting down): leave a resume point at the last step
    // boundary, so the next start loses no finished step. A stop in the middle of a step's
    // validation has already changed the parameters; the last resume point stands then.
    if (absl::IsAborted(stepped) && at_step_boundary_ && state_.step != last_resume_step_) {
      RETURN_IF_ERROR(ResumePoint());
    }
    return stepped;
  }
  if (state_.validation_losses.empty()) {
    RETURN_IF_ERROR(CatchTorch("best parameters", [&] {
      state_.best_params = CloneParams(state_.params);
      return absl::OkStatus();
    }));
    state_.best_step = state_.step;
  }
  RETURN_IF_ERROR(
      observer_.OnTrainingEnd(state_.params, state_.step, state_.best_params, state_.best_step));
  RETURN_IF_ERROR(ResumePoint());

  EvaluationRequest request;
  request.split = Split::kTest;
  request.round = 0;
  request.num_tasks = spec_.test_tasks();
  request.steps = spec_.inner().test_steps();
  request.version = state_.best_step;
  ASSIGN_OR_RETURN(EvaluationSummary test, source_.Evaluate(request, state_.best_params));

  TrainingResult result;
  result.final_params = state_.params;
  result.best_params = state_.best_params;
  result.best_step = state_.best_step;
  result.steps_run = state_.step;
  result.stopped_early = stopped_early_;
  result.test = test;
  return result;
}

}  // namespace

absl::StatusOr<TrainingResult> RunTrainingLoop(const JobContext& job, GradientSource& source,
                                               LoopOptions options) {
  Loop loop(job, source, std::move(options));
  return loop.Run();
}

}  // namespace metatrain::meta
