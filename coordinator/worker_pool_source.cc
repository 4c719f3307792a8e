#include "coordinator/worker_pool_source.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging/log.h"
#include "common/meta/gradient_groups.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "coordinator/worker_pool_round.h"

namespace metatrain::coordinator {
namespace {

v1::TaskSplit ToProto(meta::Split split) {
  switch (split) {
    case meta::Split::kTrain:
      return v1::TASK_SPLIT_TRAIN;
    case meta::Split::kValidation:
      return v1::TASK_SPLIT_VALIDATION;
    case meta::Split::kTest:
      return v1::TASK_SPLIT_TEST;
  }
  return v1::TASK_SPLIT_TRAIN;  // unreachable: the switch covers every Split
}

}  // namespace

WorkerPoolSource::WorkerPoolSource(std::string job_id, const meta::JobContext& job,
                                   WorkerPoolOptions options, Hooks hooks)
    : job_id_(std::move(job_id)),
      job_(job),
      options_(std::move(options)),
      hooks_(std::move(hooks)),
      specs_(job.learner->meta_param_specs()),
      clock_(options_.clock != nullptr ? *options_.clock : *Clock::Real()),
      classification_(meta::IsClassificationFamily(job.spec.tasks().family())) {}

WorkerPoolSource::~WorkerPoolSource() = default;

void WorkerPoolSource::PostMessage(const std::string& worker_id, v1::WorkerMessage message) {
  absl::MutexLock lock(&mu_);
  inbox_.push_back(Event{worker_id, std::move(message)});
}

void WorkerPoolSource::WorkersChanged() {
  absl::MutexLock lock(&mu_);
  workers_changed_ = true;
}

void WorkerPoolSource::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
}

void WorkerPoolSource::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

absl::StatusOr<meta::TrainingRound> WorkerPoolSource::ComputeTraining(
    int64_t step, const meta::TensorList& params) {
  Round round;
  round.train = true;
  round.split = v1::TASK_SPLIT_TRAIN;
  round.round = step;
  round.version = step;
  round.params = &params;
  round.num_tasks = static_cast<int64_t>(meta::TrainingKeys(job_.spec, step).size());
  round.group_size = std::max<int64_t>(1, job_.spec.gradient_group_size());
  RETURN_IF_ERROR(RunRound(round));
  last_training_timings_ = std::move(round.timings);
  meta::TrainingRound result;
  result.group_gradients = std::move(round.gradients);
  result.query_loss = std::move(round.loss);
  if (classification_) result.query_accuracy = std::move(round.accuracy);
  return result;
}

absl::StatusOr<meta::EvaluationSummary> WorkerPoolSource::Evaluate(
    const meta::EvaluationRequest& request, const meta::TensorList& params) {
  Round round;
  round.train = false;
  round.split = ToProto(request.split);
  round.round = request.round;
  round.version = request.version;
  round.params = &params;
  round.eval_steps = request.steps;
  round.num_tasks = request.num_tasks;
  RETURN_IF_ERROR(RunRound(round));
  return CatchTorch("evaluation summary", [&] {
    std::vector<double> lb, la, ab, aa;
    for (const auto& m : round.metrics) {
      lb.push_back(m.loss_before());
      la.push_back(m.loss_after());
      ab.push_back(m.accuracy_before());
      aa.push_back(m.accuracy_after());
    }
    auto tensor = [](const std::vector<double>& v) {
      return at::tensor(at::ArrayRef<double>(v), at::kDouble);
    };
    meta::Adaptation adaptation;
    adaptation.loss_before = tensor(lb);
    adaptation.loss_after = tensor(la);
    if (classification_) {
      adaptation.accuracy_before = tensor(ab);
      adaptation.accuracy_after = tensor(aa);
    }
    meta::EvaluationAccumulator accumulator;
    accumulator.Add(adaptation);
    return accumulator.Summary();
  });
}

// ---------------------------------------------------------------------------------------
// Rounds

