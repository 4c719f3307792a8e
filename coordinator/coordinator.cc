#include "coordinator/coordinator.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging/log.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"

namespace metatrain::coordinator {
namespace {

namespace fs = std::filesystem;

// Written when a job finishes: its final JobStatus.
constexpr char kStatusFile[] = "status.pb";
// Written at submission: the JobStatus (with the normalised spec) of a job not yet started,
// so a queued job survives a restart too.
constexpr char kSubmittedFile[] = "submitted.pb";

bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

// SubmitJob reports every refusal of a spec as INVALID_ARGUMENT, keeping the message
// (which names the field) of whatever the core returned.
absl::Status AsInvalidArgument(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInvalidArgument) return status;
  return absl::InvalidArgumentError(status.message());
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// JobEventQueue

std::optional<v1::JobEvent> JobEventQueue::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !events_.empty() || closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (events_.empty()) return std::nullopt;
  v1::JobEvent event = std::move(events_.front());
  events_.pop_front();
  return event;
}

bool JobEventQueue::finished() const {
  absl::MutexLock lock(&mu_);
  return closed_ && events_.empty();
}

void JobEventQueue::Push(v1::JobEvent event, bool terminal) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  events_.push_back(std::move(event));
  if (terminal) closed_ = true;
}

void JobEventQueue::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

// ---------------------------------------------------------------------------------------
// Coordinator

struct Coordinator::Job {
  std::string id;
  int64_t seq = 0;
  std::shared_ptr<const meta::JobContext> context;  // null for jobs loaded finished
  meta::TensorList initial_params;
  std::optional<ResumeState> resume;
  std::atomic<int64_t> next_assignment{1};

  // Guarded by Coordinator::mu_ (a lock of another object, which the thread-safety
  // analysis cannot name from here; every access below holds it).
  v1::JobStatus status;
  std::vector<std::weak_ptr<JobEventQueue>> watchers;
  std::shared_ptr<JobRunner> runner;
  std::map<std::string, CheckpointData> checkpoints;
};

Coordinator::Coordinator(CoordinatorOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : *Clock::Real()),
      metrics_(std::make_shared<CoordinatorMetrics>(options_.metrics_retention, &clock_)) {}

Coordinator::~Coordinator() { Shutdown(); }

std::string Coordinator::JobDir(const std::string& job_id) const {
  if (options_.checkpoint_dir.empty()) return "";
  return (fs::path(options_.checkpoint_dir) / job_id).string();
}

absl::Status Coordinator::Start() {
  if (options_.checkpoint_dir.empty()) return absl::OkStatus();
  std::error_code ec;
  fs::create_directories(options_.checkpoint_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint_dir '", options_.checkpoint_dir, "': ", ec.message()));
  }
  std::vector<std::pair<int64_t, std::string>> found;
  for (const auto& entry : fs::directory_iterator(options_.checkpoint_dir, ec)) {
    const std::string name = entry.path().filename().string();
    int64_t seq = 0;
    if (!entry.is_directory() || name.rfind("job-", 0) != 0 ||
        !absl::SimpleAtoi(name.substr(4), &seq)) {
      continue;
    }
    found.emplace_back(seq, name);
  }
  std::sort(found.begin(), found.end());
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [seq, name] : found) next_seq_ = std::max(next_seq_, seq + 1);
  }
  if (!options_.resume) return absl::OkStatus();
  for (const auto& [seq, name] : found) {
    absl::Status status = LoadJob(name);
    if (!status.ok()) {
      LogLine(absl::StrCat("job ", name, " not resumed: ", status.message()));
      ListUnresumableJob(name, seq, status);
    }
  }
  absl::MutexLock lock(&mu_);
  MaybeStartJobsLocked();
  return absl::OkStatus();
}

