#include "coordinator/job_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/meta/aggregation.h"
#include "common/meta/checkpoint.h"
#include "common/meta/evaluation_proto.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::coordinator {
namespace {

meta::TensorList CloneParams(const meta::TensorList& params) {
  meta::TensorList out;
  out.reserve(params.size());
  for (const auto& p : params) out.push_back(p.detach().clone());
  return out;
}

// The trainer averages the learner's [T] query losses in the job's dtype; workers send
// each value widened to double, which narrows back exactly.
double MeanInDtype(const std::vector<double>& values, at::ScalarType dtype) {
  at::Tensor t = at::tensor(at::ArrayRef<double>(values), at::kDouble).to(dtype);
  return t.mean().item<double>();
}

}  // namespace

struct JobRunner::Round {
  bool train = true;
  v1::TaskSplit split = v1::TASK_SPLIT_TRAIN;
  int64_t round = 0;
  int64_t version = 0;
  const meta::TensorList* params = nullptr;
  int eval_steps = 0;
  int64_t num_tasks = 0;

  std::deque<std::pair<int64_t, int64_t>> pending;  // [begin, end) ranges
  std::vector<char> completed;
  std::vector<int> attempts;
  int64_t remaining = 0;
  absl::Status failure;

  std::vector<meta::TensorList> gradients;  // training
  std::vector<double> loss, accuracy;       // training: query metrics after adaptation
  std::vector<v1::TaskMetrics> metrics;     // evaluation
};

struct JobRunner::InFlight {
  int64_t id = 0;
  std::string worker_id;
  int64_t begin = 0, end = 0;
  absl::Time deadline;
  // Training: the task whose gradient chunks are arriving (-1: none).
  int64_t current_task = -1;
  std::unique_ptr<rpc::TensorAssembler> assembler;
};

JobRunner::JobRunner(std::string job_id, std::shared_ptr<const meta::JobContext> job,
                     meta::TensorList initial_params, std::optional<ResumeState> resume,
                     RunnerOptions options, Hooks hooks)
    : job_id_(std::move(job_id)),
      job_(std::move(job)),
      options_(std::move(options)),
      hooks_(std::move(hooks)),
      specs_(job_->learner->meta_param_specs()),
      params_(std::move(initial_params)),
      resume_(std::move(resume)) {}

JobRunner::~JobRunner() = default;

void JobRunner::PostMessage(const std::string& worker_id, v1::WorkerMessage message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.push_back(Event{worker_id, std::move(message)});
  }
  cv_.notify_one();
}

void JobRunner::WorkersChanged() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    workers_changed_ = true;
  }
  cv_.notify_one();
}

void JobRunner::Cancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
  }
  cv_.notify_one();
}

void JobRunner::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  cv_.notify_one();
}

