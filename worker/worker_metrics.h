#ifndef METATRAIN_WORKER_WORKER_METRICS_H_
#define METATRAIN_WORKER_WORKER_METRICS_H_

// A worker's Prometheus series (docs/operations.md, "Worker"). Recording is an atomic add
// or a histogram observation per assignment; the only series that change labels (the
// current job) do so at most once per assignment.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace metatrain::worker {

class WorkerMetrics {
 public:
  explicit WorkerMetrics(const std::string& device);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void SessionStarted();  // a session got its Welcome
  void SessionEnded();
  // One assignment of `job_id` finished; `tasks` counts only when it succeeded.
  void AssignmentComputed(const std::string& job_id, int64_t tasks, absl::Duration compute)
      ABSL_LOCKS_EXCLUDED(mu_);
  void DatasetLoaded(absl::Duration took);
  // A batch of episodes sampled ahead of its assignment (NOTE [Episode prefetch],
  // inner_loop_runner.h): used by the next assignment, or discarded.
  void PrefetchUsed();
  void PrefetchDiscarded();
  void DatasetReused();
  void BytesSent(int64_t bytes);
  void BytesReceived(int64_t bytes);

  int64_t tasks_computed() const;
  int64_t reconnects() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge& connected_;
  prometheus::Counter& reconnects_;
  prometheus::Counter& tasks_;
  prometheus::Histogram& inner_loop_seconds_;
  prometheus::Histogram& dataset_load_seconds_;
  prometheus::Counter& cache_hits_;
  prometheus::Counter& cache_misses_;
  prometheus::Counter& prefetch_used_;
  prometheus::Counter& prefetch_discarded_;
  prometheus::Counter& sent_bytes_;
  prometheus::Counter& received_bytes_;
  prometheus::Family<prometheus::Gauge>& current_job_family_;
  bool welcomed_once_ = false;  // session thread only

  absl::Mutex mu_;
  std::string current_job_ ABSL_GUARDED_BY(mu_);
  prometheus::Gauge* current_job_gauge_ ABSL_GUARDED_BY(mu_) = nullptr;
};

}  // namespace metatrain::worker

#endif  // METATRAIN_WORKER_WORKER_METRICS_H_
