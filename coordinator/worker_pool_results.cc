// WorkerPoolSource's intake of its workers' messages during a round: gradients (alone or
// in GradientBatches), AssignmentDone and NeedsSetup, each checked by result_intake.h and
// applied to the round, and the refusals. The rounds themselves are worker_pool_source.cc,
// recovery from slow and lost workers worker_pool_recovery.cc.

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "coordinator/worker_pool_round.h"
#include "coordinator/worker_pool_source.h"

namespace metatrain::coordinator {

void WorkerPoolSource::HandleEvent(Round& round, Event& event) {
  // Coordinator::OnWorkerMessage routes only gradients, non-empty single-assignment
  // batches and completions here.
  const int64_t assignment_id =
      event.message.has_gradient()    ? event.message.gradient().assignment_id()
      : event.message.has_gradients() ? event.message.gradients().gradients(0).assignment_id()
                                      : event.message.done().assignment_id();
  if (auto it = cancelled_assignments_.find(assignment_id); it != cancelled_assignments_.end()) {
    // NOTE [Cancelled assignments]: its result is no longer needed; its answer frees the
    // worker.
    if (it->second != event.worker_id) {
      if (hooks_.metrics) hooks_.metrics->ResultRejected(RejectReason::kNotOwner);
      return;
    }
    if (hooks_.metrics) hooks_.metrics->StaleMessage();
    if (!event.message.has_done()) return;
    cancelled_assignments_.erase(it);
    if (!HoldsCancelled(event.worker_id)) ReleaseWorker(event.worker_id);
    return;
  }
  switch (event.message.kind_case()) {
    case v1::WorkerMessage::kGradient:
      HandleGradient(round, event.worker_id, event.message.gradient());
      break;
    case v1::WorkerMessage::kGradients:
      for (const v1::TaskGradient& gradient : event.message.gradients().gradients()) {
        HandleGradient(round, event.worker_id, gradient);
      }
      break;
    case v1::WorkerMessage::kDone:
      HandleDone(round, event.worker_id, event.message.done());
      break;
    default:
      break;  // the RPC layer routes only gradients and completions here
  }
}

WorkerPoolSource::InFlight* WorkerPoolSource::OwnedAssignment(int64_t assignment_id,
                                                              const std::string& worker_id) {
  auto it = in_flight_.find(assignment_id);
  if (it == in_flight_.end()) {
    if (hooks_.metrics) hooks_.metrics->StaleMessage();
    return nullptr;
  }
  if (it->second->worker_id != worker_id) {
    // Someone else's assignment: refuse the message, leave the assignment alone.
    if (hooks_.metrics) hooks_.metrics->ResultRejected(RejectReason::kNotOwner);
    return nullptr;
  }
  return it->second.get();
}

void WorkerPoolSource::HandleGradient(Round& round, const std::string& worker_id,
                                      const v1::TaskGradient& gradient) {
  InFlight* owned = OwnedAssignment(gradient.assignment_id(), worker_id);
  if (owned == nullptr) return;
  InFlight& a = *owned;
  if (!round.train) {
    return Reject(round, a.id, RejectReason::kMalformed,
                  "gradient sent for an evaluation assignment");
  }
  GradientIntake::Outcome outcome = a.intake->Add(gradient, round.completed);
  if (outcome.refusal) return Reject(round, a.id, *outcome.refusal);
  if (outcome.redundant) {
    // NOTE [Speculative duplicates]: the other copy delivered this task first.
    if (++a.groups_done == a.end - a.begin) RecordCompletion(round, a);
    return;
  }
  if (!outcome.group) return;
  GradientIntake::Group& group = *outcome.group;
  const int64_t g = group.index;
  const int64_t first_task = g * round.group_size;
  round.gradients[g] = std::move(group.gradient);
  std::copy(group.query_loss.begin(), group.query_loss.end(), round.loss.begin() + first_task);
  std::copy(group.query_accuracy.begin(), group.query_accuracy.end(),
            round.accuracy.begin() + first_task);
  round.completed[g] = 1;
  --round.remaining;
  if (hooks_.job_metrics) hooks_.job_metrics->AddTasksCompleted(round.Tasks(g, g + 1));
  // The round may end with this gradient, before the assignment's AssignmentDone arrives.
  if (++a.groups_done == a.end - a.begin) RecordCompletion(round, a);
  if (a.copied || a.speculative) DropFinishedCopies(round);
}

void WorkerPoolSource::HandleDone(Round& round, const std::string& worker_id,
                                  const v1::AssignmentDone& done) {
  InFlight* owned = OwnedAssignment(done.assignment_id(), worker_id);
  if (owned == nullptr) return;
  InFlight& a = *owned;
  if (done.needs_setup()) return HandleNeedsSetup(round, a.id);
  if (done.cancelled()) {
    return Reject(round, a.id, RejectReason::kMalformed,
                  absl::StrCat(worker_id, ": answered 'cancelled' to an assignment that was not"));
  }
  if (!done.error().empty()) {
    return Reject(round, a.id, RejectReason::kWorkerError,
                  absl::StrCat(worker_id, ": ", done.error()));
  }
  if (round.train) {
    for (int64_t t = a.begin; t < a.end; ++t) {
      if (!round.completed[t]) {
        return Reject(round, a.id, RejectReason::kMalformed,
                      absl::StrCat("assignment done without a gradient for ", round.GroupName(t)));
      }
    }
  } else {
    MetricsOutcome outcome = CheckEvaluationMetrics(done, a.begin, a.end, classification_);
    if (outcome.refusal) return Reject(round, a.id, *outcome.refusal);
    for (int64_t t = a.begin; t < a.end; ++t) {
      if (round.completed[t]) continue;  // the other copy's (NOTE [Speculative duplicates])
      round.metrics[t] = std::move(outcome.metrics[t - a.begin]);
      round.completed[t] = 1;
      --round.remaining;
    }
  }
  if (!round.train) RecordCompletion(round, a);
  const bool had_copy = a.copied || a.speculative;
  in_flight_.erase(a.id);  // destroys `a`
  ReleaseWorker(worker_id);
  sessions_[worker_id].setup_requests_in_a_row = 0;
  if (had_copy) DropFinishedCopies(round);
}

void WorkerPoolSource::HandleNeedsSetup(Round& round, int64_t assignment_id) {
  const std::string worker_id = in_flight_.at(assignment_id)->worker_id;
  SessionState& session = sessions_[worker_id];
  // The next assignment to this worker carries the setup and the parameters again.
  session.setup_sent = false;
  session.version_sent = -1;
  if (++session.setup_requests_in_a_row > kMaxSetupRequestsInARow) {
    session.setup_requests_in_a_row = 0;
    return Reject(
        round, assignment_id, RejectReason::kWorkerError,
        absl::StrCat(worker_id, ": asked for the job's setup ", kMaxSetupRequestsInARow + 1,
                     " times in a row without completing an assignment"));
  }
  Requeue(round, assignment_id, ReassignReason::kNeedsSetup);
}

void WorkerPoolSource::RecordCompletion(Round& round, const InFlight& a) {
  const absl::Time now = clock_.Now();
  const int64_t tasks = a.tasks;
  SessionState& session = sessions_[a.worker_id];
  ++session.completed_assignments;
  session.straggler_probation = absl::ZeroDuration();  // it keeps up again
  task_seconds_.push_back(absl::ToDoubleSeconds(now - a.sent_at) / static_cast<double>(tasks));
  if (task_seconds_.size() > kObservedTasks) task_seconds_.pop_front();
  if (hooks_.quarantine != nullptr) hooks_.quarantine->RecordSuccess(a.worker_name);
  if (hooks_.metrics) hooks_.metrics->WorkerTaskLatency(a.worker_name, now - a.sent_at, tasks);
  if (round.train) {
    round.timings.worker_finish[a.worker_name] = now - round.start;
  } else if (hooks_.job_metrics) {
    hooks_.job_metrics->AddTasksCompleted(tasks);  // training counts each task as it arrives
  }
}

void WorkerPoolSource::Reject(Round& round, int64_t assignment_id, RejectReason reason,
                              const std::string& message) {
  if (hooks_.metrics) hooks_.metrics->ResultRejected(reason);
  if (auto it = in_flight_.find(assignment_id); it != in_flight_.end()) RecordFailure(*it->second);
  Requeue(round, assignment_id, ReassignReason::kRejected, message);
}

void WorkerPoolSource::Reject(Round& round, int64_t assignment_id, const Refusal& refusal) {
  Reject(round, assignment_id,
         refusal.kind == Refusal::kNonFinite ? RejectReason::kNonFinite : RejectReason::kMalformed,
         refusal.message);
}

}  // namespace metatrain::coordinator