absl::Status JobRunner::Run() {
  const v1::JobSpec& spec = job_->spec;
  ASSIGN_OR_RETURN(std::unique_ptr<meta::OuterOptimizer> optimizer,
                   meta::MakeOuterOptimizer(spec.outer(), specs_));
  meta::PlateauSchedule plateau(spec.outer().plateau_factor(), spec.outer().plateau_patience(),
                                spec.outer().min_lr());
  meta::EarlyStopping early(spec.early_stopping_patience());
  const bool linear = spec.outer().schedule() == "linear";
  const bool use_plateau = spec.outer().schedule() == "plateau";

  int64_t first_step = 0;
  int64_t best_version = 0;
  bool validated = false;
  bool stopped_early = false;
  if (resume_) {
    // Exactly the state the uninterrupted run had after resume_->step steps: the plateau
    // schedule and early stopping depend only on the validation losses seen, in order.
    params_ = std::move(resume_->params);
    RETURN_IF_ERROR(optimizer->LoadState(resume_->optimizer_state));
    validation_losses_ = resume_->validation_losses;
    // The saved status's validation curve holds the same validations' accuracies, exactly
    // (EvaluationResult keeps the double), for replaying select_best_by "accuracy".
    const auto& history = resume_->status.validation_history();
    const int validations = static_cast<int>(validation_losses_.size());
    if (spec.select_best_by() == "accuracy" && history.size() != validations) {
      return absl::InvalidArgumentError(absl::StrCat(
          "resume checkpoint has ", validations, " validation losses but ", history.size(),
          " points of validation history (select_best_by 'accuracy')"));
    }
    for (int i = 0; i < validations; ++i) {
      plateau.Observe(validation_losses_[i], optimizer->lr());
      meta::EvaluationSummary replayed;
      replayed.loss_after.mean = validation_losses_[i];
      if (i < history.size()) {
        replayed.accuracy_after.mean = history[i].result().accuracy_after().mean();
      }
      early.Observe(meta::SelectionScore(spec, replayed));
    }
    validated = !validation_losses_.empty();
    best_params_ = std::move(resume_->best_params);
    best_version = resume_->status.best_step();
    first_step = resume_->step;
    resume_.reset();
    stopped_early = early.should_stop();
  } else {
    RETURN_IF_ERROR(WriteResume(0, *optimizer));
  }

  int64_t steps_run = first_step;
  for (int64_t step = first_step; step < spec.steps() && !stopped_early; ++step) {
    const auto start = std::chrono::steady_clock::now();
    if (linear) optimizer->set_lr(meta::LinearScheduleLr(spec, step));
    const double lr = optimizer->lr();

    Round train;
    train.train = true;
    train.split = v1::TASK_SPLIT_TRAIN;
    train.round = step;
    train.version = step;
    train.params = &params_;
    train.num_tasks = static_cast<int64_t>(meta::TrainingKeys(spec, step).size());
    RETURN_IF_ERROR(RunRound(train));
    auto update =
        meta::ApplyMetaUpdate(spec, specs_, std::move(train.gradients), *optimizer, params_);
    if (!update.ok()) {
      return absl::Status(update.status().code(),
                          absl::StrCat("step ", step + 1, ": ", update.status().message()));
    }
    const double train_loss = MeanInDtype(train.loss, job_->dtype);
    const double train_accuracy = meta::IsClassificationFamily(spec.tasks().family())
                                      ? MeanInDtype(train.accuracy, job_->dtype)
                                      : -1;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    steps_run = step + 1;

    std::optional<meta::EvaluationSummary> validation;
    bool new_best = false;
    if (spec.validation_interval() > 0 && (step + 1) % spec.validation_interval() == 0) {
      Round eval;
      eval.train = false;
      eval.split = v1::TASK_SPLIT_VALIDATION;
      eval.round = step + 1;
      eval.version = step + 1;
      eval.params = &params_;
      eval.eval_steps = spec.inner().test_steps();
      eval.num_tasks = spec.validation_tasks();
      RETURN_IF_ERROR(RunRound(eval));
      validation = Summarize(eval);
      const double loss = validation->loss_after.mean;
      if (use_plateau) optimizer->set_lr(plateau.Observe(loss, optimizer->lr()));
      validation_losses_.push_back(loss);
      if (early.Observe(meta::SelectionScore(spec, *validation))) {
        best_params_ = CloneParams(params_);
        best_version = step + 1;
        new_best = true;
      }
      validated = true;
    }
    stopped_early = early.should_stop();

    hooks_.update(
        [&](v1::JobStatus& status) {
          status.set_step(step + 1);
          status.set_train_loss(train_loss);
          status.set_train_accuracy(train_accuracy);
          status.set_learning_rate(lr);
          status.set_tasks_per_second(seconds > 0 ? train.num_tasks / seconds : 0);
          if (validation) {
            *status.mutable_last_validation() =
                meta::ToEvaluationResult(*validation, spec.inner().test_steps());
            v1::ValidationPoint* point = status.add_validation_history();
            point->set_step(step + 1);
            *point->mutable_result() = status.last_validation();
            if (new_best) {
              *status.mutable_best_validation() = *status.mutable_last_validation();
              status.set_best_step(step + 1);
            }
          }
          status.set_stopped_early(stopped_early);
        },
        v1::JobEvent::STEP);
    if (validation) hooks_.update([](v1::JobStatus&) {}, v1::JobEvent::VALIDATION);
    if (new_best) RETURN_IF_ERROR(WriteStateDict(kBestFile, best_params_, step + 1));
    if (spec.checkpoint_interval() > 0 && (step + 1) % spec.checkpoint_interval() == 0) {
      RETURN_IF_ERROR(WriteResume(step + 1, *optimizer));
    }
  }

  if (!validated) {
    best_params_ = CloneParams(params_);
    best_version = steps_run;
  }
  RETURN_IF_ERROR(WriteStateDict(kFinalFile, params_, steps_run));
  RETURN_IF_ERROR(WriteStateDict(kBestFile, best_params_, best_version));
  RETURN_IF_ERROR(WriteResume(steps_run, *optimizer));

  Round test;
  test.train = false;
  test.split = v1::TASK_SPLIT_TEST;
  test.round = 0;
  test.version = best_version;
  test.params = &best_params_;
  test.eval_steps = spec.inner().test_steps();
  test.num_tasks = spec.test_tasks();
  RETURN_IF_ERROR(RunRound(test));
  const meta::EvaluationSummary summary = Summarize(test);
  hooks_.update(
      [&](v1::JobStatus& status) {
        *status.mutable_test() = meta::ToEvaluationResult(summary, spec.inner().test_steps());
        status.set_workers(0);
      },
      v1::JobEvent::KIND_UNSPECIFIED);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Rounds

absl::Status JobRunner::RunRound(Round& round) {
  const int64_t n = round.num_tasks;
  round.completed.assign(n, 0);
  round.attempts.assign(n, 0);
  round.remaining = n;
  if (round.train) {
    round.gradients.assign(n, meta::TensorList());
    round.loss.assign(n, 0.0);
    round.accuracy.assign(n, -1.0);
  } else {
    round.metrics.assign(n, v1::TaskMetrics());
  }
  PickParticipants();
  const int64_t shards = std::max<int64_t>(1, static_cast<int64_t>(participants_.size()));
  for (int64_t i = 0; i < shards; ++i) {
    const int64_t begin = n * i / shards, end = n * (i + 1) / shards;
    if (end > begin) round.pending.emplace_back(begin, end);
  }

  auto finish = [&](absl::Status status) {
    // Whatever is still in flight belongs to this round only: late results are stale.
    in_flight_.clear();
    for (auto& p : participants_) p.busy = false;
    return status;
  };
  while (true) {
    if (!round.failure.ok()) return finish(round.failure);
    if (round.remaining == 0) return finish(absl::OkStatus());
    if (participants_.empty()) PickParticipants();
    Dispatch(round);

    std::deque<Event> events;
    bool changed = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      absl::Duration wait = options_.poll_interval;
      const absl::Time now = absl::Now();
      for (const auto& [id, a] : in_flight_) wait = std::min(wait, a->deadline - now);
      wait = std::max(wait, absl::ZeroDuration());
      cv_.wait_for(lock, absl::ToChronoNanoseconds(wait),
                   [&] { return !inbox_.empty() || workers_changed_ || cancelled_ || stopped_; });
      if (cancelled_) return finish(absl::CancelledError("job cancelled"));
      if (stopped_) return finish(absl::AbortedError("coordinator shutting down"));
      events.swap(inbox_);
      changed = workers_changed_;
      workers_changed_ = false;
    }
    if (changed) HandleWorkerChanges(round);
    for (auto& event : events) {
      HandleEvent(round, event);
      if (!round.failure.ok()) break;
    }
    CheckDeadlines(round);
  }
}

