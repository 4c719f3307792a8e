#include "coordinator/coordinator_metrics.h"

#include <algorithm>
#include <array>
#include <utility>

namespace metatrain::coordinator {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;
using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

constexpr std::array<v1::JobState, 5> kStates = {v1::QUEUED, v1::RUNNING, v1::SUCCEEDED, v1::FAILED,
                                                 v1::CANCELLED};
constexpr std::array<const char*, 4> kRejectReasons = {"malformed", "non_finite", "not_owner",
                                                       "worker_error"};
constexpr std::array<const char*, 4> kReassignReasons = {"worker_lost", "deadline", "rejected",
                                                         "needs_setup"};
enum Phase { kDispatch, kWaitWorkers, kDecode, kAggregate, kOptimizer, kValidation, kCheckpoint };
constexpr std::array<const char*, 7> kPhases = {
    "dispatch", "wait_workers", "decode", "aggregate", "optimizer", "validation", "checkpoint"};

// From a millisecond (aggregating a small model) to minutes (a slow worker's round).
Histogram::BucketBoundaries SecondsBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,    1,     2.5,    5,     10,   25,    60,   120, 300};
}

}  // namespace

const char* ReasonLabel(RejectReason reason) { return kRejectReasons[static_cast<size_t>(reason)]; }
const char* ReasonLabel(ReassignReason reason) {
  return kReassignReasons[static_cast<size_t>(reason)];
}

