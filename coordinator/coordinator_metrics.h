#ifndef METATRAIN_COORDINATOR_COORDINATOR_METRICS_H_
#define METATRAIN_COORDINATOR_COORDINATOR_METRICS_H_

// The coordinator's Prometheus series (docs/operations.md lists them all): the service's
// and, through JobMetrics, each job's. Recording keeps to the hot path's budget: every
// series a step touches is resolved once (prometheus-cpp's Family::Add hashes the labels
// under a lock), and recording is then an atomic add or a short histogram lock.
//
// NOTE [Series retention]. A finished job's series, and the per-worker series of a worker
// that left, are removed `retention` after the fact, so a dashboard still shows how a job
// ended while a long-lived coordinator's series stay bounded by the jobs and workers of
// the last `retention`. Removal happens when the registry is next collected (a scrape) or
// a job is added, never on a recording path.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/meta/trainer.h"
#include "common/time/clock.h"
#include "metatrain/v1/job_service.pb.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace metatrain::coordinator {

enum class RejectReason { kMalformed, kNonFinite, kNotOwner, kWorkerError };
enum class ReassignReason { kWorkerLost, kDeadline, kRejected, kNeedsSetup };
// The `reason` label values, as docs/operations.md lists them.
const char* ReasonLabel(RejectReason reason);
const char* ReasonLabel(ReassignReason reason);

// How one training round of a step was spent by the worker pool (worker_pool_source.h).
struct RoundTimings {
  absl::Duration dispatch;      // encoding parameters, sending assignments
  absl::Duration wait_workers;  // waiting for the inbox
  absl::Duration decode;        // reassembling and checking results
  // Per worker name: from the round's start until the worker's last accepted result.
  std::map<std::string, absl::Duration> worker_finish;
};

class CoordinatorMetrics;

// One job's series (label job_id). Used by the job's runner thread and, for the state, by
// the coordinator under its lock; the gauges and counters are atomic, so no lock here.
class JobMetrics {
 public:
  void SetState(v1::JobState state);
  void SetPlannedSteps(int64_t steps);
  void RecordStep(const meta::StepReport& report, const RoundTimings& round);
  // A checkpoint file reached the disk (writer thread).
  void RecordCheckpoint(int64_t bytes, absl::Duration write_time);
  // The loop spent `serialising` preparing a checkpoint for the writer (loop thread).
  void RecordCheckpointPhase(absl::Duration serialising);
  void AddTasksCompleted(int64_t tasks);

 private:
  friend class CoordinatorMetrics;
  struct Series;
  explicit JobMetrics(CoordinatorMetrics& owner, const std::string& job_id);
  void Remove();

  CoordinatorMetrics& owner_;
  const std::string job_id_;
  std::unique_ptr<Series> series_;
  absl::Time last_step_end_ = absl::InfinitePast();
  absl::Mutex workers_mu_;  // the per-worker step gauges change membership each step
  std::map<std::string, prometheus::Gauge*> step_workers_ ABSL_GUARDED_BY(workers_mu_);
};

class CoordinatorMetrics final : public prometheus::Collectable {
 public:
  CoordinatorMetrics(absl::Duration retention, Clock* clock);
  ~CoordinatorMetrics() override;

  // The series of `job_id`, created on first use; valid until RetireJob's retention has
  // passed and a sweep removed them.
  JobMetrics& Job(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);
  // The job finished: its series go after the retention.
  void RetireJob(const std::string& job_id) ABSL_LOCKS_EXCLUDED(mu_);

  // Service-wide. Thread-safe; none blocks beyond a short lock.
  void SetWorkersByDevice(const std::map<std::string, int64_t>& workers) ABSL_LOCKS_EXCLUDED(mu_);
  void SetJobsByState(const std::map<v1::JobState, int64_t>& jobs, int64_t queued_jobs);
  void ResultRejected(RejectReason reason);
  void StaleMessage();
  void WorkerQuarantined();
  void SpeculativeTasks(int64_t tasks);
  void AssignmentCancelled();
  void TasksReassigned(ReassignReason reason, int64_t tasks);
  void AssignmentSent();
  void SessionOpened();
  void SessionLost();
  void BytesReceived(int64_t bytes);
  void BytesSent(int64_t bytes);
  // One completed assignment of `tasks` tasks took `elapsed` from sending to completion.
  void WorkerTaskLatency(const std::string& worker, absl::Duration elapsed, int64_t tasks)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The worker's session ended: its per-worker series go after the retention.
  void RetireWorker(const std::string& worker) ABSL_LOCKS_EXCLUDED(mu_);

  // Totals, for tests and logs.
  int64_t rejected_results() const;
  int64_t stale_messages() const;
  int64_t worker_quarantines() const;
  int64_t speculative_tasks() const;
  int64_t assignments_cancelled() const;
  int64_t reassigned_tasks() const;
  int64_t assignments_sent() const;

  // Removes the series whose retention has passed.
  void Sweep() ABSL_LOCKS_EXCLUDED(mu_);
  // prometheus::Collectable: sweeps, then collects the registry.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  friend class JobMetrics;
  struct Families;

  const absl::Duration retention_;
  Clock& clock_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> families_;

  mutable absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<JobMetrics>> jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> retired_jobs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Histogram*> worker_latency_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Time> retired_workers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Gauge*> workers_by_device_ ABSL_GUARDED_BY(mu_);
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_COORDINATOR_METRICS_H_