void JobRunner::PickParticipants() {
  std::vector<WorkerInfo> live = hooks_.live_workers();
  const int64_t max_workers = job_->spec.resources().max_workers();
  if (max_workers > 0 && static_cast<int64_t>(live.size()) > max_workers) {
    live.resize(max_workers);
  }
  participants_.clear();
  std::set<std::string> ids;
  for (auto& info : live) {
    ids.insert(info.id);
    participants_.push_back(Participant{std::move(info), false});
  }
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    it = ids.count(it->first) ? std::next(it) : sessions_.erase(it);
  }
  ReportWorkers();
}

void JobRunner::ReportWorkers() {
  const int32_t count = static_cast<int32_t>(participants_.size());
  hooks_.update([count](v1::JobStatus& status) { status.set_workers(count); },
                v1::JobEvent::KIND_UNSPECIFIED);
}

void JobRunner::Dispatch(Round& round) {
  bool lost = false;
  for (auto& participant : participants_) {
    if (round.pending.empty()) break;
    if (participant.busy) continue;
    auto [begin, end] = round.pending.front();
    round.pending.pop_front();
    const int64_t stop = std::min(end, begin + participant.info.capacity);
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

bool JobRunner::SendAssignment(Participant& participant, Round& round, int64_t begin, int64_t end) {
  WorkerConnection& connection = *participant.info.connection;
  SessionState& session = sessions_[participant.info.id];
  if (!session.setup_sent) {
    v1::CoordinatorMessage message;
    message.mutable_job_setup()->set_job_id(job_id_);
    *message.mutable_job_setup()->mutable_spec() = job_->spec;
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
      encoded_params_ = std::move(chunks).value();
      encoded_version_ = round.version;
    }
    for (size_t i = 0; i < encoded_params_.size(); ++i) {
      v1::CoordinatorMessage message;
      v1::Parameters* parameters = message.mutable_parameters();
      parameters->set_job_id(job_id_);
      parameters->set_version(round.version);
      *parameters->mutable_chunk() = encoded_params_[i];
      parameters->set_last(i + 1 == encoded_params_.size());
      if (!connection.Send(std::move(message))) return false;
    }
    session.version_sent = round.version;
  }
  auto in_flight = std::make_unique<InFlight>();
  in_flight->id = hooks_.next_assignment_id();
  in_flight->worker_id = participant.info.id;
  in_flight->begin = begin;
  in_flight->end = end;
  in_flight->deadline = absl::Now() + options_.assignment_timeout;
  if (round.train) {
    in_flight->assembler = std::make_unique<rpc::TensorAssembler>(specs_, job_->dtype);
  }
  v1::CoordinatorMessage message;
  v1::Assignment* assignment = message.mutable_assignment();
  assignment->set_job_id(job_id_);
  assignment->set_assignment_id(in_flight->id);
  assignment->set_version(round.version);
  assignment->set_split(round.split);
  assignment->set_round(round.round);
  for (int64_t t = begin; t < end; ++t) assignment->add_task_indices(t);
  assignment->set_eval_steps(round.train ? 0 : round.eval_steps);
  if (!connection.Send(std::move(message))) return false;
  if (hooks_.counters) ++hooks_.counters->assignments_sent;
  participant.busy = true;
  in_flight_[in_flight->id] = std::move(in_flight);
  return true;
}

void JobRunner::HandleEvent(Round& round, Event& event) {
  switch (event.message.kind_case()) {
    case v1::WorkerMessage::kGradient:
      HandleGradient(round, event.worker_id, event.message.gradient());
      break;
    case v1::WorkerMessage::kDone:
      HandleDone(round, event.worker_id, event.message.done());
      break;
    default:
      break;  // the RPC layer routes only gradients and completions here
  }
}

JobRunner::InFlight* JobRunner::OwnedAssignment(int64_t assignment_id,
                                                const std::string& worker_id) {
  auto it = in_flight_.find(assignment_id);
  if (it == in_flight_.end()) {
    if (hooks_.counters) ++hooks_.counters->stale_messages;
    return nullptr;
  }
  if (it->second->worker_id != worker_id) {
    // Someone else's assignment: refuse the message, leave the assignment alone.
    if (hooks_.counters) ++hooks_.counters->rejected_results;
    return nullptr;
  }
  return it->second.get();
}

void JobRunner::HandleGradient(Round& round, const std::string& worker_id,
                               const v1::TaskGradient& gradient) {
  InFlight* owned = OwnedAssignment(gradient.assignment_id(), worker_id);
  if (owned == nullptr) return;
  InFlight& a = *owned;
  const int64_t t = gradient.task_index();
  if (!round.train) {
    return Requeue(round, a.id, "gradient sent for an evaluation assignment");
  }
  if (t < a.begin || t >= a.end || round.completed[t]) {
    return Requeue(round, a.id,
                   absl::StrCat("gradient for task ", t, " outside the assignment's open tasks"));
  }
  if (a.current_task == -1) {
    a.current_task = t;
    a.assembler->Reset();
  } else if (a.current_task != t) {
    return Requeue(
        round, a.id,
        absl::StrCat("gradient chunks of task ", t, " interleaved with task ", a.current_task));
  }
  absl::Status status = a.assembler->Add(gradient.chunk());
  if (!status.ok()) {
    return Requeue(round, a.id, absl::StrCat("task ", t, ": ", status.message()));
  }
  if (!gradient.last()) return;
  auto tensors = a.assembler->Finish();
  if (!tensors.ok()) {
    return Requeue(round, a.id, absl::StrCat("task ", t, ": ", tensors.status().message()));
  }
  const bool classification = meta::IsClassificationFamily(job_->spec.tasks().family());
  if (!std::isfinite(gradient.query_loss()) ||
      (classification && !std::isfinite(gradient.query_accuracy()))) {
    return Requeue(round, a.id, absl::StrCat("task ", t, ": non-finite query metrics"));
  }
  round.gradients[t] = std::move(tensors).value();
  round.loss[t] = gradient.query_loss();
  round.accuracy[t] = gradient.query_accuracy();
  round.completed[t] = 1;
  --round.remaining;
  a.current_task = -1;
}

void JobRunner::HandleDone(Round& round, const std::string& worker_id,
                           const v1::AssignmentDone& done) {
  InFlight* owned = OwnedAssignment(done.assignment_id(), worker_id);
  if (owned == nullptr) return;
  InFlight& a = *owned;
  if (!done.error().empty()) {
    return Requeue(round, a.id, absl::StrCat(worker_id, ": ", done.error()));
  }
  if (round.train) {
    for (int64_t t = a.begin; t < a.end; ++t) {
      if (!round.completed[t]) {
        return Requeue(round, a.id,
                       absl::StrCat("assignment done without a gradient for task ", t));
      }
    }
  } else {
    const bool classification = meta::IsClassificationFamily(job_->spec.tasks().family());
    std::vector<const v1::TaskMetrics*> by_task(a.end - a.begin, nullptr);
    for (const auto& m : done.metrics()) {
      const int64_t t = m.task_index();
      if (t < a.begin || t >= a.end || by_task[t - a.begin] != nullptr) {
        return Requeue(round, a.id, absl::StrCat("metrics for unexpected task ", t));
      }
      bool finite = std::isfinite(m.loss_before()) && std::isfinite(m.loss_after());
      if (classification) {
        finite = finite && std::isfinite(m.accuracy_before()) && std::isfinite(m.accuracy_after());
      }
      if (!finite) return Requeue(round, a.id, absl::StrCat("task ", t, ": non-finite metrics"));
      by_task[t - a.begin] = &m;
    }
    for (int64_t t = a.begin; t < a.end; ++t) {
      if (by_task[t - a.begin] == nullptr) {
        return Requeue(round, a.id, absl::StrCat("no metrics for task ", t));
      }
    }
    for (int64_t t = a.begin; t < a.end; ++t) {
      round.metrics[t] = *by_task[t - a.begin];
      round.completed[t] = 1;
      --round.remaining;
    }
  }
  in_flight_.erase(a.id);  // destroys `a`
  ReleaseWorker(worker_id);
}

void JobRunner::Requeue(Round& round, int64_t assignment_id, const std::string& rejection) {
  auto it = in_flight_.find(assignment_id);
  if (it == in_flight_.end()) return;
  const InFlight& a = *it->second;
  if (!rejection.empty() && hooks_.counters) ++hooks_.counters->rejected_results;
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
    if (hooks_.counters) ++hooks_.counters->reassigned_tasks;
    if (!rejection.empty() && ++round.attempts[t] >= options_.max_task_attempts &&
        round.failure.ok()) {
      round.failure = absl::FailedPreconditionError(
          absl::StrCat("task ", t, " of ", v1::TaskSplit_Name(round.split), " round ", round.round,
                       " failed ", round.attempts[t], " times; last: ", rejection));
    }
  }
  for (auto r = runs.rbegin(); r != runs.rend(); ++r) round.pending.push_front(*r);
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

void JobRunner::ReleaseWorker(const std::string& worker_id) {
  for (auto& p : participants_) {
    if (p.info.id == worker_id) p.busy = false;
  }
}

void JobRunner::HandleWorkerChanges(Round& round) {
  std::set<std::string> live;
  for (const auto& info : hooks_.live_workers()) live.insert(info.id);
  std::vector<int64_t> orphaned;
  for (const auto& [id, a] : in_flight_) {
    if (!live.count(a->worker_id)) orphaned.push_back(id);
  }
  for (int64_t id : orphaned) Requeue(round, id, "");
  const size_t before = participants_.size();
  participants_.erase(std::remove_if(participants_.begin(), participants_.end(),
                                     [&](const Participant& p) { return !live.count(p.info.id); }),
                      participants_.end());
  if (participants_.size() != before) ReportWorkers();
}

void JobRunner::CheckDeadlines(Round& round) {
  const absl::Time now = absl::Now();
  std::vector<std::pair<int64_t, std::string>> late;
  for (const auto& [id, a] : in_flight_) {
    if (a->deadline <= now) late.emplace_back(id, a->worker_id);
  }
  for (const auto& [id, worker_id] : late) {
    Requeue(round, id, "");
    // A worker that misses its deadline is presumed hung: it sits out the rest of the round.
    participants_.erase(
        std::remove_if(participants_.begin(), participants_.end(),
                       [&](const Participant& p) { return p.info.id == worker_id; }),
        participants_.end());
  }
  if (!late.empty()) ReportWorkers();
}

meta::EvaluationSummary JobRunner::Summarize(const Round& round) const {
  const bool classification = meta::IsClassificationFamily(job_->spec.tasks().family());
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
  if (classification) {
    adaptation.accuracy_before = tensor(ab);
    adaptation.accuracy_after = tensor(aa);
  }
  meta::EvaluationAccumulator accumulator;
  accumulator.Add(adaptation);
  return accumulator.Summary();
}

// ---------------------------------------------------------------------------------------
// Checkpoints

absl::Status JobRunner::WriteStateDict(const std::string& which, const meta::TensorList& params,
                                       int64_t step) {
  ASSIGN_OR_RETURN(std::string bytes, meta::SerializeStateDict(meta::ToStateDict(specs_, params)));
  if (!options_.job_dir.empty()) {
    RETURN_IF_ERROR(meta::WriteFileAtomically(
        (std::filesystem::path(options_.job_dir) / which).string(), bytes));
  }
  if (hooks_.checkpoint) {
    hooks_.checkpoint(which == kBestFile ? "best" : "final", bytes, step);
  }
  return absl::OkStatus();
}

absl::Status JobRunner::WriteResume(int64_t step, const meta::OuterOptimizer& optimizer) {
  if (options_.job_dir.empty()) return absl::OkStatus();
  ResumeState state;
  hooks_.update([&](v1::JobStatus& status) { state.status = status; },
                v1::JobEvent::KIND_UNSPECIFIED);
  state.step = step;
  state.params = params_;
  state.optimizer_state = optimizer.State();
  state.validation_losses = validation_losses_;
  state.best_params = best_params_;
  ASSIGN_OR_RETURN(std::string bytes, SerializeResumeState(state, specs_));
  return meta::WriteFileAtomically((std::filesystem::path(options_.job_dir) / kResumeFile).string(),
                                   bytes);
}

}  // namespace metatrain::coordinator
