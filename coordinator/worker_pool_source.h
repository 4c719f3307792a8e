#ifndef METATRAIN_COORDINATOR_WORKER_POOL_SOURCE_H_
#define METATRAIN_COORDINATOR_WORKER_POOL_SOURCE_H_

// The GradientSource of a job run by the coordinator: each round (a training step or an
// evaluation) is computed by the shared worker pool. Only what is distributed lives here
// (shards, assignments, reassignment, result intake); every rule of the job's life is the
// training loop's (common/meta/training_loop.h).
//
// NOTE [Work distribution]. A round splits its tasks into one contiguous range per
// participating worker; a worker takes at most `capacity` tasks per assignment and has at
// most one assignment of this job in flight. Workers that join during a round wait for the
// next one (unless the round has no worker left). A worker that leaves, times out or sends
// something invalid loses its unfinished tasks to the pending queue, and another worker
// recomputes them: tasks derive from keys, so the result is the same. A worker whose result
// is rejected, or that misses its deadline, sits out the rest of the round (unless it is
// the only one left). Rejected data is never applied; a task rejected max_task_attempts
// times fails the job.
//
// NOTE [Gradient groups]. A training round's unit of work is the gradient group
// (JobSpec.gradient_group_size consecutive tasks, fixed by the job): ranges, assignments,
// copies and requeues cover whole groups, and a worker sends one gradient per group, the
// in-order sum of its tasks' (common/meta/aggregation.h). Hello.capacity (tasks) becomes
// capacity / group_size groups per assignment, at least one. Group boundaries depend only on
// the job, never on the workers, so the round's sum of group sums has the same bits with
// any number of workers; the coordinator decodes, checks and keeps group_size times fewer
// gradients. Evaluation rounds hand out single tasks. Below, "task" in a range means group.
//
// NOTE [Speculative duplicates]. Once a round has no pending tasks left, a participant
// that is idle gets a copy of the open tasks of the overdue assignment with the most open
// tasks (the straggler's: the last `capacity` of them, since a worker computes its tasks in
// order), at most one copy per assignment. Overdue: running for kSpeculationMultiplier
// (1.5, as Spark's spark.speculation.multiplier) times the median observed time per task
// (NOTE [Deadlines from observed task times]) times its tasks. Without that bar, the first
// of two equally fast workers to finish copied the other's whole share (a worker sends its
// gradients when the assignment is done, so every task looks open until then); the other
// finished at about the same time, the copy was cancelled but kept its worker busy, and
// the next step ran on one worker: two workers gave the throughput of one (measured on
// conv-net Omniglot, 2026-12-07: 6 tasks/s with two workers, 7 with metatrain-train). The first
// result of a task wins and the other is dropped unread: every worker of the job computes a task's
// gradient from the same parameters, key and data on the same device type, so both are the same
// bits and the sum does not depend on which arrived first. A copy whose every task is complete is
// forgotten (its worker is free again; what it still sends is stale). So a round whose
// other workers are done does not wait for a slow worker's whole share.
//
// A worker whose assignment a copy beat is a straggler on probation (5 s, doubling while it
// keeps losing, up to 5 min; a completed assignment ends it): meanwhile it gets no pending
// tasks while another participant can take them, and rounds are sharded over the others,
// so a ten-times-slower worker does not make the fast one compute each step in two
// assignments (its own share, then a copy of the straggler's). It may still copy others'
// tasks when idle.
//
// Only workers whose device type (Hello.device: cpu or cuda) is the job's
// resources.device_type take part, so every meta-gradient of a job comes from one kind of
// device; the job waits while none is connected, for at most no_worker_timeout.
//
// A worker keeps a bounded cache of job setups (worker/inner_loop_runner.h), so with more
// jobs running than it caches, a job's setup or parameters may be gone by the time its
// assignment arrives. The worker then answers AssignmentDone.needs_setup; the source
// forgets what it sent that session for the job (setup and parameter version) and puts the
// tasks back at the front of the queue, counting no attempt and no rejection (reassignment
// reason needs_setup), so the next dispatch sends JobSetup, Parameters and the assignment
// again. Each wave of such resends completes at least the job whose setup reached the
// worker last, so the jobs progress; a worker that asks more than kMaxSetupRequestsInARow
// times for one job without completing an assignment of it is treated as failing (a
// rejection, kWorkerError), which bounds the resends a broken worker can cause.
//
// NOTE [Parameters serialised once]. A step's parameters go to every worker that gets an
// assignment of the step: 64 workers of the fully-connected Omniglot job are 64 MB per step.
// They are encoded and serialised once per version into shared, immutable bytes
// (WorkerConnection::SendSerialized), and every session's stream sends the same bytes: the
// Session method is registered raw (coordinator/rpc/worker_service.h), so gRPC neither
// copies nor re-serialises them per worker. Before, each stream serialised its own copy of
// every chunk, 0.5-0.9 ms of coordinator CPU per MB per worker (docs/benchmarks.md,
// "Coordinator intake with many workers").
//
// NOTE [Cancelled assignments]. An assignment whose result is no longer needed (the other
// copy of a speculative pair won, the round ended without it, its deadline passed) is
// dropped and its worker is sent CancelAssignment. The worker skips it if it has not
// started it, stops it before its next compute group if it is computing it (the conv net
// computes one task per group by default: a lost copy frees its worker within one task),
// and answers either way (AssignmentDone, with `cancelled` when it skipped or stopped it).
// Until that answer arrives the worker gets no more work of the job: it is computing, or
// frozen, or its queue holds the cancelled assignment. So a slow or frozen worker never
// accumulates a backlog of stale assignments (one per round, when rounds are short),
// which it would otherwise compute one after another once it resumed, late for every one
// of them; its share goes to the workers that answer. A worker whose session ends is
// forgotten with it.
//
// NOTE [Deadlines from observed task times]. A worker whose process still answers
// keepalive pings but whose computation hangs (a stuck GPU, a livelocked library) is not
// noticed by liveness. Its deadline is therefore derived from what the job's tasks take:
// the median of the last kObservedTasks per-task times (from sending an assignment to its
// completion, divided by its tasks), times deadline_factor, times the assignment's tasks,
// clamped to [min_deadline, assignment_timeout]. Only for a worker that has completed an
// assignment of the job in its session: the first one includes the job's setup (a dataset
// to load), which the others' times do not show. A missed deadline counts a failure (NOTE
// [Quarantine]), cancels the assignment and sends its tasks elsewhere; a late answer is
// stale. Deadlines decide only who computes a task, never its value.
//
// Threads: the loop's thread calls ComputeTraining / Evaluate, which wait on an inbox.
// RPC threads call PostMessage, WorkersChanged, Cancel and Stop, which only touch the inbox
// and never block on the loop.

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/meta/gradient_source.h"
#include "common/meta/trainer.h"
#include "common/rpc/tensor_codec.h"
#include "common/time/clock.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/result_intake.h"
#include "coordinator/worker_quarantine.h"
#include "coordinator/worker_registry.h"
#include "metatrain/v1/worker_service.pb.h"