struct CoordinatorMetrics::Families {
  explicit Families(prometheus::Registry& r)
      : job_state(BuildGauge()
                      .Name("metatrain_job_state")
                      .Help("1 for the job's current state, 0 for the others.")
                      .Register(r)),
        steps_completed(BuildGauge()
                            .Name("metatrain_job_meta_steps_completed")
                            .Help("Meta-steps the job has completed.")
                            .Register(r)),
        steps_planned(BuildGauge()
                          .Name("metatrain_job_meta_steps_planned")
                          .Help("Meta-steps the job will run unless it stops early.")
                          .Register(r)),
        train_loss(BuildGauge()
                       .Name("metatrain_job_train_loss")
                       .Help("Last step's mean query loss after adaptation over the meta-batch.")
                       .Register(r)),
        train_accuracy(BuildGauge()
                           .Name("metatrain_job_train_accuracy")
                           .Help("Last step's mean query accuracy after adaptation (0 to 1).")
                           .Register(r)),
        validation_loss_before(
            BuildGauge()
                .Name("metatrain_job_validation_loss_before_adaptation")
                .Help("Last meta-validation's mean query loss of the meta-parameters.")
                .Register(r)),
        validation_loss_after(BuildGauge()
                                  .Name("metatrain_job_validation_loss_after_adaptation")
                                  .Help("Last meta-validation's mean query loss after adaptation.")
                                  .Register(r)),
        validation_accuracy_before(
            BuildGauge()
                .Name("metatrain_job_validation_accuracy_before_adaptation")
                .Help("Last meta-validation's mean query accuracy of the meta-parameters.")
                .Register(r)),
        validation_accuracy_after(
            BuildGauge()
                .Name("metatrain_job_validation_accuracy_after_adaptation")
                .Help("Last meta-validation's mean query accuracy after adaptation.")
                .Register(r)),
        best_loss(BuildGauge()
                      .Name("metatrain_job_best_validation_loss")
                      .Help("The best meta-validation's query loss after adaptation.")
                      .Register(r)),
        best_accuracy(BuildGauge()
                          .Name("metatrain_job_best_validation_accuracy")
                          .Help("The best meta-validation's query accuracy after adaptation.")
                          .Register(r)),
        best_step(BuildGauge()
                      .Name("metatrain_job_best_step")
                      .Help("Meta-step of the best meta-validation (the parameters of best.pt).")
                      .Register(r)),
        learning_rate(BuildGauge()
                          .Name("metatrain_job_learning_rate")
                          .Help("Outer (meta) learning rate of the last step.")
                          .Register(r)),
        tasks_completed(BuildCounter()
                            .Name("metatrain_job_tasks_completed_total")
                            .Help("Tasks computed for the job, training and evaluation.")
                            .Register(r)),
        tasks_per_second(BuildGauge()
                             .Name("metatrain_job_tasks_per_second")
                             .Help("Training tasks per second of the last step.")
                             .Register(r)),
        step_seconds(BuildHistogram()
                         .Name("metatrain_job_step_seconds")
                         .Help("Wall time of one meta-step, validation and checkpoints included.")
                         .Register(r)),
        step_phase_seconds(BuildHistogram()
                               .Name("metatrain_job_step_phase_seconds")
                               .Help("Time of one meta-step spent in each phase.")
                               .Register(r)),
        step_worker_seconds(
            BuildGauge()
                .Name("metatrain_job_step_worker_seconds")
                .Help("Last training step: seconds from dispatch to the worker's last result.")
                .Register(r)),
        checkpoint_write_seconds(BuildHistogram()
                                     .Name("metatrain_job_checkpoint_write_seconds")
                                     .Help("Time to serialise and write one checkpoint file.")
                                     .Register(r)),
        checkpoint_bytes(BuildGauge()
                             .Name("metatrain_job_checkpoint_bytes")
                             .Help("Size of the last checkpoint file written, in bytes.")
                             .Register(r)),
        checkpoint_written_bytes(BuildCounter()
                                     .Name("metatrain_job_checkpoint_written_bytes_total")
                                     .Help("Bytes of checkpoint files written.")
                                     .Register(r)),
        workers(BuildGauge()
                    .Name("metatrain_coordinator_workers")
                    .Help("Connected workers, by the device they compute on.")
                    .Register(r)),
        jobs(BuildGauge()
                 .Name("metatrain_coordinator_jobs")
                 .Help("Jobs the coordinator knows, by state.")
                 .Register(r)),
        queue_length(BuildGauge()
                         .Name("metatrain_coordinator_queue_length")
                         .Help("Jobs waiting for a free run slot.")
                         .Register(r)),
        rejected(BuildCounter()
                     .Name("metatrain_coordinator_rejected_results_total")
                     .Help("Worker results refused (and recomputed elsewhere), by reason.")
                     .Register(r)),
        stale(BuildCounter()
                  .Name("metatrain_coordinator_stale_messages_total")
                  .Help("Results for assignments no longer in flight, dropped.")
                  .Register(r)),
        quarantines(BuildCounter()
                        .Name("metatrain_coordinator_worker_quarantines_total")
                        .Help("Times a worker was left out of every job after failing again "
                              "and again.")
                        .Register(r)),
        speculative(BuildCounter()
                        .Name("metatrain_coordinator_speculative_tasks_total")
                        .Help("Tasks copied to an idle worker while a slower one still had "
                              "them (the first result wins).")
                        .Register(r)),
        cancelled(BuildCounter()
                      .Name("metatrain_coordinator_assignments_cancelled_total")
                      .Help("Assignments whose result was no longer needed (a copy won, the "
                            "round ended, the deadline passed) and that the worker was told "
                            "to cancel.")
                      .Register(r)),
        reassigned(BuildCounter()
                       .Name("metatrain_coordinator_reassigned_tasks_total")
                       .Help("Tasks handed to another worker, by reason.")
                       .Register(r)),
        assignments(BuildCounter()
                        .Name("metatrain_coordinator_assignments_sent_total")
                        .Help("Assignments sent to workers.")
                        .Register(r)),
        sessions_opened(BuildCounter()
                            .Name("metatrain_coordinator_worker_sessions_opened_total")
                            .Help("Worker sessions accepted.")
                            .Register(r)),
        sessions_lost(BuildCounter()
                          .Name("metatrain_coordinator_worker_sessions_lost_total")
                          .Help("Worker sessions that ended while the coordinator ran.")
                          .Register(r)),
        received_bytes(BuildCounter()
                           .Name("metatrain_coordinator_received_bytes_total")
                           .Help("Protobuf bytes received on worker sessions.")
                           .Register(r)),
        sent_bytes(BuildCounter()
                       .Name("metatrain_coordinator_sent_bytes_total")
                       .Help("Protobuf bytes sent on worker sessions.")
                       .Register(r)),
        worker_task_seconds(
            BuildHistogram()
                .Name("metatrain_coordinator_worker_task_seconds")
                .Help("Per assignment: seconds from sending it to its completion, per task.")
                .Register(r)),
        queue_length_gauge(queue_length.Add({})),
        stale_counter(stale.Add({})),
        quarantines_counter(quarantines.Add({})),
        speculative_counter(speculative.Add({})),
        cancelled_counter(cancelled.Add({})),
        assignments_counter(assignments.Add({})),
        sessions_opened_counter(sessions_opened.Add({})),
        sessions_lost_counter(sessions_lost.Add({})),
        received_bytes_counter(received_bytes.Add({})),
        sent_bytes_counter(sent_bytes.Add({})) {
    // Every bounded label value exists from the start, at 0: a rate over a counter that
    // has never moved is 0, not "no data".
    for (size_t i = 0; i < kStates.size(); ++i) {
      jobs_by_state[i] = &jobs.Add({{"state", v1::JobState_Name(kStates[i])}});
    }
    for (size_t i = 0; i < kRejectReasons.size(); ++i) {
      rejected_by_reason[i] = &rejected.Add({{"reason", kRejectReasons[i]}});
    }
    for (size_t i = 0; i < kReassignReasons.size(); ++i) {
      reassigned_by_reason[i] = &reassigned.Add({{"reason", kReassignReasons[i]}});
    }
  }

