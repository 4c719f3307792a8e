#ifndef METATRAIN_COORDINATOR_COORDINATOR_H_
#define METATRAIN_COORDINATOR_COORDINATOR_H_

// The coordinator's logic, free of gRPC: the job table and FIFO queue, the worker pool,
// routing of worker messages to the job that owns them, progress events and checkpoints.
// coordinator/rpc/ adapts it to the JobService and WorkerService.
//
// Threads: every running job has one runner thread (job_runner.h) that loads the job's data
// and then drives its steps; it is joined soon after the job ends (by the next job thread
// to end, or by Shutdown). RPC threads call the methods below, which only touch the job
// table under mu_, push messages into a runner's inbox, or read the worker registry: none
// of them waits for training work, except CancelJob (which waits briefly for the job to
// stop). NOTE [Nothing blocks under mu_]: no file I/O, fsync, data loading or copy of a
// checkpoint's bytes happens while mu_ is held; files are written before a job enters the
// table (submitted.pb) or with mu_ released (status.pb), checkpoints are shared as
// shared_ptr<const std::string>, and events are built once and shared by every watcher.
//
// Memory: a job's JobContext (its data set) lives only while the job runs. A finished job
// keeps its JobStatus; its best/final checkpoints are served from checkpoint_dir, or, when
// there is none, kept in memory for the last `memory_checkpoint_jobs` finished jobs only.
// Watchers' queues are bounded (JobEventQueue), ListJobs pages.

#include <algorithm>
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
#include "common/files/confined_path.h"
#include "common/meta/job_limits.h"
#include "common/meta/torch_file.h"
#include "common/meta/trainer.h"
#include "common/time/clock.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/job_runner.h"
#include "coordinator/worker_quarantine.h"
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
  // NOTE [Speculative duplicates] (coordinator/worker_pool_source.h).
  bool speculative_duplicates = true;
  // NOTE [Deadlines from observed task times] (coordinator/worker_pool_source.h).
  double deadline_factor = 20;
  absl::Duration min_deadline = absl::Seconds(10);
  // Failures in a row that keep a worker out of every job for a while (NOTE [Quarantine]).
  QuarantineOptions quarantine;
  // A job with no live worker of its device type for this long fails (zero: waits for ever).
  absl::Duration no_worker_timeout = absl::Minutes(30);
  // Time for timestamps, assignment deadlines and step timing; Clock::Real() when null.
  Clock* clock = nullptr;
  // How long a finished job's (and a departed worker's) metric series stay
  // (NOTE [Series retention]).
  absl::Duration metrics_retention = absl::Minutes(10);
  // Without checkpoint_dir: how many finished jobs keep best/final in memory (the oldest
  // are released first; FetchCheckpoint then answers FAILED_PRECONDITION).
  int memory_checkpoint_jobs = 8;
  // A watcher whose client falls this far behind (events, or bytes of events) is dropped
  // with RESOURCE_EXHAUSTED (JobEventQueue).
  int watch_max_events = 256;
  int64_t watch_max_bytes = 8 << 20;
  // SubmitJobRequest.request_ids remembered for retries.
  int remembered_request_ids = 1024;

  // Where the paths of a spec must lie (docs/security.md, "File paths"): tasks.data_dir
  // and tasks.tensor_file under data_roots, initial_weights under weights_roots. Default
  // (no roots): anywhere, for tests; metatrain-coordinator always sets both from
  // --data_root and --weights_root.
  files::ConfinedRoots data_roots;
  files::ConfinedRoots weights_roots;
  // Bounds on specs (SubmitJob, and again on resume) and on the files jobs read.
  meta::JobLimits job_limits;
  meta::JobFileLimits file_limits;
  // FetchCheckpoint refuses a checkpoint larger than this (RESOURCE_EXHAUSTED).
  int64_t max_checkpoint_download_bytes = int64_t{1} << 30;
  // The gRPC server's bounds (coordinator/rpc/server.cc): the largest message it accepts,
  // and the streams one client connection may have open at once.
  int max_receive_message_bytes = 16 << 20;
  int max_concurrent_streams = 100;
  // A worker session whose messages waiting to be sent exceed this is ended with
  // RESOURCE_EXHAUSTED (the worker reconnects): a worker that stops reading cannot grow the
  // coordinator's memory (coordinator/rpc/worker_service.cc).
  int64_t max_worker_outbox_bytes = int64_t{1} << 30;
};

