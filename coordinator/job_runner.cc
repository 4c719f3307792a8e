#include "coordinator/job_runner.h"

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging/log.h"
#include "common/meta/checkpoint.h"
#include "common/meta/evaluation_proto.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::coordinator {
namespace {

metatrain::Clock& ClockOf(const WorkerPoolOptions& options) {
  return options.clock != nullptr ? *options.clock : *metatrain::Clock::Real();
}

WorkerPoolSource::Hooks PoolHooks(const JobRunner::Hooks& hooks) {
  WorkerPoolSource::Hooks pool;
  pool.live_workers = hooks.live_workers;
  pool.next_assignment_id = hooks.next_assignment_id;
  pool.metrics = hooks.metrics;
  pool.job_metrics = hooks.job_metrics;
  pool.quarantine = hooks.quarantine;
  auto update = hooks.update;
  pool.workers_changed = [update](int32_t count) {
    update([count](v1::JobStatus& status) { status.set_workers(count); },
           v1::JobEvent::KIND_UNSPECIFIED);
  };
  return pool;
}

// The loop's view of a resume.pt: the accuracies of the validations (for select_best_by
// "accuracy") come from the saved status's validation curve, which keeps them exactly.
meta::LoopState ToLoopState(ResumeState resume) {
  meta::LoopState state;
  state.step = resume.step;
  state.params = std::move(resume.params);
  state.optimizer_state = std::move(resume.optimizer_state);
  state.validation_losses = std::move(resume.validation_losses);
  for (const auto& point : resume.status.validation_history()) {
    state.validation_accuracies.push_back(point.result().accuracy_after().mean());
  }
  // Older curves may be longer or shorter than the losses; the loop needs them to agree
  // only when it ranks by accuracy, and says so if they do not.
  if (resume.status.spec().select_best_by() != "accuracy" &&
      state.validation_accuracies.size() != state.validation_losses.size()) {
    state.validation_accuracies.clear();
  }
  state.best_params = std::move(resume.best_params);
  state.best_step = resume.status.best_step();
  return state;
}

}  // namespace

JobRunner::JobRunner(std::string job_id, std::shared_ptr<const meta::JobContext> job,
                     meta::TensorList initial_params, std::optional<ResumeState> resume,
                     RunnerOptions options, Hooks hooks)
    : job_id_(std::move(job_id)),
      job_(std::move(job)),
      options_(std::move(options)),
      hooks_(std::move(hooks)),
      initial_params_(std::move(initial_params)),
      resume_(std::move(resume)),
      source_(job_id_, *job_, options_.pool, PoolHooks(hooks_)) {
  if (!options_.job_dir.empty()) {
    writer_ = std::make_unique<CheckpointWriter>(
        options_.job_dir,
        [this](const std::string& which, int64_t step, int64_t bytes, absl::Duration took,
               const std::string& path) { CheckpointWritten(which, step, bytes, took, path); });
  }
}

JobRunner::~JobRunner() = default;

absl::Status JobRunner::Run() {
  meta::LoopOptions loop;
  if (resume_) {
    loop.resume = ToLoopState(std::move(*resume_));
    resume_.reset();
  } else {
    loop.initial_params = std::move(initial_params_);
  }
  loop.observer = this;
  loop.clock = options_.pool.clock;
  // NOTE: the loop (common/meta/training_loop.cc) calls LibTorch directly in places
  // (CloneParams, summaries); any exception it lets through becomes this job's error here,
  // at the boundary, and never reaches the coordinator's other jobs.
  absl::StatusOr<meta::TrainingResult> trained = absl::UnknownError("training did not run");
  absl::Status guarded = CatchTorch("training", [&]() -> absl::Status {
    trained = meta::RunTrainingLoop(*job_, source_, std::move(loop));
    return absl::OkStatus();
  });
  if (!guarded.ok()) trained = guarded;
  // Whatever the outcome, the checkpoints queued so far reach the disk before the job is
  // reported finished or stopped (a stop leaves its last resume point).
  if (writer_ != nullptr) {
    if (absl::Status flushed = writer_->Flush(); !flushed.ok() && trained.ok()) return flushed;
  }
  ASSIGN_OR_RETURN(meta::TrainingResult result, std::move(trained));
  const v1::EvaluationResult test =
      meta::ToEvaluationResult(result.test, job_->spec.inner().test_steps());
  hooks_.update(
      [&](v1::JobStatus& status) {
        *status.mutable_test() = test;
        status.set_workers(0);
      },
      v1::JobEvent::KIND_UNSPECIFIED);
  return absl::OkStatus();
}