  Family<Gauge>& job_state;
  Family<Gauge>& steps_completed;
  Family<Gauge>& steps_planned;
  Family<Gauge>& train_loss;
  Family<Gauge>& train_accuracy;
  Family<Gauge>& validation_loss_before;
  Family<Gauge>& validation_loss_after;
  Family<Gauge>& validation_accuracy_before;
  Family<Gauge>& validation_accuracy_after;
  Family<Gauge>& best_loss;
  Family<Gauge>& best_accuracy;
  Family<Gauge>& best_step;
  Family<Gauge>& learning_rate;
  Family<Counter>& tasks_completed;
  Family<Gauge>& tasks_per_second;
  Family<Histogram>& step_seconds;
  Family<Histogram>& step_phase_seconds;
  Family<Gauge>& step_worker_seconds;
  Family<Histogram>& checkpoint_write_seconds;
  Family<Gauge>& checkpoint_bytes;
  Family<Counter>& checkpoint_written_bytes;

  Family<Gauge>& workers;
  Family<Gauge>& jobs;
  Family<Gauge>& queue_length;
  Family<Counter>& rejected;
  Family<Counter>& stale;
  Family<Counter>& quarantines;
  Family<Counter>& speculative;
  Family<Counter>& cancelled;
  Family<Counter>& reassigned;
  Family<Counter>& assignments;
  Family<Counter>& sessions_opened;
  Family<Counter>& sessions_lost;
  Family<Counter>& received_bytes;
  Family<Counter>& sent_bytes;
  Family<Histogram>& worker_task_seconds;

  Gauge& queue_length_gauge;
  Counter& stale_counter;
  Counter& quarantines_counter;
  Counter& speculative_counter;
  Counter& cancelled_counter;
  Counter& assignments_counter;
  Counter& sessions_opened_counter;
  Counter& sessions_lost_counter;
  Counter& received_bytes_counter;
  Counter& sent_bytes_counter;
  std::array<Gauge*, kStates.size()> jobs_by_state{};
  std::array<Counter*, kRejectReasons.size()> rejected_by_reason{};
  std::array<Counter*, kReassignReasons.size()> reassigned_by_reason{};
};