namespace metatrain::coordinator {

struct WorkerPoolOptions {
  absl::Duration assignment_timeout = absl::Minutes(10);
  int max_task_attempts = 3;
  // How often a waiting round re-checks the worker pool.
  absl::Duration poll_interval = absl::Milliseconds(200);
  // A job that has had no live worker (of its device type) for this long fails with
  // UNAVAILABLE instead of waiting for ever. Zero: wait for ever.
  absl::Duration no_worker_timeout = absl::Minutes(30);
  // NOTE [Speculative duplicates].
  bool speculative_duplicates = true;
  // NOTE [Deadlines from observed task times]: an assignment to a worker that has already
  // completed one of the job's is late after deadline_factor x the median observed time per
  // task x its tasks, but never before min_deadline nor after assignment_timeout. 0: only
  // assignment_timeout.
  double deadline_factor = 20;
  absl::Duration min_deadline = absl::Seconds(10);
  Clock* clock = nullptr;  // Clock::Real() when null
};

class WorkerPoolSource final : public meta::GradientSource {
 public:
  struct Hooks {
    // Live workers in join order. Thread-safe.
    std::function<std::vector<WorkerInfo>()> live_workers;
    // A globally unique assignment id that routes back to this job.
    std::function<int64_t()> next_assignment_id;
    // The number of workers taking part in the job changed.
    std::function<void(int32_t workers)> workers_changed;
    // Service-wide and this job's series; either may be null (no recording).
    CoordinatorMetrics* metrics = nullptr;
    JobMetrics* job_metrics = nullptr;
    // Shared by every job (NOTE [Quarantine]); null: no quarantine.
    WorkerQuarantine* quarantine = nullptr;
  };