absl::Status WorkerPoolSource::RunRound(Round& round) {
  round.num_groups = meta::NumGroups(round.num_tasks, round.group_size);
  const int64_t n = round.num_groups;
  round.start = clock_.Now();
  round.completed.assign(n, 0);
  round.attempts.assign(n, 0);
  round.remaining = n;
  if (round.train) {
    round.gradients.assign(n, meta::TensorList());
    round.loss.assign(round.num_tasks, 0.0);
    round.accuracy.assign(round.num_tasks, -1.0);
  } else {
    round.metrics.assign(round.num_tasks, v1::TaskMetrics());
  }
  PickParticipants();
  // One shard per worker free now: a worker that still owes the answer to a cancelled
  // assignment (NOTE [Cancelled assignments]: slow, frozen) would leave its shard to the
  // others, one more assignment each, and that costs a round trip per step.
  // Stragglers on probation (NOTE [Speculative duplicates]) count only when no one else is
  // free.
  const absl::Time now = clock_.Now();
  const int64_t free_workers = std::count_if(participants_.begin(), participants_.end(),
                                             [](const Participant& p) { return !p.busy; });
  const int64_t free_fast =
      std::count_if(participants_.begin(), participants_.end(),
                    [&](const Participant& p) { return !p.busy && !IsStraggler(p.info.id, now); });
  const int64_t shards = std::max<int64_t>(1, free_fast > 0 ? free_fast : free_workers);
  for (int64_t i = 0; i < shards; ++i) {
    const int64_t begin = n * i / shards, end = n * (i + 1) / shards;
    if (end > begin) round.pending.emplace_back(begin, end);
  }

  auto finish = [&](absl::Status status) {
    // Whatever is still in flight belongs to this round only: late results are stale, and
    // the workers still computing them are told to stop (NOTE [Cancelled assignments]).
    std::vector<int64_t> open;
    for (const auto& [id, a] : in_flight_) open.push_back(id);
    for (int64_t id : open) Abandon(round, id);
    for (auto& p : participants_) p.busy = HoldsCancelled(p.info.id);
    return status;
  };
  while (true) {
    if (!round.failure.ok()) return finish(round.failure);
    if (round.remaining == 0) return finish(absl::OkStatus());
    if (participants_.empty()) PickParticipants();
    if (absl::Status waited = CheckWorkerWait(); !waited.ok()) return finish(waited);
    const absl::Time dispatch_start = clock_.Now();
    Dispatch(round);
    if (options_.speculative_duplicates && round.pending.empty()) Speculate(round);
    const absl::Time wait_start = clock_.Now();
    round.timings.dispatch += wait_start - dispatch_start;

    std::deque<Event> events;
    bool changed = false;
    {
      absl::MutexLock lock(&mu_);
      absl::Time deadline = clock_.Now() + options_.poll_interval;
      for (const auto& [id, a] : in_flight_) deadline = std::min(deadline, a->deadline);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !inbox_.empty() || workers_changed_ || cancelled_ || stopped_;
      };
      clock_.AwaitWithDeadline(mu_, absl::Condition(&woken), deadline);
      if (cancelled_) return finish(absl::CancelledError("job cancelled"));
      if (stopped_) return finish(absl::AbortedError("coordinator shutting down"));
      events.swap(inbox_);
      changed = workers_changed_;
      workers_changed_ = false;
    }
    const absl::Time decode_start = clock_.Now();
    round.timings.wait_workers += decode_start - wait_start;
    if (changed) HandleWorkerChanges(round);
    for (auto& event : events) {
      HandleEvent(round, event);
      if (!round.failure.ok()) break;
    }
    CheckDeadlines(round);
    round.timings.decode += clock_.Now() - decode_start;
  }
}

void WorkerPoolSource::PickParticipants() {
  std::vector<WorkerInfo> live = hooks_.live_workers();
  const std::string& device_type = JobDeviceType();
  const size_t connected = live.size();
  live.erase(std::remove_if(live.begin(), live.end(),
                            [&](const WorkerInfo& w) { return w.device_type != device_type; }),
             live.end());
  if (live.empty() && connected > 0 && !reported_device_wait_) {
    LogLine(absl::StrCat("job ", job_id_, " waits for a worker of device type ", device_type,
                         " (resources.device_type): none of the ", connected,
                         " connected worker(s) is"));
  }
  reported_device_wait_ = live.empty() && connected > 0;
  if (hooks_.quarantine != nullptr) {
    const absl::Time now = clock_.Now();
    live.erase(std::remove_if(live.begin(), live.end(),
                              [&](const WorkerInfo& w) {
                                return hooks_.quarantine->IsQuarantined(
                                    QuarantineKey(w.hello.name(), w.id), now);
                              }),
               live.end());
  }
  const int64_t max_workers = job_.spec.resources().max_workers();
  if (max_workers > 0 && static_cast<int64_t>(live.size()) > max_workers) {
    live.resize(max_workers);
  }
  participants_.clear();
  std::set<std::string> ids;
  for (auto& info : live) {
    ids.insert(info.id);
    const bool busy = HoldsCancelled(info.id);
    participants_.push_back(Participant{std::move(info), busy});
  }
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    it = ids.count(it->first) ? std::next(it) : sessions_.erase(it);
  }
  ReportWorkers();
}