// A job's series, resolved once when the job's metrics are created.
struct JobMetrics::Series {
  Series(CoordinatorMetrics::Families& f, const prometheus::Labels& job)
      : steps_completed(f.steps_completed.Add(job)),
        steps_planned(f.steps_planned.Add(job)),
        train_loss(f.train_loss.Add(job)),
        validation_loss_before(f.validation_loss_before.Add(job)),
        validation_loss_after(f.validation_loss_after.Add(job)),
        best_loss(f.best_loss.Add(job)),
        best_step(f.best_step.Add(job)),
        learning_rate(f.learning_rate.Add(job)),
        tasks_completed(f.tasks_completed.Add(job)),
        tasks_per_second(f.tasks_per_second.Add(job)),
        step_seconds(f.step_seconds.Add(job, SecondsBuckets())),
        checkpoint_write_seconds(f.checkpoint_write_seconds.Add(job, SecondsBuckets())),
        checkpoint_bytes(f.checkpoint_bytes.Add(job)),
        checkpoint_written_bytes(f.checkpoint_written_bytes.Add(job)) {
    for (size_t i = 0; i < kStates.size(); ++i) {
      prometheus::Labels labels = job;
      labels["state"] = v1::JobState_Name(kStates[i]);
      state[i] = &f.job_state.Add(labels);
    }
    for (size_t i = 0; i < kPhases.size(); ++i) {
      prometheus::Labels labels = job;
      labels["phase"] = kPhases[i];
      phase[i] = &f.step_phase_seconds.Add(labels, SecondsBuckets());
    }
  }

  Gauge& steps_completed;
  Gauge& steps_planned;
  Gauge& train_loss;
  Gauge& validation_loss_before;
  Gauge& validation_loss_after;
  Gauge& best_loss;
  Gauge& best_step;
  Gauge& learning_rate;
  Counter& tasks_completed;
  Gauge& tasks_per_second;
  Histogram& step_seconds;
  Histogram& checkpoint_write_seconds;
  Gauge& checkpoint_bytes;
  Counter& checkpoint_written_bytes;
  std::array<Gauge*, kStates.size()> state{};
  std::array<Histogram*, kPhases.size()> phase{};
  // Classification jobs only: created at their first value, so a regression job has no
  // accuracy series rather than a meaningless one.
  Gauge* train_accuracy = nullptr;
  Gauge* validation_accuracy_before = nullptr;
  Gauge* validation_accuracy_after = nullptr;
  Gauge* best_accuracy = nullptr;
};

JobMetrics::JobMetrics(CoordinatorMetrics& owner, const std::string& job_id)
    : owner_(owner),
      job_id_(job_id),
      series_(std::make_unique<Series>(*owner.families_, prometheus::Labels{{"job_id", job_id}})) {}

void JobMetrics::SetState(v1::JobState state) {
  for (size_t i = 0; i < kStates.size(); ++i) series_->state[i]->Set(kStates[i] == state ? 1 : 0);
}

void JobMetrics::SetPlannedSteps(int64_t steps) {
  series_->steps_planned.Set(static_cast<double>(steps));
}

void JobMetrics::AddTasksCompleted(int64_t tasks) {
  series_->tasks_completed.Increment(static_cast<double>(tasks));
}