  // `job` must outlive the source.
  WorkerPoolSource(std::string job_id, const meta::JobContext& job, WorkerPoolOptions options,
                   Hooks hooks);
  ~WorkerPoolSource() override;

  // CANCELLED after Cancel(), ABORTED after Stop(); FAILED_PRECONDITION when a task was
  // rejected max_task_attempts times.
  absl::StatusOr<meta::TrainingRound> ComputeTraining(int64_t step,
                                                      const meta::TensorList& params) override;
  absl::StatusOr<meta::EvaluationSummary> Evaluate(const meta::EvaluationRequest& request,
                                                   const meta::TensorList& params) override;

  // How the last ComputeTraining round spent its time. Loop thread only.
  const RoundTimings& last_training_timings() const { return last_training_timings_; }

  // Thread-safe; never block on the loop.
  void PostMessage(const std::string& worker_id, v1::WorkerMessage message)
      ABSL_LOCKS_EXCLUDED(mu_);
  void WorkersChanged() ABSL_LOCKS_EXCLUDED(mu_);
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Round;
  struct InFlight;
  struct Participant {
    WorkerInfo info;
    bool busy = false;
  };
  // What this job has sent to one worker's session.
  struct SessionState {
    bool setup_sent = false;
    int64_t version_sent = -1;
    // needs_setup answers since the worker last completed an assignment of this job.
    int setup_requests_in_a_row = 0;
    // NOTE [Deadlines from observed task times].
    int64_t completed_assignments = 0;
    bool logged_setup_request = false;
    // NOTE [Speculative duplicates]: a copy beat this worker; until then it takes no
    // pending work while a faster worker can. The probation doubles while it keeps losing.
    absl::Time straggler_until = absl::InfinitePast();
    absl::Duration straggler_probation = absl::ZeroDuration();
  };
  struct Event {
    std::string worker_id;
    v1::WorkerMessage message;
  };