const std::string& WorkerPoolSource::JobDeviceType() const {
  // NormalizeJobSpec fills the type; an empty one (a spec built by hand) means cpu.
  static const std::string* const kCpu = new std::string("cpu");
  const std::string& type = job_.spec.resources().device_type();
  return type.empty() ? *kCpu : type;
}

absl::Status WorkerPoolSource::CheckWorkerWait() {
  if (!participants_.empty() || !in_flight_.empty()) {
    no_worker_since_ = absl::InfinitePast();
    return absl::OkStatus();
  }
  const absl::Time now = clock_.Now();
  if (no_worker_since_ == absl::InfinitePast()) no_worker_since_ = now;
  if (options_.no_worker_timeout <= absl::ZeroDuration() ||
      now - no_worker_since_ < options_.no_worker_timeout) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(
      absl::StrCat("no live worker of device type ", JobDeviceType(), " for ",
                   absl::FormatDuration(options_.no_worker_timeout), " (--no_worker_timeout)"));
}

void WorkerPoolSource::ReportWorkers() {
  const int32_t count = static_cast<int32_t>(participants_.size());
  if (hooks_.workers_changed) hooks_.workers_changed(count);
}

void WorkerPoolSource::Dispatch(Round& round) {
  bool lost = false;
  const absl::Time now = clock_.Now();
  const bool others_can =
      std::any_of(participants_.begin(), participants_.end(),
                  [&](const Participant& p) { return !IsStraggler(p.info.id, now); });
  for (auto& participant : participants_) {
    if (round.pending.empty()) break;
    if (participant.busy) continue;
    if (others_can && IsStraggler(participant.info.id, now)) continue;
    auto [begin, end] = round.pending.front();
    round.pending.pop_front();
    const int64_t stop = std::min(end, begin + CapacityInGroups(participant, round));
    if (stop < end) round.pending.emplace_front(stop, end);
    if (!SendAssignment(participant, round, begin, stop)) {
      round.pending.emplace_front(begin, stop);
      participant.info.id.clear();  // its session is closed: drop it below
      lost = true;
    }
  }
  if (lost) {
    participants_.erase(std::remove_if(participants_.begin(), participants_.end(),
                                       [](const Participant& p) { return p.info.id.empty(); }),
                        participants_.end());
    ReportWorkers();
  }
}

bool WorkerPoolSource::SendAssignment(Participant& participant, Round& round, int64_t begin,
                                      int64_t end) {
  WorkerConnection& connection = *participant.info.connection;
  SessionState& session = sessions_[participant.info.id];
  if (!session.setup_sent) {
    v1::CoordinatorMessage message;
    message.mutable_job_setup()->set_job_id(job_id_);
    *message.mutable_job_setup()->mutable_spec() = job_.spec;
    if (!connection.Send(std::move(message))) return false;
    session.setup_sent = true;
  }
  if (session.version_sent != round.version) {
    if (encoded_version_ != round.version) {
      auto chunks = rpc::EncodeTensors(*round.params, specs_);
      if (!chunks.ok()) {
        round.failure = chunks.status();
        return true;  // not the worker's fault
      }
      // NOTE [Parameters serialised once].
      encoded_params_.clear();
      for (size_t i = 0; i < chunks->size(); ++i) {
        v1::CoordinatorMessage message;
        v1::Parameters* parameters = message.mutable_parameters();
        parameters->set_job_id(job_id_);
        parameters->set_version(round.version);
        *parameters->mutable_chunk() = std::move((*chunks)[i]);
        parameters->set_last(i + 1 == chunks->size());
        encoded_params_.push_back(std::make_shared<const std::string>(message.SerializeAsString()));
      }
      encoded_version_ = round.version;
    }
    for (const auto& message : encoded_params_) {
      if (!connection.SendSerialized(message)) return false;
    }
    session.version_sent = round.version;
  }
  auto in_flight = std::make_unique<InFlight>();
  in_flight->id = hooks_.next_assignment_id();
  in_flight->worker_id = participant.info.id;
  in_flight->connection = participant.info.connection;
  in_flight->worker_name =
      participant.info.hello.name().empty() ? participant.info.id : participant.info.hello.name();
  in_flight->begin = begin;
  in_flight->end = end;
  in_flight->tasks = round.Tasks(begin, end);
  in_flight->sent_at = clock_.Now();
  in_flight->deadline = in_flight->sent_at + AssignmentDeadline(session, in_flight->tasks);
  if (round.train) {
    in_flight->intake = std::make_unique<GradientIntake>(
        begin, end, round.group_size, round.num_tasks, specs_, job_.dtype, classification_);
  }
  v1::CoordinatorMessage message;
  v1::Assignment* assignment = message.mutable_assignment();
  assignment->set_job_id(job_id_);
  assignment->set_assignment_id(in_flight->id);
  assignment->set_version(round.version);
  assignment->set_split(round.split);
  assignment->set_round(round.round);
  for (int64_t t = begin * round.group_size; t < begin * round.group_size + in_flight->tasks; ++t) {
    assignment->add_task_indices(t);
  }
  assignment->set_eval_steps(round.train ? 0 : round.eval_steps);
  if (!connection.Send(std::move(message))) return false;
  if (hooks_.metrics) hooks_.metrics->AssignmentSent();
  participant.busy = true;
  in_flight_[in_flight->id] = std::move(in_flight);
  return true;
}