void JobMetrics::RecordStep(const meta::StepReport& report, const RoundTimings& round) {
  Series& s = *series_;
  CoordinatorMetrics::Families& f = *owner_.families_;
  // Accuracy series appear at a classification job's first value; later steps only set them.
  auto accuracy_gauge = [&](Gauge*& gauge, Family<Gauge>& family) -> Gauge& {
    if (gauge == nullptr) gauge = &family.Add({{"job_id", job_id_}});
    return *gauge;
  };
  s.steps_completed.Set(static_cast<double>(report.step));
  s.train_loss.Set(report.train_loss);
  if (report.train_accuracy >= 0) {
    accuracy_gauge(s.train_accuracy, f.train_accuracy).Set(report.train_accuracy);
  }
  s.learning_rate.Set(report.lr);
  s.tasks_per_second.Set(report.tasks_per_second);
  if (report.validation) {
    const meta::EvaluationSummary& v = *report.validation;
    s.validation_loss_before.Set(v.loss_before.mean);
    s.validation_loss_after.Set(v.loss_after.mean);
    const bool classification = v.accuracy_after.n > 0;
    if (classification) {
      accuracy_gauge(s.validation_accuracy_before, f.validation_accuracy_before)
          .Set(v.accuracy_before.mean);
      accuracy_gauge(s.validation_accuracy_after, f.validation_accuracy_after)
          .Set(v.accuracy_after.mean);
    }
    if (report.new_best) {
      s.best_loss.Set(v.loss_after.mean);
      s.best_step.Set(static_cast<double>(report.step));
      if (classification) {
        accuracy_gauge(s.best_accuracy, f.best_accuracy).Set(v.accuracy_after.mean);
      }
    }
  }

  s.phase[kDispatch]->Observe(absl::ToDoubleSeconds(round.dispatch));
  s.phase[kWaitWorkers]->Observe(absl::ToDoubleSeconds(round.wait_workers));
  s.phase[kDecode]->Observe(absl::ToDoubleSeconds(round.decode));
  s.phase[kAggregate]->Observe(absl::ToDoubleSeconds(report.timings.aggregate));
  s.phase[kOptimizer]->Observe(absl::ToDoubleSeconds(report.timings.optimizer));
  if (report.validation) {
    s.phase[kValidation]->Observe(absl::ToDoubleSeconds(report.timings.validation));
  }
  // A step's wall time runs from the end of the previous one, so that the previous step's
  // checkpoint writes (after its report) are counted too.
  const absl::Time now = owner_.clock_.Now();
  const absl::Duration own = report.timings.training_round + report.timings.aggregate +
                             report.timings.optimizer + report.timings.validation;
  const absl::Duration step =
      last_step_end_ == absl::InfinitePast() ? own : std::max(own, now - last_step_end_);
  last_step_end_ = now;
  s.step_seconds.Observe(absl::ToDoubleSeconds(step));

  absl::MutexLock lock(&workers_mu_);
  for (auto it = step_workers_.begin(); it != step_workers_.end();) {
    if (round.worker_finish.count(it->first)) {
      ++it;
    } else {
      f.step_worker_seconds.Remove(it->second);
      it = step_workers_.erase(it);
    }
  }
  for (const auto& [worker, finish] : round.worker_finish) {
    prometheus::Gauge*& gauge = step_workers_[worker];
    if (gauge == nullptr)
      gauge = &f.step_worker_seconds.Add({{"job_id", job_id_}, {"worker", worker}});
    gauge->Set(absl::ToDoubleSeconds(finish));
  }
}

void JobMetrics::RecordCheckpointPhase(absl::Duration serialising) {
  series_->phase[kCheckpoint]->Observe(absl::ToDoubleSeconds(serialising));
}

void JobMetrics::RecordCheckpoint(int64_t bytes, absl::Duration write_time) {
  series_->checkpoint_write_seconds.Observe(absl::ToDoubleSeconds(write_time));
  series_->checkpoint_bytes.Set(static_cast<double>(bytes));
  series_->checkpoint_written_bytes.Increment(static_cast<double>(bytes));
}

