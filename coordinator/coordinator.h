#ifndef METATRAIN_COORDINATOR_COORDINATOR_H_
#define METATRAIN_COORDINATOR_COORDINATOR_H_

// The coordinator's logic, free of gRPC: the job table and FIFO queue, the worker pool,
// routing of worker messages to the job that owns them, progress events and checkpoints.
// coordinator/rpc/ adapts it to the JobService and WorkerService.
//
// Threads: every running job has one runner thread (job_runner.h) that drives its steps.
// RPC threads call the methods below, which only touch the job table under mu_, push
// messages into a runner's inbox, or read the worker registry: none of them waits for
// training work, except CancelJob (which waits briefly for the job to stop).

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/time/clock.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_runner.h"
#include "coordinator/worker_registry.h"
#include "metatrain/v1/job_service.pb.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain::coordinator {

struct CoordinatorOptions {
  // Checkpoints go to <checkpoint_dir>/<job_id>/; empty: in memory only, no resume.
  std::string checkpoint_dir;
  // Jobs that train at the same time over the shared worker pool; the rest queue (FIFO).
  int max_running_jobs = 1;
  // On Start(), resume unfinished jobs found in checkpoint_dir.
  bool resume = true;
  absl::Duration assignment_timeout = absl::Minutes(10);
  int max_task_attempts = 3;
  absl::Duration poll_interval = absl::Milliseconds(200);
  // Time for timestamps, assignment deadlines and step timing; Clock::Real() when null.
  Clock* clock = nullptr;
  // How long a finished job's (and a departed worker's) metric series stay
  // (NOTE [Series retention]).
  absl::Duration metrics_retention = absl::Minutes(10);
};

// Events of one watched job, in order: SNAPSHOT first, then STEP / VALIDATION /
// STATE_CHANGE, ending with the terminal STATE_CHANGE. Thread-safe.
class JobEventQueue {
 public:
  // The next event, waiting up to `timeout`; nullopt on timeout or once finished().
  std::optional<v1::JobEvent> Next(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // The terminal event has been taken (or the coordinator shut down): nothing follows.
  bool finished() const ABSL_LOCKS_EXCLUDED(mu_);

  void Push(v1::JobEvent event, bool terminal) ABSL_LOCKS_EXCLUDED(mu_);
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::deque<v1::JobEvent> events_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // nothing more will be pushed
};

struct CheckpointData {
  std::string bytes;  // torch.save format
  int64_t step = 0;
};

class Coordinator {
 public:
  explicit Coordinator(CoordinatorOptions options);
  // Stops everything (see Shutdown).
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Loads the jobs found in checkpoint_dir: finished ones for GetJob/FetchCheckpoint,
  // unfinished ones (with resume.pt) queued to continue exactly where they stopped.
  absl::Status Start();

  // Stops running jobs where they are (they resume from resume.pt on the next Start),
  // sends Shutdown to every worker and joins all threads. Idempotent.
  void Shutdown(const std::string& reason = "coordinator shutting down");

  // --- Job API. NOT_FOUND for unknown job ids.
  // INVALID_ARGUMENT naming the field for a spec that NormalizeJobSpec or MakeJobContext
  // refuses (e.g. a missing data directory) or whose initial weights do not load.
  absl::StatusOr<v1::JobStatus> SubmitJob(const v1::JobSpec& spec);
  absl::StatusOr<v1::JobStatus> GetJob(const std::string& job_id) const;
  std::vector<v1::JobStatus> ListJobs() const;
  // Cancels a queued or running job and waits (briefly) until it has stopped; a finished
  // job is returned unchanged.
  absl::StatusOr<v1::JobStatus> CancelJob(const std::string& job_id);
  absl::StatusOr<std::shared_ptr<JobEventQueue>> WatchJob(const std::string& job_id);
  // `which`: "best" (default when empty) or "final". FAILED_PRECONDITION until produced.
  absl::StatusOr<CheckpointData> FetchCheckpoint(const std::string& job_id,
                                                 const std::string& which) const;

  // --- Worker sessions.
  // Registers a worker; its Welcome is queued on `connection` first. A worker of another
  // version, or with a device it cannot read, is refused (AdmitWorker in
  // worker_registry.h): the status says why and nothing is registered.
  absl::StatusOr<std::string> AddWorker(const v1::Hello& hello,
                                        std::shared_ptr<WorkerConnection> connection);
  void RemoveWorker(const std::string& worker_id);
  // Routes a TaskGradient or AssignmentDone to the job that issued the assignment.
  void OnWorkerMessage(const std::string& worker_id, v1::WorkerMessage message);

  // Protobuf bytes received from and sent (queued) to workers. Thread-safe, lock-free.
  void CountSessionBytes(int64_t received, int64_t sent) {
    if (received > 0) metrics_->BytesReceived(received);
    if (sent > 0) metrics_->BytesSent(sent);
  }
  // The Prometheus series of the service and its jobs (docs/operations.md).
  const CoordinatorMetrics& metrics() const { return *metrics_; }
  std::shared_ptr<prometheus::Collectable> metrics_collectable() const { return metrics_; }
  int64_t num_workers() const { return workers_.size(); }

 private:
  struct Job;

  void MaybeStartJobsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartJobLocked(const std::shared_ptr<Job>& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(Job& job, v1::JobEvent::Kind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After `job` changed state (null: a job without series, e.g. one loaded finished): its
  // state series and the service's jobs-by-state and queue gauges.
  void RecordJobStateLocked(const Job* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordWorkers();
  void FinishJobLocked(Job& job, v1::JobState state, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Job> FindLocked(const std::string& job_id) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Job>> Find(const std::string& job_id) const
      ABSL_LOCKS_EXCLUDED(mu_);

  void RunJob(std::shared_ptr<Job> job) ABSL_LOCKS_EXCLUDED(mu_);
  std::string JobDir(const std::string& job_id) const;
  absl::Status LoadJob(const std::string& dir_name);
  // A job on disk that could not be resumed: listed as FAILED with the reason (in memory
  // only, so a restart after the cause is fixed resumes it), never silently dropped.
  void ListUnresumableJob(const std::string& dir_name, int64_t seq, const absl::Status& why);

  const CoordinatorOptions options_;
  Clock& clock_;
  WorkerRegistry workers_;
  const std::shared_ptr<CoordinatorMetrics> metrics_;

  mutable absl::Mutex mu_;
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::shared_ptr<Job>> by_seq_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_COORDINATOR_H_