// Events of one watched job, in order: SNAPSHOT first, then STEP / VALIDATION /
// STATE_CHANGE, ending with the terminal STATE_CHANGE. Thread-safe; Push never blocks.
//
// Bounded: a STEP pushed while earlier STEP events are still queued replaces them (a STEP
// carries the whole current status, so only the newest matters to a client that is
// behind). If the queue still holds `max_events` events or `max_bytes` bytes of them when
// another (non-terminal) event arrives, the client is too slow: the queue drops what it
// holds and ends, and end_status() is RESOURCE_EXHAUSTED (the client can watch again; it
// gets a SNAPSHOT first). The terminal event is always accepted.
class JobEventQueue {
 public:
  using Event = std::shared_ptr<const v1::JobEvent>;
  explicit JobEventQueue(int max_events = 256, int64_t max_bytes = 8 << 20)
      : max_events_(std::max(2, max_events)), max_bytes_(max_bytes) {}

  // The next event, waiting up to `timeout`; null on timeout or once finished().
  Event Next(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);
  // Nothing follows: the terminal event has been taken, the coordinator shut down, or the
  // queue overflowed (end_status() says which).
  bool finished() const ABSL_LOCKS_EXCLUDED(mu_);
  // OK, or RESOURCE_EXHAUSTED when the client fell too far behind.
  absl::Status end_status() const ABSL_LOCKS_EXCLUDED(mu_);
  // Events waiting to be taken.
  int size() const ABSL_LOCKS_EXCLUDED(mu_);
  // False once nothing more will be accepted (terminal, closed or overflowed).
  bool open() const ABSL_LOCKS_EXCLUDED(mu_);

  // `bytes`: the event's serialised size (computed once by the publisher).
  void Push(Event event, int64_t bytes, bool terminal) ABSL_LOCKS_EXCLUDED(mu_);
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const int max_events_;
  const int64_t max_bytes_;
  mutable absl::Mutex mu_;
  std::deque<std::pair<Event, int64_t>> events_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // nothing more will be pushed
  absl::Status end_status_ ABSL_GUARDED_BY(mu_);
};

struct CheckpointData {
  std::shared_ptr<const std::string> bytes;  // torch.save format; never null when returned
  int64_t step = 0;
};

class Coordinator {
 public:
  explicit Coordinator(CoordinatorOptions options);
  const CoordinatorOptions& options() const { return options_; }
  // Stops everything (see Shutdown).
  ~Coordinator();
  Coordinator(const Coordinator&) = delete;
  Coordinator& operator=(const Coordinator&) = delete;

  // Loads the jobs found in checkpoint_dir: finished ones for GetJob/FetchCheckpoint,
  // unfinished ones (with resume.pt) queued to continue exactly where they stopped.
  absl::Status Start();

  // What Shutdown tells the workers: to exit (the cluster is going away), or nothing, so
  // that they reconnect to the next coordinator at the same address (a restart).
  enum class WorkerFate { kExit, kReconnect };
  // Stops running jobs where they are, each leaving a resume point at its last finished
  // step (they continue from it on the next Start), tells the workers per `fate` and joins
  // all threads. Idempotent.
  void Shutdown(const std::string& reason = "coordinator shutting down",
                WorkerFate fate = WorkerFate::kExit);

