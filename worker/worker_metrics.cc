#include "worker/worker_metrics.h"

namespace metatrain::worker {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

prometheus::Histogram::BucketBoundaries SecondsBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,    1,     2.5,    5,     10,   25,    60,   120, 300};
}

}  // namespace

WorkerMetrics::WorkerMetrics(const std::string& device)
    : registry_(std::make_shared<prometheus::Registry>()),
      connected_(BuildGauge()
                     .Name("metatrain_worker_connected")
                     .Help("1 while a session with the coordinator is open.")
                     .Register(*registry_)
                     .Add({})),
      reconnects_(BuildCounter()
                      .Name("metatrain_worker_reconnects_total")
                      .Help("Sessions opened after the first.")
                      .Register(*registry_)
                      .Add({})),
      tasks_(BuildCounter()
                 .Name("metatrain_worker_tasks_computed_total")
                 .Help("Tasks whose results were sent to the coordinator.")
                 .Register(*registry_)
                 .Add({})),
      inner_loop_seconds_(BuildHistogram()
                              .Name("metatrain_worker_inner_loop_seconds")
                              .Help("Compute time of one assignment's inner loops (batched).")
                              .Register(*registry_)
                              .Add({}, SecondsBuckets())),
      dataset_load_seconds_(BuildHistogram()
                                .Name("metatrain_worker_dataset_load_seconds")
                                .Help("Time to set up a job: load its dataset and build its model.")
                                .Register(*registry_)
                                .Add({}, SecondsBuckets())),
      cache_hits_(BuildCounter()
                      .Name("metatrain_worker_dataset_cache_hits_total")
                      .Help("Job setups served by the dataset already loaded.")
                      .Register(*registry_)
                      .Add({})),
      cache_misses_(BuildCounter()
                        .Name("metatrain_worker_dataset_cache_misses_total")
                        .Help("Job setups that had to load the dataset.")
                        .Register(*registry_)
                        .Add({})),
      prefetch_used_(BuildCounter()
                         .Name("metatrain_worker_prefetched_batches_total")
                         .Help("Episode batches sampled ahead of their assignment, by outcome.")
                         .Register(*registry_)
                         .Add({{"outcome", "used"}})),
      prefetch_discarded_(
          BuildCounter()
              .Name("metatrain_worker_prefetched_batches_total")
              .Help("Episode batches sampled ahead of their assignment, by outcome.")
              .Register(*registry_)
              .Add({{"outcome", "discarded"}})),
      sent_bytes_(BuildCounter()
                      .Name("metatrain_worker_sent_bytes_total")
                      .Help("Protobuf bytes sent to the coordinator.")
                      .Register(*registry_)
                      .Add({})),
      received_bytes_(BuildCounter()
                          .Name("metatrain_worker_received_bytes_total")
                          .Help("Protobuf bytes received from the coordinator.")
                          .Register(*registry_)
                          .Add({})),
      current_job_family_(BuildGauge()
                              .Name("metatrain_worker_current_job")
                              .Help("1: the job of the worker's last assignment.")
                              .Register(*registry_)) {
  BuildGauge()
      .Name("metatrain_worker_device")
      .Help("1: the device this worker computes on.")
      .Register(*registry_)
      .Add({{"device", device}})
      .Set(1);
}

void WorkerMetrics::PrefetchUsed() { prefetch_used_.Increment(); }

void WorkerMetrics::PrefetchDiscarded() { prefetch_discarded_.Increment(); }

void WorkerMetrics::SessionStarted() {
  if (welcomed_once_) reconnects_.Increment();
  welcomed_once_ = true;
  connected_.Set(1);
}

void WorkerMetrics::SessionEnded() { connected_.Set(0); }

void WorkerMetrics::AssignmentComputed(const std::string& job_id, int64_t tasks,
                                       absl::Duration compute) {
  tasks_.Increment(static_cast<double>(tasks));
  inner_loop_seconds_.Observe(absl::ToDoubleSeconds(compute));
  absl::MutexLock lock(&mu_);
  if (job_id == current_job_ && current_job_gauge_ != nullptr) return;
  if (current_job_gauge_ != nullptr) current_job_family_.Remove(current_job_gauge_);
  current_job_ = job_id;
  current_job_gauge_ = &current_job_family_.Add({{"job_id", job_id}});
  current_job_gauge_->Set(1);
}

void WorkerMetrics::DatasetLoaded(absl::Duration took) {
  cache_misses_.Increment();
  dataset_load_seconds_.Observe(absl::ToDoubleSeconds(took));
}

void WorkerMetrics::DatasetReused() { cache_hits_.Increment(); }

void WorkerMetrics::BytesSent(int64_t bytes) { sent_bytes_.Increment(static_cast<double>(bytes)); }

void WorkerMetrics::BytesReceived(int64_t bytes) {
  received_bytes_.Increment(static_cast<double>(bytes));
}

int64_t WorkerMetrics::tasks_computed() const { return static_cast<int64_t>(tasks_.Value()); }
int64_t WorkerMetrics::reconnects() const { return static_cast<int64_t>(reconnects_.Value()); }

}  // namespace metatrain::worker