void WorkerPoolSource::Requeue(Round& round, int64_t assignment_id, ReassignReason why,
                               const std::string& rejection) {
  auto it = in_flight_.find(assignment_id);
  if (it == in_flight_.end()) return;
  const InFlight& a = *it->second;
  int64_t run_begin = -1;
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (int64_t t = a.begin; t <= a.end; ++t) {
    const bool open = t < a.end && !round.completed[t];
    if (open && run_begin < 0) run_begin = t;
    if (!open && run_begin >= 0) {
      runs.emplace_back(run_begin, t);
      run_begin = -1;
    }
    if (!open) continue;
    if (hooks_.metrics) hooks_.metrics->TasksReassigned(why, round.Tasks(t, t + 1));
    if (!rejection.empty() && ++round.attempts[t] >= options_.max_task_attempts &&
        round.failure.ok()) {
      round.failure = absl::FailedPreconditionError(
          absl::StrCat(round.GroupName(t), " of ", v1::TaskSplit_Name(round.split), " round ",
                       round.round, " failed ", round.attempts[t], " times; last: ", rejection));
    }
  }
  for (auto r = runs.rbegin(); r != runs.rend(); ++r) round.pending.push_front(*r);
  int64_t requeued = 0;
  for (const auto& [begin, end] : runs) requeued += round.Tasks(begin, end);
  if (why == ReassignReason::kNeedsSetup) {
    // Routine when more jobs run than workers cache: once per worker session is enough
    // (the reassignment counter has the rest).
    SessionState& session = sessions_[a.worker_id];
    if (!session.logged_setup_request) {
      session.logged_setup_request = true;
      LogLine(absl::StrCat("job ", job_id_, ": worker ", a.worker_id, " (", a.worker_name,
                           ") no longer holds the job's setup or parameters (more jobs run "
                           "than it caches, --max_cached_jobs); sending them again"));
    }
  } else if (requeued > 0 || !rejection.empty()) {
    LogLine(absl::StrCat("job ", job_id_, ": ", requeued, " task(s) of worker ", a.worker_id, " (",
                         a.worker_name, ") go to other workers: ", ReasonLabel(why),
                         rejection.empty() ? "" : ": ", rejection));
  }
  const std::string worker_id = a.worker_id;
  in_flight_.erase(it);
  ReleaseWorker(worker_id);
  if (!rejection.empty()) {
    // Let the other workers retry; if none is left, the round takes the whole pool again
    // (this worker included) and the attempt limit decides.
    participants_.erase(
        std::remove_if(participants_.begin(), participants_.end(),
                       [&](const Participant& p) { return p.info.id == worker_id && !p.busy; }),
        participants_.end());
    ReportWorkers();
  }
}

int64_t WorkerPoolSource::CapacityInGroups(const Participant& participant, const Round& round) {
  // A worker always gets at least one whole group, even one larger than its capacity: its
  // --task_group_size, not the assignment, bounds what it computes at once.
  return std::max<int64_t>(1, participant.info.capacity / round.group_size);
}

void WorkerPoolSource::ReleaseWorker(const std::string& worker_id) {
  for (auto& p : participants_) {
    if (p.info.id == worker_id) p.busy = false;
  }
}

void WorkerPoolSource::HandleWorkerChanges(Round& round) {
  std::set<std::string> live;
  for (const auto& info : hooks_.live_workers()) live.insert(info.id);
  for (auto it = cancelled_assignments_.begin(); it != cancelled_assignments_.end();) {
    it = live.count(it->second) ? std::next(it) : cancelled_assignments_.erase(it);
  }
  std::vector<int64_t> orphaned;
  for (const auto& [id, a] : in_flight_) {
    if (!live.count(a->worker_id)) orphaned.push_back(id);
  }
  for (int64_t id : orphaned) Requeue(round, id, ReassignReason::kWorkerLost);
  const size_t before = participants_.size();
  participants_.erase(std::remove_if(participants_.begin(), participants_.end(),
                                     [&](const Participant& p) { return !live.count(p.info.id); }),
                      participants_.end());
  if (participants_.size() != before) ReportWorkers();
}

}  // namespace metatrain::coordinator