absl::Status Coordinator::LoadJob(const std::string& dir_name) {
  const fs::path dir = fs::path(options_.checkpoint_dir) / dir_name;
  auto job = std::make_shared<Job>();
  job->id = dir_name;
  absl::SimpleAtoi(dir_name.substr(4), &job->seq);

  // A finished job left its final status; it is listed but not run again.
  if (auto bytes = ReadFile((dir / kStatusFile).string()); bytes.ok()) {
    if (!job->status.ParseFromString(*bytes)) {
      return absl::DataLossError(absl::StrCat(kStatusFile, " is corrupt"));
    }
    absl::MutexLock lock(&mu_);
    jobs_[job->id] = job;
    by_seq_[job->seq] = job;
    RecordJobStateLocked(nullptr);
    return absl::OkStatus();
  }
  if (!fs::exists(dir / kResumeFile)) {
    // Never started: queue it afresh.
    ASSIGN_OR_RETURN(std::string bytes, ReadFile((dir / kSubmittedFile).string()));
    if (!job->status.ParseFromString(bytes)) {
      return absl::DataLossError(absl::StrCat(kSubmittedFile, " is corrupt"));
    }
    ASSIGN_OR_RETURN(v1::JobSpec spec, meta::NormalizeJobSpec(job->status.spec()));
    ASSIGN_OR_RETURN(meta::JobContext context, meta::MakeJobContext(spec));
    job->context = std::make_shared<meta::JobContext>(std::move(context));
    ASSIGN_OR_RETURN(job->initial_params, meta::InitialMetaParams(*job->context));
    job->status.set_state(v1::QUEUED);
    absl::MutexLock lock(&mu_);
    jobs_[job->id] = job;
    by_seq_[job->seq] = job;
    queue_.push_back(job);
    RecordJobStateLocked(job.get());
    LogLine(absl::StrCat("job ", job->id, " queued again after a restart (it had not started)"));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(meta::StateDict dict, meta::LoadStateDict((dir / kResumeFile).string()));
  ASSIGN_OR_RETURN(v1::JobStatus status, ResumeStatusFromDict(dict));
  ASSIGN_OR_RETURN(v1::JobSpec spec, meta::NormalizeJobSpec(status.spec()));
  ASSIGN_OR_RETURN(meta::JobContext context, meta::MakeJobContext(spec));
  auto shared_context = std::make_shared<meta::JobContext>(std::move(context));
  ASSIGN_OR_RETURN(ResumeState resume,
                   ResumeStateFromDict(dict, shared_context->learner->meta_param_specs(),
                                       shared_context->dtype));
  job->context = std::move(shared_context);
  job->status = resume.status;
  job->status.set_state(v1::QUEUED);
  job->status.set_workers(0);
  const int64_t resume_step = resume.step;
  job->resume = std::move(resume);
  absl::MutexLock lock(&mu_);
  jobs_[job->id] = job;
  by_seq_[job->seq] = job;
  queue_.push_back(job);
  RecordJobStateLocked(job.get());
  LogLine(absl::StrCat("job ", job->id, " queued to resume from step ", resume_step));
  return absl::OkStatus();
}

void Coordinator::ListUnresumableJob(const std::string& dir_name, int64_t seq,
                                     const absl::Status& why) {
  auto job = std::make_shared<Job>();
  job->id = dir_name;
  job->seq = seq;
  // The spec as submitted, for listings; a corrupt file leaves it empty.
  const fs::path dir = fs::path(options_.checkpoint_dir) / dir_name;
  if (auto bytes = ReadFile((dir / kSubmittedFile).string()); bytes.ok()) {
    if (!job->status.ParseFromString(*bytes)) job->status.Clear();
  }
  job->status.set_job_id(dir_name);
  job->status.set_state(v1::FAILED);
  job->status.set_workers(0);
  job->status.set_error(
      absl::StrCat("not resumed after a coordinator restart: ", why.message(),
                   " (fix this and restart the coordinator to resume from its last checkpoint)"));
  absl::MutexLock lock(&mu_);
  jobs_[job->id] = job;
  by_seq_[job->seq] = job;
  RecordJobStateLocked(nullptr);
}

void Coordinator::Shutdown(const std::string& reason) {
  std::vector<std::shared_ptr<JobRunner>> runners;
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ && threads_.empty()) return;
    shutting_down_ = true;
    for (auto& [id, job] : jobs_) {
      if (job->runner) runners.push_back(job->runner);
    }
    threads.swap(threads_);
  }
  for (auto& runner : runners) runner->Stop();
  for (auto& thread : threads) thread.join();
  v1::CoordinatorMessage message;
  message.mutable_shutdown()->set_reason(reason);
  for (const auto& worker : workers_.Snapshot()) worker.connection->Send(message);
  absl::MutexLock lock(&mu_);
  for (auto& [id, job] : jobs_) {
    for (auto& weak : job->watchers) {
      if (auto queue = weak.lock()) queue->Close();
    }
    job->watchers.clear();
  }
}