void JobMetrics::Remove() {
  Series& s = *series_;
  CoordinatorMetrics::Families& f = *owner_.families_;
  for (Gauge* gauge : s.state) f.job_state.Remove(gauge);
  for (Histogram* histogram : s.phase) f.step_phase_seconds.Remove(histogram);
  f.steps_completed.Remove(&s.steps_completed);
  f.steps_planned.Remove(&s.steps_planned);
  f.train_loss.Remove(&s.train_loss);
  f.validation_loss_before.Remove(&s.validation_loss_before);
  f.validation_loss_after.Remove(&s.validation_loss_after);
  f.best_loss.Remove(&s.best_loss);
  f.best_step.Remove(&s.best_step);
  f.learning_rate.Remove(&s.learning_rate);
  f.tasks_completed.Remove(&s.tasks_completed);
  f.tasks_per_second.Remove(&s.tasks_per_second);
  f.step_seconds.Remove(&s.step_seconds);
  f.checkpoint_write_seconds.Remove(&s.checkpoint_write_seconds);
  f.checkpoint_bytes.Remove(&s.checkpoint_bytes);
  f.checkpoint_written_bytes.Remove(&s.checkpoint_written_bytes);
  if (s.train_accuracy) f.train_accuracy.Remove(s.train_accuracy);
  if (s.validation_accuracy_before)
    f.validation_accuracy_before.Remove(s.validation_accuracy_before);
  if (s.validation_accuracy_after) f.validation_accuracy_after.Remove(s.validation_accuracy_after);
  if (s.best_accuracy) f.best_accuracy.Remove(s.best_accuracy);
  absl::MutexLock lock(&workers_mu_);
  for (const auto& [worker, gauge] : step_workers_) f.step_worker_seconds.Remove(gauge);
  step_workers_.clear();
}

// ---------------------------------------------------------------------------------------

CoordinatorMetrics::CoordinatorMetrics(absl::Duration retention, Clock* clock)
    : retention_(retention),
      clock_(clock != nullptr ? *clock : *Clock::Real()),
      registry_(std::make_shared<prometheus::Registry>()),
      families_(std::make_unique<Families>(*registry_)) {}

CoordinatorMetrics::~CoordinatorMetrics() = default;

JobMetrics& CoordinatorMetrics::Job(const std::string& job_id) {
  Sweep();
  absl::MutexLock lock(&mu_);
  std::unique_ptr<JobMetrics>& metrics = jobs_[job_id];
  if (metrics == nullptr) metrics.reset(new JobMetrics(*this, job_id));
  retired_jobs_.erase(job_id);
  return *metrics;
}

void CoordinatorMetrics::RetireJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  if (jobs_.count(job_id)) retired_jobs_[job_id] = clock_.Now() + retention_;
}

void CoordinatorMetrics::RetireWorker(const std::string& worker) {
  absl::MutexLock lock(&mu_);
  if (worker_latency_.count(worker)) retired_workers_[worker] = clock_.Now() + retention_;
}

void CoordinatorMetrics::Sweep() {
  const absl::Time now = clock_.Now();
  std::vector<std::unique_ptr<JobMetrics>> expired;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = retired_jobs_.begin(); it != retired_jobs_.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      auto job = jobs_.find(it->first);
      expired.push_back(std::move(job->second));
      jobs_.erase(job);
      it = retired_jobs_.erase(it);
    }
    for (auto it = retired_workers_.begin(); it != retired_workers_.end();) {
      if (it->second > now) {
        ++it;
        continue;
      }
      families_->worker_task_seconds.Remove(worker_latency_[it->first]);
      worker_latency_.erase(it->first);
      it = retired_workers_.erase(it);
    }
  }
  for (auto& job : expired) job->Remove();
}

std::vector<prometheus::MetricFamily> CoordinatorMetrics::Collect() const {
  // Removing expired series is a change to the registry, not to what this object means.
  const_cast<CoordinatorMetrics*>(this)->Sweep();
  return registry_->Collect();
}

void CoordinatorMetrics::SetWorkersByDevice(const std::map<std::string, int64_t>& workers) {
  absl::MutexLock lock(&mu_);
  for (auto& [device, gauge] : workers_by_device_) {
    auto it = workers.find(device);
    gauge->Set(it == workers.end() ? 0 : static_cast<double>(it->second));
  }
  for (const auto& [device, count] : workers) {
    prometheus::Gauge*& gauge = workers_by_device_[device];
    if (gauge == nullptr) gauge = &families_->workers.Add({{"device", device}});
    gauge->Set(static_cast<double>(count));
  }
}