  absl::Status RunRound(Round& round) ABSL_LOCKS_EXCLUDED(mu_);
  void PickParticipants();
  void Dispatch(Round& round);
  bool SendAssignment(Participant& participant, Round& round, int64_t begin, int64_t end);
  void HandleEvent(Round& round, Event& event);
  void HandleGradient(Round& round, const std::string& worker_id, const v1::TaskGradient& gradient);
  void HandleDone(Round& round, const std::string& worker_id, const v1::AssignmentDone& done);
  // The worker no longer holds the job's setup or parameters: resend them with the tasks.
  void HandleNeedsSetup(Round& round, int64_t assignment_id);
  // Drops an in-flight assignment: its unfinished tasks go back to the pending queue.
  // `rejection`: non-empty when the worker's result was refused (counts an attempt).
  void Requeue(Round& round, int64_t assignment_id, ReassignReason why,
               const std::string& rejection = "");
  // Every task of `a` is in: its latency, (evaluation) its tasks, (training) the worker's
  // finish.
  void RecordCompletion(Round& round, const InFlight& a);
  // Refuses the worker's result for `assignment_id` and requeues its open tasks.
  void Reject(Round& round, int64_t assignment_id, RejectReason reason, const std::string& message);
  void Reject(Round& round, int64_t assignment_id, const Refusal& refusal);
  // The in-flight assignment `assignment_id` if `worker_id` holds it; otherwise counts the
  // message as stale (no such assignment) or rejected (someone else's) and returns null.
  InFlight* OwnedAssignment(int64_t assignment_id, const std::string& worker_id);
  void ReleaseWorker(const std::string& worker_id);
  // How many of the round's units (gradient groups; tasks when evaluating) the participant
  // takes per assignment: Hello.capacity in tasks, at least one group.
  static int64_t CapacityInGroups(const Participant& participant, const Round& round);
  void HandleWorkerChanges(Round& round);
  void CheckDeadlines(Round& round);
  // resources.device_type, or "cpu" when empty.
  const std::string& JobDeviceType() const;
  // When an assignment of `tasks` tasks sent now to `session`'s worker is late (NOTE
  // [Deadlines from observed task times]).
  absl::Duration AssignmentDeadline(const SessionState& session, int64_t tasks) const;
  // The median of task_seconds_; nullopt before any assignment of the job completed.
  std::optional<double> MedianTaskSeconds() const;
  // NOTE [Speculative duplicates]: `a` has run kSpeculationMultiplier x the median time per
  // task x its tasks, so a copy may be worth it.
  bool Overdue(const InFlight& a, absl::Time now) const;
  // UNAVAILABLE once the job has had no participant for options_.no_worker_timeout.
  absl::Status CheckWorkerWait();
  void ReportWorkers();
  // NOTE [Speculative duplicates]: idle participants copy the straggler's open tasks.
  void Speculate(Round& round);
  // Forgets copies whose every task is complete (by either copy).
  void DropFinishedCopies(Round& round);
  // Drops an in-flight assignment whose result is no longer needed and tells its worker to
  // cancel it; the worker stays busy for this job until it answers (NOTE [Cancelled
  // assignments]).
  void Abandon(const Round& round, int64_t assignment_id);
  // Tells the worker of `a` to cancel it and remembers that it owes an answer; nothing
  // when its session is closed.
  void SendCancel(const InFlight& a);
  // The worker has a cancelled assignment of this job that it has not answered yet.
  bool HoldsCancelled(const std::string& worker_id) const;
  // NOTE [Speculative duplicates]: straggler probation.
  void MarkStraggler(const std::string& worker_id);
  bool IsStraggler(const std::string& worker_id, absl::Time now) const;
  // A refused result or a missed deadline of the worker of `a` (NOTE [Quarantine]).
  void RecordFailure(const InFlight& a);

  // More needs_setup answers in a row for one job than this and the worker is failing
  // (NOTE [Work distribution]).
  static constexpr int kMaxSetupRequestsInARow = 16;
  // Per-task times kept for the median (NOTE [Deadlines from observed task times]).
  static constexpr size_t kObservedTasks = 64;

  const std::string job_id_;
  const meta::JobContext& job_;
  const WorkerPoolOptions options_;
  const Hooks hooks_;
  const std::vector<meta::ParamSpec>& specs_;
  Clock& clock_;
  const bool classification_;

  // Loop-thread state.
  std::vector<Participant> participants_;
  std::map<std::string, SessionState> sessions_;
  std::map<int64_t, std::unique_ptr<InFlight>> in_flight_;
  // NOTE [Cancelled assignments]: assignment id -> worker id, until the worker answers.
  // At most one per worker, since a worker holding one gets no other work of the job.
  std::map<int64_t, std::string> cancelled_assignments_;
  int64_t encoded_version_ = -1;
  // Seconds per task of recently completed assignments, oldest first (at most
  // kObservedTasks).
  std::deque<double> task_seconds_;
  // Logged once while every connected worker is of another device type.
  bool reported_device_wait_ = false;
  // Since when the job has had no participant; InfinitePast() while it has one. Kept across
  // rounds, so a job that waits between rounds is timed as one wait.
  absl::Time no_worker_since_ = absl::InfinitePast();
  RoundTimings last_training_timings_;
  // The Parameters messages of version encoded_version_, serialised (NOTE [Parameters
  // serialised once]).
  std::vector<std::shared_ptr<const std::string>> encoded_params_;

  // The inbox, shared with the RPC threads.
  absl::Mutex mu_;
  std::deque<Event> inbox_ ABSL_GUARDED_BY(mu_);
  bool workers_changed_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace metatrain::coordinator

#endif  // METATRAIN_COORDINATOR_WORKER_POOL_SOURCE_H_