absl::StatusOr<v1::JobStatus> Coordinator::SubmitJob(const v1::JobSpec& spec) {
  auto normalized = meta::NormalizeJobSpec(spec);
  if (!normalized.ok()) return AsInvalidArgument(normalized.status());
  auto context = meta::MakeJobContext(*normalized);
  if (!context.ok()) {
    const auto& tasks = normalized->tasks();
    const std::string message(context.status().message());
    // Loader errors name a file; the user needs to know which field pointed there.
    if (!tasks.data_dir().empty() && message.find("data_dir") == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("tasks.data_dir '", tasks.data_dir(), "': ", message));
    }
    return AsInvalidArgument(context.status());
  }
  auto shared_context = std::make_shared<meta::JobContext>(std::move(context).value());
  auto initial = meta::InitialMetaParams(*shared_context);
  if (!initial.ok()) return AsInvalidArgument(initial.status());

  auto job = std::make_shared<Job>();
  job->context = std::move(shared_context);
  job->initial_params = std::move(initial).value();
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return absl::UnavailableError("coordinator is shutting down");
  job->seq = next_seq_++;
  job->id = absl::StrFormat("job-%06d", job->seq);
  if (!options_.checkpoint_dir.empty()) {
    std::error_code ec;
    fs::create_directories(JobDir(job->id), ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create ", JobDir(job->id), ": ", ec.message()));
    }
  }
  v1::JobStatus& status = job->status;
  status.set_job_id(job->id);
  *status.mutable_spec() = job->context->spec;
  status.set_state(v1::QUEUED);
  status.set_total_steps(job->context->spec.steps());
  status.set_train_accuracy(-1);
  status.set_submitted_unix_ms(absl::ToUnixMillis(clock_.Now()));
  if (!options_.checkpoint_dir.empty()) {
    RETURN_IF_ERROR(meta::WriteFileAtomically((fs::path(JobDir(job->id)) / kSubmittedFile).string(),
                                              status.SerializeAsString()));
  }
  jobs_[job->id] = job;
  by_seq_[job->seq] = job;
  queue_.push_back(job);
  RecordJobStateLocked(job.get());
  const v1::JobSpec& submitted = job->context->spec;
  LogLine(absl::StrCat("job ", job->id, " submitted", submitted.name().empty() ? "" : " (",
                       submitted.name(), submitted.name().empty() ? "" : ")", ": ",
                       submitted.algorithm(), " on ", submitted.tasks().family(), ", ",
                       submitted.steps(), " steps, ", queue_.size() - 1, " job(s) ahead"));
  MaybeStartJobsLocked();
  return job->status;
}

