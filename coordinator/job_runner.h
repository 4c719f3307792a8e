#ifndef METATRAIN_COORDINATOR_JOB_RUNNER_H_
#define METATRAIN_COORDINATOR_JOB_RUNNER_H_

// Runs one job of the coordinator, in the job's own thread: the one training loop
// (common/meta/training_loop.h, NOTE [The one training loop]) over the worker pool
// (worker_pool_source.h, NOTE [Work distribution]). What is the coordinator's own is
// here: the job's status and its events, and its checkpoints (job_checkpoint.h) on disk
// and in memory.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/meta/trainer.h"
#include "common/meta/training_loop.h"
#include "common/time/clock.h"
#include "coordinator/checkpoint_writer.h"
#include "coordinator/job_checkpoint.h"
#include "coordinator/worker_pool_source.h"
#include "coordinator/worker_registry.h"
#include "metatrain/v1/job_service.pb.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain::coordinator {

struct RunnerOptions {
  // The job's own checkpoint directory; empty: keep checkpoints in memory only.
  std::string job_dir;
  // Deadlines, attempts, polling and the clock, for the rounds and the loop alike.
  WorkerPoolOptions pool;
};

class JobRunner final : private meta::TrainingObserver {
 public:
  struct Hooks {
    // Live workers in join order. Thread-safe.
    std::function<std::vector<WorkerInfo>()> live_workers;
    // Applies `mutate` to the job's status (under the owner's lock) and, unless `kind`
    // is KIND_UNSPECIFIED, publishes an event of that kind to the job's watchers.
    std::function<void(const std::function<void(v1::JobStatus&)>& mutate, v1::JobEvent::Kind kind)>
        update;
    // A globally unique assignment id that routes back to this job.
    std::function<int64_t()> next_assignment_id;
    // A checkpoint ("best" or "final") was produced (and written, with a job_dir): its
    // torch.save bytes, shared so that keeping and serving them copies nothing.
    std::function<void(const std::string& which, std::shared_ptr<const std::string> bytes,
                       int64_t step)>
        checkpoint;
    // Service-wide and this job's series; either may be null (no recording).
    CoordinatorMetrics* metrics = nullptr;
    JobMetrics* job_metrics = nullptr;
    WorkerQuarantine* quarantine = nullptr;
  };

  // `initial_params` is ignored when `resume` is set.
  JobRunner(std::string job_id, std::shared_ptr<const meta::JobContext> job,
            meta::TensorList initial_params, std::optional<ResumeState> resume,
            RunnerOptions options, Hooks hooks);
  ~JobRunner() override;

  // Runs the job to its end in the calling thread. OK: succeeded (status holds the
  // test result). CANCELLED: Cancel() was called. ABORTED: Stop() was called (the job can
  // resume from its last resume.pt). Anything else: the job failed with that error.
  absl::Status Run();

  // Thread-safe; never block on the runner.
  void PostMessage(const std::string& worker_id, v1::WorkerMessage message) {
    source_.PostMessage(worker_id, std::move(message));
  }
  void WorkersChanged() { source_.WorkersChanged(); }
  void Cancel() { source_.Cancel(); }
  void Stop() { source_.Stop(); }

 private:
  // meta::TrainingObserver: status, events and checkpoints.
  absl::Status OnStep(const meta::StepReport& report) override;
  absl::Status OnNewBest(const meta::TensorList& best_params, int64_t step) override;
  absl::Status OnResumePoint(const meta::LoopState& state) override;
  absl::Status OnTrainingEnd(const meta::TensorList& final_params, int64_t steps_run,
                             const meta::TensorList& best_params, int64_t best_step) override;

  absl::Status WriteStateDict(const std::string& which, const meta::TensorList& params,
                              int64_t step);
  // Hands a serialised checkpoint (begun at `started`) to the writer thread.
  absl::Status QueueCheckpointFile(const std::string& which,
                                   std::shared_ptr<const std::string> bytes, absl::Time started,
                                   int64_t step);
  // On the writer thread, once a file is on disk: metrics and the log line.
  void CheckpointWritten(const std::string& which, int64_t step, int64_t bytes, absl::Duration took,
                         const std::string& path);

  const std::string job_id_;
  const std::shared_ptr<const meta::JobContext> job_;
  const RunnerOptions options_;
  const Hooks hooks_;
  meta::TensorList initial_params_;
  std::optional<ResumeState> resume_;
  WorkerPoolSource source_;
  // Writes checkpoint files off the loop's thread; null without a job_dir. Declared last:
  // destroyed (flushed) first, while everything it calls back into still exists.
  std::unique_ptr<CheckpointWriter> writer_;
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_JOB_RUNNER_H_
