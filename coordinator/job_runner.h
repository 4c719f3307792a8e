#ifndef METATRAIN_COORDINATOR_JOB_RUNNER_H_
#define METATRAIN_COORDINATOR_JOB_RUNNER_H_

// Drives one job over the shared worker pool, in the job's own thread. It performs the
// very steps of meta::Train (common/meta/trainer.cc) with the same building blocks, in
// the same order, so a job reaches the same bits whatever the number of workers:
//
//   per step s (0-based):   lr <- LinearScheduleLr (if "linear")
//                           keys = TrainingKeys(spec, s), split into contiguous shards
//                           Parameters(version s) once per worker, then Assignments
//                           collect one meta-gradient per task (validated on arrival)
//                           ApplyMetaUpdate: task-order mean -> clip -> optimizer step
//   every validation_interval steps: validation tasks (round s+1) on the workers,
//                           plateau schedule, early stopping, best parameters
//   at the end:             meta-test of the best parameters (test split, round 0)
//
// NOTE [Work distribution]. A round (one training step or one evaluation) splits its
// tasks into one contiguous range per participating worker; a worker takes at most
// `capacity` tasks per assignment and has at most one assignment of this job in flight.
// Workers that join during a round wait for the next one (unless the round has no worker
// left). A worker that leaves, times out or sends something invalid loses its unfinished
// tasks to the pending queue, and another worker recomputes them: tasks derive from keys,
// so the result is the same. A worker whose result is rejected sits out the rest of the
// round (unless it is the only one left). Rejected data is never applied; a task rejected
// max_task_attempts times fails the job.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/meta/trainer.h"
#include "common/rpc/tensor_codec.h"
#include "coordinator/job_checkpoint.h"
#include "coordinator/worker_registry.h"
#include "metatrain/v1/job_service.pb.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain::coordinator {

// Process-wide counters, for tests and monitoring. Thread-safe.
struct CoordinatorCounters {
  // Worker results refused: malformed chunks, wrong shapes, non-finite values, a worker
  // answering for another's assignment, incomplete assignments, worker-reported errors.
  std::atomic<int64_t> rejected_results{0};
  // Messages for assignments no longer in flight (an earlier step, a reassigned or
  // cancelled assignment): dropped.
  std::atomic<int64_t> stale_messages{0};
  // Tasks handed to another worker after a loss, timeout or rejection.
  std::atomic<int64_t> reassigned_tasks{0};
  std::atomic<int64_t> assignments_sent{0};
};

struct RunnerOptions {
  // The job's own checkpoint directory; empty: keep checkpoints in memory only.
  std::string job_dir;
  absl::Duration assignment_timeout = absl::Minutes(10);
  int max_task_attempts = 3;
  // How often a waiting runner re-checks the worker pool.
  absl::Duration poll_interval = absl::Milliseconds(200);
};

class JobRunner {
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
    // A checkpoint ("best" or "final") was produced: its torch.save bytes.
    std::function<void(const std::string& which, const std::string& bytes, int64_t step)>
        checkpoint;
    CoordinatorCounters* counters = nullptr;
  };

  // `initial_params` is ignored when `resume` is set.
  JobRunner(std::string job_id, std::shared_ptr<const meta::JobContext> job,
            meta::TensorList initial_params, std::optional<ResumeState> resume,
            RunnerOptions options, Hooks hooks);
  ~JobRunner();

  // Runs the job to its end in the calling thread. OK: succeeded (status holds the
  // test result). CANCELLED: Cancel() was called. ABORTED: Stop() was called (the job can
  // resume from its last resume.pt). Anything else: the job failed with that error.
  absl::Status Run();

  // Thread-safe; never block on the runner.
  void PostMessage(const std::string& worker_id, v1::WorkerMessage message);
  void WorkersChanged();
  void Cancel();
  void Stop();

 private:
  struct Round;
  struct InFlight;
  struct Participant {
    WorkerInfo info;
    bool busy = false;
  };
  struct SessionState {
    bool setup_sent = false;
    int64_t version_sent = -1;
  };
  struct Event {
    std::string worker_id;
    v1::WorkerMessage message;
  };

  absl::Status RunRound(Round& round);
  void PickParticipants();
  void Dispatch(Round& round);
  bool SendAssignment(Participant& participant, Round& round, int64_t begin, int64_t end);
  void HandleEvent(Round& round, Event& event);
  void HandleGradient(Round& round, const std::string& worker_id, const v1::TaskGradient& gradient);
  void HandleDone(Round& round, const std::string& worker_id, const v1::AssignmentDone& done);
  // Drops an in-flight assignment: its unfinished tasks go back to the pending queue.
  // `rejection`: non-empty when the worker's result was refused (counts an attempt).
  void Requeue(Round& round, int64_t assignment_id, const std::string& rejection);
  // The in-flight assignment `assignment_id` if `worker_id` holds it; otherwise counts the
  // message as stale (no such assignment) or rejected (someone else's) and returns null.
  InFlight* OwnedAssignment(int64_t assignment_id, const std::string& worker_id);
  void ReleaseWorker(const std::string& worker_id);
  void HandleWorkerChanges(Round& round);
  void CheckDeadlines(Round& round);
  void ReportWorkers();
  meta::EvaluationSummary Summarize(const Round& round) const;
  absl::Status WriteResume(int64_t step, const meta::OuterOptimizer& optimizer);
  absl::Status WriteStateDict(const std::string& which, const meta::TensorList& params,
                              int64_t step);

  const std::string job_id_;
  const std::shared_ptr<const meta::JobContext> job_;
  const RunnerOptions options_;
  const Hooks hooks_;
  const std::vector<meta::ParamSpec> specs_;

  // Runner-thread state.
  meta::TensorList params_;
  meta::TensorList best_params_;
  std::optional<ResumeState> resume_;
  std::vector<double> validation_losses_;
  std::vector<Participant> participants_;
  std::map<std::string, SessionState> sessions_;
  std::map<int64_t, std::unique_ptr<InFlight>> in_flight_;
  int64_t encoded_version_ = -1;
  std::vector<v1::TensorChunk> encoded_params_;

  // Inbox, shared with the RPC threads.
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> inbox_;       // GUARDED_BY(mu_)
  bool workers_changed_ = false;  // GUARDED_BY(mu_)
  bool cancelled_ = false;        // GUARDED_BY(mu_)
  bool stopped_ = false;          // GUARDED_BY(mu_)
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_JOB_RUNNER_H_