  // --- Job API. NOT_FOUND for unknown job ids.
  // Checks the spec cheaply and queues the job; it does not load data. INVALID_ARGUMENT
  // naming the field for a spec that NormalizeJobSpec refuses or that is over a limit of
  // options.job_limits, RESOURCE_EXHAUSTED naming the limit when its estimated memory is
  // over it, INVALID_ARGUMENT "<field> '<path>': not found under --data_root" (or
  // --weights_root) for a path that is missing or outside the roots, one message for both
  // (NOTE [One answer for missing and forbidden]). Data that is present but
  // unreadable (a missing zip, a corrupt file, weights of the wrong shape) is found when
  // the job starts: the job ends FAILED with the reason. With checkpoint_dir, the job's
  // submitted.pb is on disk before this returns. `request_id` (optional): a retry of a
  // recent submission returns that submission's job (ALREADY_EXISTS if the spec differs).
  absl::StatusOr<v1::JobStatus> SubmitJob(const v1::JobSpec& spec,
                                          const std::string& request_id = "");
  absl::StatusOr<v1::JobStatus> GetJob(const std::string& job_id) const;
  // A page of jobs in submission order (ListJobsRequest). INVALID_ARGUMENT for a
  // page_token this coordinator did not give out.
  absl::StatusOr<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& request = {}) const;
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
  // Job threads not yet joined: those of running jobs, plus at most the last one to end
  // (it is joined by the next to end, or by Shutdown).
  int64_t unjoined_job_threads() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(threads_.size() + ended_threads_.size());
  }

 private:
  struct Job;

  void MaybeStartJobsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartJobLocked(const std::shared_ptr<Job>& job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PublishLocked(Job& job, v1::JobEvent::Kind kind) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After `job` changed state (null: a job without series, e.g. one loaded finished): its
  // state series and the service's jobs-by-state and queue gauges.
  void RecordJobStateLocked(const Job* job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordWorkers();
  // Ends `job`: writes its status.pb with mu_ released (other callers see the job as
  // finishing meanwhile), then publishes the terminal event. Returns with mu_ held.
  void FinishJobLocked(const std::shared_ptr<Job>& job, v1::JobState state,
                       const std::string& error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Builds a job's data and initial parameters on its own thread (SubmitJob defers it).
  absl::Status PrepareJob(Job& job) ABSL_LOCKS_EXCLUDED(mu_);
  // A job's context from its normalised spec: the paths resolved again under the roots
  // right before the files are opened (what SubmitJob saw may have changed since), the
  // memory estimate checked with the family's real shapes (a tensor file's are known only
  // now), and, when `initial_params` is not null, the initial parameters. The context
  // keeps `spec` as submitted: workers resolve its paths under their own roots.
  absl::StatusOr<meta::JobContext> BuildJobContext(const v1::JobSpec& spec,
                                                   meta::TensorList* initial_params) const;
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
  WorkerQuarantine quarantine_;
  const std::shared_ptr<CoordinatorMetrics> metrics_;

  mutable absl::Mutex mu_;
  int64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, std::shared_ptr<Job>> by_seq_ ABSL_GUARDED_BY(mu_);
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Threads of running jobs by sequence number; a job's thread moves itself to
  // ended_threads_ as its last step, and the next one to end (or Shutdown) joins it.
  std::map<int64_t, std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> ended_threads_ ABSL_GUARDED_BY(mu_);
  // Finished memory-only jobs whose checkpoints are still held, oldest first.
  std::deque<std::shared_ptr<Job>> memory_checkpoints_ ABSL_GUARDED_BY(mu_);
  // Adds a request id, forgetting the oldest beyond options_.remembered_request_ids.
  void RememberRequestIdLocked(const std::string& request_id, const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Recent SubmitJobRequest.request_id -> job id, and their order for forgetting.
  std::map<std::string, std::string> request_ids_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<std::string, std::string>> request_id_order_ ABSL_GUARDED_BY(mu_);
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_COORDINATOR_H_