absl::Status JobRunner::OnStep(const meta::StepReport& report) {
  const int test_steps = job_->spec.inner().test_steps();
  hooks_.update(
      [&](v1::JobStatus& status) {
        status.set_step(report.step);
        status.set_train_loss(report.train_loss);
        status.set_train_accuracy(report.train_accuracy);
        status.set_learning_rate(report.lr);
        status.set_tasks_per_second(report.tasks_per_second);
        if (report.validation) {
          *status.mutable_last_validation() =
              meta::ToEvaluationResult(*report.validation, test_steps);
          v1::ValidationPoint* point = status.add_validation_history();
          point->set_step(report.step);
          *point->mutable_result() = status.last_validation();
          if (report.new_best) {
            *status.mutable_best_validation() = status.last_validation();
            status.set_best_step(report.step);
          }
        }
        status.set_stopped_early(report.stopped_early);
      },
      v1::JobEvent::STEP);
  if (hooks_.job_metrics) hooks_.job_metrics->RecordStep(report, source_.last_training_timings());
  if (report.validation) {
    hooks_.update([](v1::JobStatus&) {}, v1::JobEvent::VALIDATION);
    const meta::EvaluationSummary& v = *report.validation;
    LogLine(absl::StrCat("job ", job_id_, " step ", report.step, " validation: loss ",
                         absl::SixDigits(v.loss_before.mean), " -> ",
                         absl::SixDigits(v.loss_after.mean),
                         v.accuracy_after.n > 0
                             ? absl::StrCat(", accuracy ", absl::SixDigits(v.accuracy_before.mean),
                                            " -> ", absl::SixDigits(v.accuracy_after.mean))
                             : "",
                         report.new_best ? " (best so far)" : ""));
  }
  return absl::OkStatus();
}

absl::Status JobRunner::OnNewBest(const meta::TensorList& best_params, int64_t step) {
  return WriteStateDict(kBestFile, best_params, step);
}

absl::Status JobRunner::OnTrainingEnd(const meta::TensorList& final_params, int64_t steps_run,
                                      const meta::TensorList& best_params, int64_t best_step) {
  RETURN_IF_ERROR(WriteStateDict(kFinalFile, final_params, steps_run));
  return WriteStateDict(kBestFile, best_params, best_step);
}

absl::Status JobRunner::WriteStateDict(const std::string& which, const meta::TensorList& params,
                                       int64_t step) {
  const absl::Time started = ClockOf(options_.pool).Now();
  std::string serialized;
  RETURN_IF_ERROR(CatchTorch("serialising a checkpoint", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(serialized, meta::SerializeStateDict(
                                     meta::ToStateDict(job_->learner->meta_param_specs(), params)));
    return absl::OkStatus();
  }));
  auto bytes = std::make_shared<const std::string>(std::move(serialized));
  if (hooks_.checkpoint) hooks_.checkpoint(which == kBestFile ? "best" : "final", bytes, step);
  return QueueCheckpointFile(which, std::move(bytes), started, step);
}

absl::Status JobRunner::OnResumePoint(const meta::LoopState& loop) {
  if (options_.job_dir.empty()) return absl::OkStatus();
  const absl::Time started = ClockOf(options_.pool).Now();
  ResumeState state;
  hooks_.update([&](v1::JobStatus& status) { state.status = status; },
                v1::JobEvent::KIND_UNSPECIFIED);
  state.step = loop.step;
  state.params = loop.params;
  state.optimizer_state = loop.optimizer_state;
  state.validation_losses = loop.validation_losses;
  state.best_params = loop.best_params;
  std::string serialized;
  RETURN_IF_ERROR(CatchTorch("serialising resume.pt", [&]() -> absl::Status {
    ASSIGN_OR_RETURN(serialized, SerializeResumeState(state, job_->learner->meta_param_specs()));
    return absl::OkStatus();
  }));
  return QueueCheckpointFile(
      kResumeFile, std::make_shared<const std::string>(std::move(serialized)), started, loop.step);
}

absl::Status JobRunner::QueueCheckpointFile(const std::string& which,
                                            std::shared_ptr<const std::string> bytes,
                                            absl::Time started, int64_t step) {
  // Memory-only jobs keep best/final for FetchCheckpoint and have nothing to write.
  if (writer_ == nullptr) return absl::OkStatus();
  absl::Status queued = writer_->Write(which, std::move(bytes), step);
  if (hooks_.job_metrics) {
    hooks_.job_metrics->RecordCheckpointPhase(ClockOf(options_.pool).Now() - started);
  }
  return queued;
}

void JobRunner::CheckpointWritten(const std::string& which, int64_t step, int64_t bytes,
                                  absl::Duration took, const std::string& path) {
  if (hooks_.job_metrics) hooks_.job_metrics->RecordCheckpoint(bytes, took);
  LogLine(absl::StrCat("job ", job_id_, " checkpoint ", which, " (step ", step, ", ", bytes,
                       " bytes, ", absl::FormatDuration(absl::Trunc(took, absl::Milliseconds(1))),
                       ") written to ", path));
}

}  // namespace metatrain::coordinator