std::shared_ptr<Coordinator::Job> Coordinator::FindLocked(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<Coordinator::Job>> Coordinator::Find(
    const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto job = FindLocked(job_id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  return job;
}

absl::StatusOr<v1::JobStatus> Coordinator::GetJob(const std::string& job_id) const {
  absl::MutexLock lock(&mu_);
  auto job = FindLocked(job_id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  return job->status;
}

std::vector<v1::JobStatus> Coordinator::ListJobs() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::JobStatus> out;
  for (const auto& [seq, job] : by_seq_) out.push_back(job->status);
  return out;
}

absl::StatusOr<v1::JobStatus> Coordinator::CancelJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto job = FindLocked(job_id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (job->status.state() == v1::QUEUED) {
    queue_.erase(std::remove(queue_.begin(), queue_.end(), job), queue_.end());
    FinishJobLocked(*job, v1::CANCELLED, "");
    return job->status;
  }
  if (job->status.state() == v1::RUNNING && job->runner) {
    // Cancel() only flags the runner's inbox, which never waits for this lock.
    job->runner->Cancel();
    // The runner notices at its next wake-up, which Cancel() triggers at once.
    auto stopped = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return IsTerminal(job->status.state()) || shutting_down_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&stopped), absl::Seconds(30));
  }
  return job->status;
}

absl::StatusOr<std::shared_ptr<JobEventQueue>> Coordinator::WatchJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto job = FindLocked(job_id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  auto queue = std::make_shared<JobEventQueue>();
  v1::JobEvent event;
  event.set_kind(v1::JobEvent::SNAPSHOT);
  *event.mutable_status() = job->status;
  const bool terminal = IsTerminal(job->status.state());
  queue->Push(std::move(event), terminal);
  if (!terminal) {
    if (shutting_down_) {
      queue->Close();
    } else {
      job->watchers.push_back(queue);
    }
  }
  return queue;
}

