// WorkerPoolSource's recovery from slow, hung and frozen workers: speculative copies of
// overdue assignments (NOTE [Speculative duplicates]), cancellation (NOTE [Cancelled
// assignments]) and deadlines from observed task times (NOTE [Deadlines from observed task
// times]), all in worker_pool_source.h. The rounds themselves are worker_pool_source.cc.

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/logging/log.h"
#include "coordinator/worker_pool_round.h"
#include "coordinator/worker_pool_source.h"

namespace metatrain::coordinator {

absl::Duration WorkerPoolSource::AssignmentDeadline(const SessionState& session,
                                                    int64_t tasks) const {
  const std::optional<double> median = MedianTaskSeconds();
  if (options_.deadline_factor <= 0 || session.completed_assignments == 0 || !median) {
    return options_.assignment_timeout;
  }
  const absl::Duration derived =
      absl::Seconds(options_.deadline_factor * *median * static_cast<double>(tasks));
  return std::min(options_.assignment_timeout, std::max(options_.min_deadline, derived));
}

std::optional<double> WorkerPoolSource::MedianTaskSeconds() const {
  if (task_seconds_.empty()) return std::nullopt;
  std::vector<double> seconds(task_seconds_.begin(), task_seconds_.end());
  std::nth_element(seconds.begin(), seconds.begin() + seconds.size() / 2, seconds.end());
  return seconds[seconds.size() / 2];
}

bool WorkerPoolSource::Overdue(const InFlight& a, absl::Time now) const {
  constexpr double kSpeculationMultiplier = 1.5;
  const std::optional<double> median = MedianTaskSeconds();
  if (!median) return false;
  return now - a.sent_at >=
         absl::Seconds(kSpeculationMultiplier * *median * static_cast<double>(a.tasks));
}

void WorkerPoolSource::RecordFailure(const InFlight& a) {
  if (hooks_.quarantine == nullptr) return;
  const absl::Time now = clock_.Now();
  const absl::Time until =
      hooks_.quarantine->RecordFailure(QuarantineKey(a.worker_name, a.worker_id), now);
  if (until == absl::InfinitePast()) return;
  if (hooks_.metrics) hooks_.metrics->WorkerQuarantined();
  LogLine(absl::StrCat("worker ", a.worker_id, " (", a.worker_name,
                       ") failed again and again: left out of every job for ",
                       absl::FormatDuration(until - now), " (--quarantine_after)"));
}

void WorkerPoolSource::Speculate(Round& round) {
  const absl::Time now = clock_.Now();
  for (auto& participant : participants_) {
    if (participant.busy) continue;
    // The copyable assignment of another worker with the most open tasks (the oldest of
    // equals): the straggler.
    InFlight* slowest = nullptr;
    int64_t slowest_open = 0, first_open = 0;
    for (auto& [id, a] : in_flight_) {
      if (a->speculative || a->copied || a->worker_id == participant.info.id || !Overdue(*a, now)) {
        continue;
      }
      int64_t open = 0, first = -1;
      for (int64_t t = a->begin; t < a->end; ++t) {
        if (round.completed[t]) continue;
        ++open;
        if (first < 0) first = t;
      }
      if (open > slowest_open || (open == slowest_open && slowest != nullptr && open > 0 &&
                                  a->sent_at < slowest->sent_at)) {
        slowest = a.get();
        slowest_open = open;
        first_open = first;
      }
    }
    if (slowest == nullptr || slowest_open == 0) return;
    // The worker computes its tasks in order, so its open tasks are the last ones: the copy
    // takes them from the end, and the two meet in the middle.
    const int64_t end = slowest->end;
    const int64_t begin = std::max(first_open, end - CapacityInGroups(participant, round));
    const int64_t original = slowest->id;
    // Counted before the send, so the counter already says so when the worker has the copy.
    if (hooks_.metrics) hooks_.metrics->SpeculativeTasks(round.Tasks(begin, end));
    if (!SendAssignment(participant, round, begin, end)) continue;  // dropped at the next dispatch
    in_flight_.at(original)->copied = true;
    in_flight_.rbegin()->second->speculative = true;  // ids grow: the newest is the copy
  }
}

void WorkerPoolSource::DropFinishedCopies(Round& round) {
  std::vector<int64_t> finished;
  for (const auto& [id, a] : in_flight_) {
    if (!a->speculative && !a->copied) continue;
    bool open = false;
    for (int64_t t = a->begin; t < a->end && !open; ++t) open = !round.completed[t];
    if (!open) finished.push_back(id);
  }
  // Its tasks were all computed by the other copy: the worker's remaining answers are
  // stale; it is free for more once it has answered (NOTE [Cancelled assignments]).
  for (int64_t id : finished) {
    const InFlight& a = *in_flight_.at(id);
    if (a.copied && a.groups_done < a.end - a.begin) MarkStraggler(a.worker_id);
    Abandon(round, id);
  }
}

void WorkerPoolSource::MarkStraggler(const std::string& worker_id) {
  SessionState& session = sessions_[worker_id];
  session.straggler_probation = session.straggler_probation == absl::ZeroDuration()
                                    ? absl::Seconds(5)
                                    : std::min(absl::Minutes(5), 2 * session.straggler_probation);
  session.straggler_until = clock_.Now() + session.straggler_probation;
}

bool WorkerPoolSource::IsStraggler(const std::string& worker_id, absl::Time now) const {
  auto it = sessions_.find(worker_id);
  return it != sessions_.end() && now < it->second.straggler_until;
}

void WorkerPoolSource::Abandon(const Round& round, int64_t assignment_id) {
  auto it = in_flight_.find(assignment_id);
  if (it == in_flight_.end()) return;
  const InFlight& a = *it->second;
  const std::string worker_id = a.worker_id;
  // Training: every gradient of the assignment is in, so the worker has finished it and its
  // AssignmentDone is on the way; nothing to cancel.
  const bool computed = round.train && a.groups_done == a.end - a.begin;
  if (!computed) SendCancel(a);
  in_flight_.erase(it);
  if (!HoldsCancelled(worker_id)) ReleaseWorker(worker_id);
}

void WorkerPoolSource::SendCancel(const InFlight& a) {
  if (a.connection == nullptr) return;
  v1::CoordinatorMessage message;
  message.mutable_cancel()->set_assignment_id(a.id);
  // A closed session cannot answer: its worker is gone (HandleWorkerChanges forgets it).
  if (!a.connection->Send(std::move(message))) return;
  cancelled_assignments_[a.id] = a.worker_id;
  if (hooks_.metrics) hooks_.metrics->AssignmentCancelled();
}

bool WorkerPoolSource::HoldsCancelled(const std::string& worker_id) const {
  for (const auto& [id, holder] : cancelled_assignments_) {
    if (holder == worker_id) return true;
  }
  return false;
}

void WorkerPoolSource::CheckDeadlines(Round& round) {
  const absl::Time now = clock_.Now();
  std::vector<std::pair<int64_t, std::string>> late;
  for (const auto& [id, a] : in_flight_) {
    if (a->deadline <= now) late.emplace_back(id, a->worker_id);
  }
  for (const auto& [id, late_worker] : late) {
    const InFlight& a = *in_flight_.at(id);
    RecordFailure(a);
    // Presumed hung: if it ever answers, it gets work again (NOTE [Cancelled assignments]).
    SendCancel(a);
    Requeue(round, id, ReassignReason::kDeadline);
    // A worker that misses its deadline is presumed hung: it sits out the rest of the round.
    // (A named copy: clang 14 cannot capture a structured binding in a C++17 lambda.)
    const std::string worker_id = late_worker;
    participants_.erase(
        std::remove_if(participants_.begin(), participants_.end(),
                       [&](const Participant& p) { return p.info.id == worker_id; }),
        participants_.end());
  }
  if (!late.empty()) ReportWorkers();
}

}  // namespace metatrain::coordinator