void CoordinatorMetrics::SetJobsByState(const std::map<v1::JobState, int64_t>& jobs,
                                        int64_t queued_jobs) {
  for (size_t i = 0; i < kStates.size(); ++i) {
    auto it = jobs.find(kStates[i]);
    families_->jobs_by_state[i]->Set(it == jobs.end() ? 0 : static_cast<double>(it->second));
  }
  families_->queue_length_gauge.Set(static_cast<double>(queued_jobs));
}

void CoordinatorMetrics::ResultRejected(RejectReason reason) {
  families_->rejected_by_reason[static_cast<size_t>(reason)]->Increment();
}
void CoordinatorMetrics::StaleMessage() { families_->stale_counter.Increment(); }
void CoordinatorMetrics::WorkerQuarantined() { families_->quarantines_counter.Increment(); }
void CoordinatorMetrics::SpeculativeTasks(int64_t tasks) {
  families_->speculative_counter.Increment(static_cast<double>(tasks));
}
void CoordinatorMetrics::AssignmentCancelled() { families_->cancelled_counter.Increment(); }
int64_t CoordinatorMetrics::assignments_cancelled() const {
  return static_cast<int64_t>(families_->cancelled_counter.Value());
}
int64_t CoordinatorMetrics::speculative_tasks() const {
  return static_cast<int64_t>(families_->speculative_counter.Value());
}
void CoordinatorMetrics::TasksReassigned(ReassignReason reason, int64_t tasks) {
  families_->reassigned_by_reason[static_cast<size_t>(reason)]->Increment(
      static_cast<double>(tasks));
}
void CoordinatorMetrics::AssignmentSent() { families_->assignments_counter.Increment(); }
void CoordinatorMetrics::SessionOpened() { families_->sessions_opened_counter.Increment(); }
void CoordinatorMetrics::SessionLost() { families_->sessions_lost_counter.Increment(); }
void CoordinatorMetrics::BytesReceived(int64_t bytes) {
  families_->received_bytes_counter.Increment(static_cast<double>(bytes));
}
void CoordinatorMetrics::BytesSent(int64_t bytes) {
  families_->sent_bytes_counter.Increment(static_cast<double>(bytes));
}

void CoordinatorMetrics::WorkerTaskLatency(const std::string& worker, absl::Duration elapsed,
                                           int64_t tasks) {
  if (tasks <= 0) return;
  absl::MutexLock lock(&mu_);
  prometheus::Histogram*& histogram = worker_latency_[worker];
  if (histogram == nullptr) {
    histogram = &families_->worker_task_seconds.Add({{"worker", worker}}, SecondsBuckets());
  }
  retired_workers_.erase(worker);
  histogram->Observe(absl::ToDoubleSeconds(elapsed) / static_cast<double>(tasks));
}

namespace {
template <typename Counters>
int64_t Sum(const Counters& counters) {
  double total = 0;
  for (const prometheus::Counter* counter : counters) total += counter->Value();
  return static_cast<int64_t>(total);
}
}  // namespace

int64_t CoordinatorMetrics::rejected_results() const { return Sum(families_->rejected_by_reason); }
int64_t CoordinatorMetrics::worker_quarantines() const {
  return static_cast<int64_t>(families_->quarantines_counter.Value());
}
int64_t CoordinatorMetrics::stale_messages() const {
  return static_cast<int64_t>(families_->stale_counter.Value());
}
int64_t CoordinatorMetrics::reassigned_tasks() const {
  return Sum(families_->reassigned_by_reason);
}
int64_t CoordinatorMetrics::assignments_sent() const {
  return static_cast<int64_t>(families_->assignments_counter.Value());
}

}  // namespace metatrain::coordinator