absl::StatusOr<CheckpointData> Coordinator::FetchCheckpoint(const std::string& job_id,
                                                            const std::string& which) const {
  const std::string kind = which.empty() ? "best" : which;
  if (kind != "best" && kind != "final") {
    return absl::InvalidArgumentError(
        absl::StrCat("which must be \"best\" or \"final\" (got \"", which, "\")"));
  }
  int64_t step = 0;
  {
    absl::MutexLock lock(&mu_);
    auto job = FindLocked(job_id);
    if (!job) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
    auto it = job->checkpoints.find(kind);
    if (it != job->checkpoints.end()) return it->second;
    step = kind == "best" ? job->status.best_step() : job->status.step();
  }
  // Jobs loaded from an earlier run of the coordinator have their checkpoints on disk.
  if (!options_.checkpoint_dir.empty()) {
    const fs::path path = fs::path(JobDir(job_id)) / (kind == "best" ? kBestFile : kFinalFile);
    if (fs::exists(path)) {
      ASSIGN_OR_RETURN(std::string bytes, ReadFile(path.string()));
      return CheckpointData{std::move(bytes), step};
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("job '", job_id, "' has no ", kind, " checkpoint yet"));
}

void Coordinator::MaybeStartJobsLocked() {
  while (!shutting_down_ && running_ < std::max(1, options_.max_running_jobs) && !queue_.empty()) {
    std::shared_ptr<Job> job = queue_.front();
    queue_.pop_front();
    StartJobLocked(job);
  }
}

void Coordinator::StartJobLocked(const std::shared_ptr<Job>& job) {
  ++running_;
  job->status.set_state(v1::RUNNING);
  job->status.set_started_unix_ms(absl::ToUnixMillis(clock_.Now()));
  JobRunner::Hooks hooks;
  hooks.live_workers = [this] { return workers_.Snapshot(); };
  std::weak_ptr<Job> weak = job;
  hooks.update = [this, weak](const std::function<void(v1::JobStatus&)>& mutate,
                              v1::JobEvent::Kind kind) {
    auto job = weak.lock();
    if (!job) return;
    absl::MutexLock lock(&mu_);
    mutate(job->status);
    if (kind != v1::JobEvent::KIND_UNSPECIFIED) PublishLocked(*job, kind);
  };
  Job* raw = job.get();
  // The job's sequence number in the high bits routes results back to it.
  hooks.next_assignment_id = [raw] { return (raw->seq << 32) | raw->next_assignment++; };
  hooks.checkpoint = [this, weak](const std::string& which, const std::string& bytes,
                                  int64_t step) {
    auto job = weak.lock();
    if (!job) return;
    absl::MutexLock lock(&mu_);
    job->checkpoints[which] = CheckpointData{bytes, step};
  };
  hooks.metrics = metrics_.get();
  hooks.job_metrics = &metrics_->Job(job->id);
  RunnerOptions runner_options;
  runner_options.job_dir = JobDir(job->id);
  runner_options.pool.assignment_timeout = options_.assignment_timeout;
  runner_options.pool.max_task_attempts = options_.max_task_attempts;
  runner_options.pool.poll_interval = options_.poll_interval;
  runner_options.pool.clock = &clock_;
  job->runner =
      std::make_shared<JobRunner>(job->id, job->context, std::move(job->initial_params),
                                  std::move(job->resume), runner_options, std::move(hooks));
  job->resume.reset();
  PublishLocked(*job, v1::JobEvent::STATE_CHANGE);
  RecordJobStateLocked(job.get());
  LogLine(absl::StrCat("job ", job->id, " started at step ", job->status.step(), " of ",
                       job->status.total_steps(), " with ", workers_.size(),
                       " worker(s) connected"));
  threads_.emplace_back(&Coordinator::RunJob, this, job);
}

void Coordinator::RunJob(std::shared_ptr<Job> job) {
  const absl::Status status = job->runner->Run();
  absl::MutexLock lock(&mu_);
  --running_;
  if (shutting_down_ && !status.ok() && status.code() != absl::StatusCode::kCancelled) {
    // Interrupted by shutdown: the job stays resumable from its resume.pt.
    job->runner.reset();
    return;
  }
  if (status.ok()) {
    FinishJobLocked(*job, v1::SUCCEEDED, "");
  } else if (status.code() == absl::StatusCode::kCancelled) {
    FinishJobLocked(*job, v1::CANCELLED, "");
  } else {
    FinishJobLocked(*job, v1::FAILED, std::string(status.message()));
  }
  job->runner.reset();
  MaybeStartJobsLocked();
}

void Coordinator::FinishJobLocked(Job& job, v1::JobState state, const std::string& error) {
  job.status.set_state(state);
  job.status.set_error(error);
  job.status.set_workers(0);
  job.status.set_finished_unix_ms(absl::ToUnixMillis(clock_.Now()));
  job.initial_params.clear();
  if (!options_.checkpoint_dir.empty()) {
    absl::Status written = meta::WriteFileAtomically(
        (fs::path(JobDir(job.id)) / kStatusFile).string(), job.status.SerializeAsString());
    if (!written.ok()) LogLine(absl::StrCat("job ", job.id, ": ", written.message()));
  }
  PublishLocked(job, v1::JobEvent::STATE_CHANGE);
  RecordJobStateLocked(&job);
  if (job.context != nullptr) metrics_->RetireJob(job.id);
  std::string outcome;
  if (state == v1::SUCCEEDED) {
    const v1::EvaluationResult& test = job.status.test();
    outcome = absl::StrCat(" after ", job.status.step(), " steps; meta-test loss ",
                           absl::SixDigits(test.loss_after().mean()));
    if (test.accuracy_after().n() > 0) {
      absl::StrAppend(&outcome, ", accuracy ", absl::SixDigits(test.accuracy_after().mean()), " ± ",
                      absl::SixDigits(test.accuracy_after().ci95()));
    }
  } else if (state == v1::FAILED) {
    outcome = absl::StrCat(": ", error);
  } else {
    outcome = absl::StrCat(" at step ", job.status.step());
  }
  LogLine(
      absl::StrCat("job ", job.id, " ", absl::AsciiStrToLower(v1::JobState_Name(state)), outcome));
}

void Coordinator::RecordJobStateLocked(const Job* job) {
  std::map<v1::JobState, int64_t> by_state;
  for (const auto& [id, each] : jobs_) ++by_state[each->status.state()];
  metrics_->SetJobsByState(by_state, static_cast<int64_t>(queue_.size()));
  if (job == nullptr || job->context == nullptr) return;
  JobMetrics& series = metrics_->Job(job->id);
  series.SetState(job->status.state());
  series.SetPlannedSteps(job->status.total_steps());
}

void Coordinator::RecordWorkers() {
  std::map<std::string, int64_t> by_device;
  for (const auto& worker : workers_.Snapshot()) {
    ++by_device[worker.hello.device().empty() ? "cpu" : worker.hello.device()];
  }
  metrics_->SetWorkersByDevice(by_device);
}

void Coordinator::PublishLocked(Job& job, v1::JobEvent::Kind kind) {
  const bool terminal = IsTerminal(job.status.state());
  v1::JobEvent event;
  event.set_kind(kind);
  *event.mutable_status() = job.status;
  // The curve changes only at validations; resending it with every step would make a long
  // watch quadratic in the number of validations.
  if (kind == v1::JobEvent::STEP) event.mutable_status()->clear_validation_history();
  std::vector<std::weak_ptr<JobEventQueue>> alive;
  for (auto& weak : job.watchers) {
    if (auto queue = weak.lock()) {
      queue->Push(event, terminal);
      if (!terminal) alive.push_back(weak);
    }
  }
  job.watchers.swap(alive);
}

absl::StatusOr<std::string> Coordinator::AddWorker(const v1::Hello& hello,
                                                   std::shared_ptr<WorkerConnection> connection) {
  auto added = workers_.Add(hello, std::move(connection));
  if (!added.ok()) {
    LogLine(absl::StrCat("worker ", hello.name().empty() ? "(unnamed)" : hello.name(),
                         " refused: ", added.status().message()));
    return added.status();
  }
  std::string id = *std::move(added);
  metrics_->SessionOpened();
  RecordWorkers();
  LogLine(absl::StrCat("worker ", id, " (", hello.name(), ") joined: device ",
                       hello.device().empty() ? "cpu" : hello.device(), ", capacity ",
                       hello.capacity(), hello.version().empty() ? "" : ", version ",
                       hello.version()));
  std::vector<std::shared_ptr<JobRunner>> runners;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [seq, job] : by_seq_) {
      if (job->runner) runners.push_back(job->runner);
    }
  }
  for (auto& runner : runners) runner->WorkersChanged();
  return id;
}

void Coordinator::RemoveWorker(const std::string& worker_id) {
  std::string name = worker_id;
  for (const auto& worker : workers_.Snapshot()) {
    if (worker.id == worker_id && !worker.hello.name().empty()) name = worker.hello.name();
  }
  if (!workers_.Remove(worker_id)) return;
  RecordWorkers();
  metrics_->RetireWorker(name);
  std::vector<std::shared_ptr<JobRunner>> runners;
  {
    absl::MutexLock lock(&mu_);
    if (!shutting_down_) {
      metrics_->SessionLost();
      LogLine(absl::StrCat("worker ", worker_id, " (", name, ") left"));
    }
    for (auto& [seq, job] : by_seq_) {
      if (job->runner) runners.push_back(job->runner);
    }
  }
  for (auto& runner : runners) runner->WorkersChanged();
}

void Coordinator::OnWorkerMessage(const std::string& worker_id, v1::WorkerMessage message) {
  int64_t assignment_id = 0;
  if (message.has_gradient()) {
    assignment_id = message.gradient().assignment_id();
  } else if (message.has_done()) {
    assignment_id = message.done().assignment_id();
  } else {
    metrics_->ResultRejected(RejectReason::kMalformed);
    return;
  }
  std::shared_ptr<JobRunner> runner;
  {
    absl::MutexLock lock(&mu_);
    auto it = by_seq_.find(assignment_id >> 32);
    if (it != by_seq_.end()) runner = it->second->runner;
  }
  if (!runner) {
    metrics_->StaleMessage();
    return;
  }
  runner->PostMessage(worker_id, std::move(message));
}

}  // namespace metatrain::coordinator
