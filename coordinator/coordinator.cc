#include "coordinator/coordinator.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/logging/log.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_paths.h"
#include "common/meta/job_spec.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"
#include "coordinator/result_intake.h"
#include "google/protobuf/util/message_differencer.h"

namespace metatrain::coordinator {
namespace {

namespace fs = std::filesystem;

// Written when a job finishes: its final JobStatus.
constexpr char kStatusFile[] = "status.pb";
// Written at submission: the JobStatus (with the normalised spec) of a job not yet started,
// so a queued job survives a restart too.
constexpr char kSubmittedFile[] = "submitted.pb";
// SubmitJobRequest.request_id of the job, when it had one: read back at Start(), so that a
// client retrying across a coordinator restart still gets the same job.
constexpr char kRequestIdFile[] = "request_id";

bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED || state == v1::CANCELLED;
}

// SubmitJob reports every refusal of a spec as INVALID_ARGUMENT, keeping the message
// (which names the field) of whatever the core returned; a job over a memory limit is
// RESOURCE_EXHAUSTED (naming the limit).
absl::Status AsInvalidArgument(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kInvalidArgument ||
      status.code() == absl::StatusCode::kResourceExhausted) {
    return status;
  }
  return absl::InvalidArgumentError(status.message());
}

// Copies `status` into `out` without its validation history, which can be long: the
// history is swapped out and back (O(1)) instead of being copied and then cleared.
void CopyWithoutHistory(v1::JobStatus& status, v1::JobStatus* out) {
  google::protobuf::RepeatedPtrField<v1::ValidationPoint> history;
  history.Swap(status.mutable_validation_history());
  *out = status;
  history.Swap(status.mutable_validation_history());
}

constexpr int kDefaultPageSize = 100;
constexpr int kMaxPageSize = 1000;
constexpr size_t kMaxRequestIdBytes = 128;

absl::Status CheckDownloadSize(const std::string& job_id, const std::string& kind, int64_t size,
                               int64_t limit) {
  if (size <= limit) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrCat(
      "job '", job_id, "' ", kind, " checkpoint is ", files::HumanBytes(size),
      ", over the limit of ", files::HumanBytes(limit), " (--max_checkpoint_download_mb)"));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

// ---------------------------------------------------------------------------------------
// JobEventQueue

JobEventQueue::Event JobEventQueue::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !events_.empty() || closed_; };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (events_.empty()) return nullptr;
  Event event = std::move(events_.front().first);
  bytes_ -= events_.front().second;
  events_.pop_front();
  return event;
}

bool JobEventQueue::finished() const {
  absl::MutexLock lock(&mu_);
  return closed_ && events_.empty();
}

absl::Status JobEventQueue::end_status() const {
  absl::MutexLock lock(&mu_);
  return end_status_;
}

int JobEventQueue::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(events_.size());
}

bool JobEventQueue::open() const {
  absl::MutexLock lock(&mu_);
  return !closed_;
}

void JobEventQueue::Push(Event event, int64_t bytes, bool terminal) {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  if (event->kind() == v1::JobEvent::STEP) {
    // A STEP carries the whole current status: older queued STEPs add nothing.
    for (auto it = events_.begin(); it != events_.end();) {
      if (it->first->kind() == v1::JobEvent::STEP) {
        bytes_ -= it->second;
        it = events_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (!terminal && !events_.empty() &&
      (static_cast<int>(events_.size()) >= max_events_ || bytes_ + bytes > max_bytes_)) {
    events_.clear();
    bytes_ = 0;
    closed_ = true;
    end_status_ = absl::ResourceExhaustedError(
        absl::StrCat("watch ended: the client fell more than ", max_events_, " events or ",
                     max_bytes_, " bytes behind; watch again (the current status comes first)"));
    return;
  }
  events_.emplace_back(std::move(event), bytes);
  bytes_ += bytes;
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
  // Submitted or resumed by this process, so it has metric series (not one loaded
  // finished or listed as unresumable).
  bool has_series = false;
  // The job's data and model. Set by LoadJob for resumed jobs, else built on the job's
  // thread when it starts (PrepareJob); released when the job ends. Only the job's own
  // thread touches it (and initial_params, resume) once the job has started.
  std::shared_ptr<const meta::JobContext> context;
  meta::TensorList initial_params;
  std::optional<ResumeState> resume;
  std::atomic<int64_t> next_assignment{1};

  // Guarded by Coordinator::mu_ (a lock of another object, which the thread-safety
  // analysis cannot name from here; every access below holds it).
  v1::JobStatus status;
  bool cancel_requested = false;  // CancelJob while the job's thread prepares it
  bool finishing = false;         // FinishJobLocked is writing its status.pb
  std::vector<std::weak_ptr<JobEventQueue>> watchers;
  std::shared_ptr<JobRunner> runner;
  // best/final while the job runs; after it ends only for memory-only coordinators.
  std::map<std::string, CheckpointData> checkpoints;
  bool checkpoints_released = false;  // memory-only: dropped (memory_checkpoint_jobs)
};

Coordinator::Coordinator(CoordinatorOptions options)
    : options_(std::move(options)),
      clock_(options_.clock != nullptr ? *options_.clock : *Clock::Real()),
      quarantine_(options_.quarantine),
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
  for (const auto& entry : found) {
    // Named copies: clang 14 cannot capture a structured binding in a C++17 lambda.
    const int64_t seq = entry.first;
    const std::string& name = entry.second;
    // LibTorch reads the job's files: an exception fails this job's resume, not Start.
    absl::Status status = CatchTorch(absl::StrCat("loading ", name), [&] { return LoadJob(name); });
    if (!status.ok()) {
      LogLine(absl::StrCat("job ", name, " not resumed: ", status.message()));
      ListUnresumableJob(name, seq, status);
    }
    // Every listed job keeps its request id (the newest remembered_request_ids of them).
    if (auto request_id =
            ReadFile((fs::path(options_.checkpoint_dir) / name / kRequestIdFile).string());
        request_id.ok() && !request_id->empty() && request_id->size() <= kMaxRequestIdBytes) {
      absl::MutexLock lock(&mu_);
      RememberRequestIdLocked(*request_id, name);
    }
  }
  absl::MutexLock lock(&mu_);
  MaybeStartJobsLocked();
  return absl::OkStatus();
}

void Coordinator::RememberRequestIdLocked(const std::string& request_id,
                                          const std::string& job_id) {
  request_ids_[request_id] = job_id;
  request_id_order_.emplace_back(request_id, job_id);
  while (static_cast<int>(request_id_order_.size()) >
         std::max(1, options_.remembered_request_ids)) {
    auto old = request_ids_.find(request_id_order_.front().first);
    if (old != request_ids_.end() && old->second == request_id_order_.front().second) {
      request_ids_.erase(old);
    }
    request_id_order_.pop_front();
  }
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
  if (!HasResumeFile(dir.string())) {
    // Never started: queue it afresh.
    ASSIGN_OR_RETURN(std::string bytes, ReadFile((dir / kSubmittedFile).string()));
    if (!job->status.ParseFromString(bytes)) {
      return absl::DataLossError(absl::StrCat(kSubmittedFile, " is corrupt"));
    }
    ASSIGN_OR_RETURN(v1::JobSpec spec,
                     meta::NormalizeJobSpec(job->status.spec(), options_.job_limits));
    ASSIGN_OR_RETURN(meta::JobContext context, BuildJobContext(spec, &job->initial_params));
    job->context = std::make_shared<meta::JobContext>(std::move(context));
    job->status.set_state(v1::QUEUED);
    job->has_series = true;
    absl::MutexLock lock(&mu_);
    jobs_[job->id] = job;
    by_seq_[job->seq] = job;
    queue_.push_back(job);
    RecordJobStateLocked(job.get());
    LogLine(absl::StrCat("job ", job->id, " queued again after a restart (it had not started)"));
    return absl::OkStatus();
  }
  ASSIGN_OR_RETURN(LoadedResume loaded,
                   LoadResumeDict(dir.string(), options_.file_limits.checkpoint));
  if (!loaded.rejected.empty()) {
    LogLine(absl::StrCat("job ", dir_name, ": ", loaded.rejected, "; resuming from ", loaded.file));
  }
  const meta::StateDict& dict = loaded.dict;
  ASSIGN_OR_RETURN(v1::JobStatus status, ResumeStatusFromDict(dict));
  ASSIGN_OR_RETURN(v1::JobSpec spec, meta::NormalizeJobSpec(status.spec(), options_.job_limits));
  ASSIGN_OR_RETURN(meta::JobContext context, BuildJobContext(spec, nullptr));
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
  job->has_series = true;
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

void Coordinator::Shutdown(const std::string& reason, WorkerFate fate) {
  std::vector<std::shared_ptr<JobRunner>> runners;
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_ && threads_.empty() && ended_threads_.empty()) return;
    shutting_down_ = true;
    for (auto& [id, job] : jobs_) {
      if (job->runner) runners.push_back(job->runner);
    }
    for (auto& [seq, thread] : threads_) threads.push_back(std::move(thread));
    threads_.clear();
    for (auto& thread : ended_threads_) threads.push_back(std::move(thread));
    ended_threads_.clear();
  }
  for (auto& runner : runners) runner->Stop();
  for (auto& thread : threads) thread.join();
  if (fate == WorkerFate::kExit) {
    v1::CoordinatorMessage message;
    message.mutable_shutdown()->set_reason(reason);
    for (const auto& worker : workers_.Snapshot()) worker.connection->Send(message);
  }
  absl::MutexLock lock(&mu_);
  for (auto& [id, job] : jobs_) {
    for (auto& weak : job->watchers) {
      if (auto queue = weak.lock()) queue->Close();
    }
    job->watchers.clear();
  }
}

absl::StatusOr<v1::JobStatus> Coordinator::SubmitJob(const v1::JobSpec& spec,
                                                     const std::string& request_id) {
  if (request_id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id is longer than ", kMaxRequestIdBytes, " bytes"));
  }
  auto normalized = meta::NormalizeJobSpec(spec, options_.job_limits);
  if (!normalized.ok()) return AsInvalidArgument(normalized.status());
  // The cheap part of the path checks: the paths exist and lie under the roots. Reading
  // them (decoding a data set can take many seconds) waits for the job's thread, which
  // resolves them again (BuildJobContext).
  RETURN_IF_ERROR(meta::ResolveJobPaths(*normalized, {&options_.data_roots, &options_.data_roots,
                                                      &options_.weights_roots})
                      .status());

  auto job = std::make_shared<Job>();
  job->has_series = true;
  auto forget_request_id = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = request_ids_.find(request_id);
    if (!request_id.empty() && it != request_ids_.end() && it->second == job->id) {
      request_ids_.erase(it);
    }
  };
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return absl::UnavailableError("coordinator is shutting down");
    if (auto it = request_ids_.find(request_id); !request_id.empty() && it != request_ids_.end()) {
      // A retry. The first attempt may still be writing its submitted.pb.
      const std::string job_id = it->second;
      auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        auto again = request_ids_.find(request_id);
        return jobs_.count(job_id) > 0 || again == request_ids_.end() || again->second != job_id ||
               shutting_down_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&settled), absl::Seconds(30));
      auto existing = FindLocked(job_id);
      if (!existing) {
        return absl::UnavailableError(absl::StrCat("the first submission with request_id '",
                                                   request_id, "' did not complete; retry"));
      }
      if (!google::protobuf::util::MessageDifferencer::Equals(existing->status.spec(),
                                                              *normalized)) {
        return absl::AlreadyExistsError(absl::StrCat("request_id '", request_id, "' was used for ",
                                                     job_id, " with a different spec"));
      }
      return existing->status;
    }
    job->seq = next_seq_++;
    job->id = absl::StrFormat("job-%06d", job->seq);
    if (!request_id.empty()) RememberRequestIdLocked(request_id, job->id);
  }
  // Not in the table yet: nobody else sees the job while its file is written.
  v1::JobStatus& status = job->status;
  status.set_job_id(job->id);
  *status.mutable_spec() = *normalized;
  status.set_state(v1::QUEUED);
  status.set_total_steps(normalized->steps());
  status.set_train_accuracy(-1);
  status.set_submitted_unix_ms(absl::ToUnixMillis(clock_.Now()));
  if (!options_.checkpoint_dir.empty()) {
    std::error_code ec;
    fs::create_directories(JobDir(job->id), ec);
    absl::Status written = ec ? absl::InternalError(absl::StrCat("cannot create ", JobDir(job->id),
                                                                 ": ", ec.message()))
                              : absl::OkStatus();
    // The request id first: a job on disk without it would not be found by a retry after
    // a restart, and a retry would then create a second job.
    if (written.ok() && !request_id.empty()) {
      written = meta::WriteFileAtomically((fs::path(JobDir(job->id)) / kRequestIdFile).string(),
                                          request_id);
    }
    if (written.ok()) {
      written = meta::WriteFileAtomically((fs::path(JobDir(job->id)) / kSubmittedFile).string(),
                                          status.SerializeAsString());
    }
    if (!written.ok()) {
      absl::MutexLock lock(&mu_);
      forget_request_id();
      return written;
    }
  }
  absl::MutexLock lock(&mu_);
  if (shutting_down_) {
    // The job stays on disk and is queued again by the next Start().
    forget_request_id();
    return absl::UnavailableError("coordinator is shutting down");
  }
  jobs_[job->id] = job;
  by_seq_[job->seq] = job;
  // Submissions that raced may arrive here out of order: keep the queue in id order.
  queue_.insert(std::upper_bound(queue_.begin(), queue_.end(), job,
                                 [](const std::shared_ptr<Job>& a, const std::shared_ptr<Job>& b) {
                                   return a->seq < b->seq;
                                 }),
                job);
  RecordJobStateLocked(job.get());
  const v1::JobSpec& submitted = status.spec();
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

absl::StatusOr<v1::ListJobsResponse> Coordinator::ListJobs(
    const v1::ListJobsRequest& request) const {
  int64_t after = 0;
  if (!request.page_token().empty() &&
      (!absl::SimpleAtoi(request.page_token(), &after) || after < 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token '", request.page_token(), "' is not one this service gave out"));
  }
  const int page_size =
      request.page_size() <= 0 ? kDefaultPageSize : std::min(request.page_size(), kMaxPageSize);
  v1::ListJobsResponse response;
  absl::MutexLock lock(&mu_);
  for (auto it = by_seq_.upper_bound(after); it != by_seq_.end(); ++it) {
    if (response.jobs_size() == page_size) {
      response.set_next_page_token(absl::StrCat(std::prev(it)->first));
      break;
    }
    if (request.full()) {
      *response.add_jobs() = it->second->status;
    } else {
      CopyWithoutHistory(it->second->status, response.add_jobs());
    }
  }
  return response;
}

absl::StatusOr<v1::JobStatus> Coordinator::CancelJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto job = FindLocked(job_id);
  if (!job) return absl::NotFoundError(absl::StrCat("no job '", job_id, "'"));
  if (job->status.state() == v1::QUEUED && !job->finishing) {
    queue_.erase(std::remove(queue_.begin(), queue_.end(), job), queue_.end());
    FinishJobLocked(job, v1::CANCELLED, "");
    return job->status;
  }
  if (job->status.state() == v1::RUNNING || job->finishing) {
    if (job->runner) {
      // Cancel() only flags the runner's inbox, which never waits for this lock.
      job->runner->Cancel();
    } else {
      // Still loading its data: the job's thread checks this before training.
      job->cancel_requested = true;
    }
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
  auto queue = std::make_shared<JobEventQueue>(options_.watch_max_events, options_.watch_max_bytes);
  auto event = std::make_shared<v1::JobEvent>();
  event->set_kind(v1::JobEvent::SNAPSHOT);
  *event->mutable_status() = job->status;
  const bool terminal = IsTerminal(job->status.state());
  const int64_t bytes = static_cast<int64_t>(event->ByteSizeLong());
  queue->Push(std::move(event), bytes, terminal);
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
    if (it != job->checkpoints.end()) {
      RETURN_IF_ERROR(CheckDownloadSize(job_id, kind,
                                        static_cast<int64_t>(it->second.bytes->size()),
                                        options_.max_checkpoint_download_bytes));
      return it->second;  // shares the bytes, copies nothing
    }
    step = kind == "best" ? job->status.best_step() : job->status.step();
    if (job->checkpoints_released) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job '", job_id, "' ", kind, " checkpoint was released from memory (without ",
          "--checkpoint_dir the coordinator keeps those of its last ",
          options_.memory_checkpoint_jobs, " finished jobs)"));
    }
  }
  // Finished jobs (and those of an earlier run of the coordinator) have theirs on disk only.
  if (!options_.checkpoint_dir.empty()) {
    const fs::path path = fs::path(JobDir(job_id)) / (kind == "best" ? kBestFile : kFinalFile);
    std::error_code ec;
    if (fs::exists(path, ec)) {
      const auto size = fs::file_size(path, ec);
      if (!ec) {
        RETURN_IF_ERROR(CheckDownloadSize(job_id, kind, static_cast<int64_t>(size),
                                          options_.max_checkpoint_download_bytes));
      }
      ASSIGN_OR_RETURN(
          std::string bytes,
          files::ReadFileBounded(kind, path.string(), options_.max_checkpoint_download_bytes,
                                 "--max_checkpoint_download_mb"));
      return CheckpointData{std::make_shared<const std::string>(std::move(bytes)), step};
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
  RecordJobStateLocked(job.get());
  PublishLocked(*job, v1::JobEvent::STATE_CHANGE);
  LogLine(absl::StrCat("job ", job->id, " started at step ", job->status.step(), " of ",
                       job->status.total_steps(), " with ", workers_.size(),
                       " worker(s) connected"));
  threads_[job->seq] = std::thread(&Coordinator::RunJob, this, job);
}

absl::Status Coordinator::PrepareJob(Job& job) {
  if (job.context != nullptr) return absl::OkStatus();  // resumed: LoadJob built it
  v1::JobSpec spec;
  {
    absl::MutexLock lock(&mu_);
    spec = job.status.spec();
  }
  absl::Status loaded = CatchTorch("loading the job's data", [&]() -> absl::Status {
    auto context = BuildJobContext(spec, &job.initial_params);
    if (!context.ok()) return context.status();
    job.context = std::make_shared<meta::JobContext>(std::move(context).value());
    return absl::OkStatus();
  });
  if (!loaded.ok()) {
    const std::string& data_dir = spec.tasks().data_dir();
    // Loader errors name a file; the user needs to know which field pointed there.
    if (!data_dir.empty() && loaded.message().find("data_dir") == absl::string_view::npos &&
        loaded.message().find("initial_weights") == absl::string_view::npos &&
        loaded.message().find("tensor_file") == absl::string_view::npos &&
        loaded.code() != absl::StatusCode::kResourceExhausted) {
      return absl::Status(loaded.code(),
                          absl::StrCat("tasks.data_dir '", data_dir, "': ", loaded.message()));
    }
    return loaded;
  }
  return absl::OkStatus();
}

absl::StatusOr<meta::JobContext> Coordinator::BuildJobContext(
    const v1::JobSpec& spec, meta::TensorList* initial_params) const {
  ASSIGN_OR_RETURN(v1::JobSpec resolved,
                   meta::ResolveJobPaths(spec, {&options_.data_roots, &options_.data_roots,
                                                &options_.weights_roots}));
  ASSIGN_OR_RETURN(meta::JobContext context, meta::MakeJobContext(resolved, options_.file_limits));
  RETURN_IF_ERROR(meta::CheckJobMemory(spec, context.family->input_shape(),
                                       context.family->output_size(), options_.job_limits));
  if (initial_params != nullptr) {
    // Callers run this inside CatchTorch (PrepareJob, Start's LoadJob).
    ASSIGN_OR_RETURN(*initial_params, meta::InitialMetaParams(context));
  }
  context.spec = spec;
  return context;
}

void Coordinator::RunJob(std::shared_ptr<Job> job) {
  // NOTE [Nothing blocks under mu_]: the data is loaded here, on the job's own thread.
  absl::Status status = PrepareJob(*job);
  std::shared_ptr<JobRunner> runner;
  if (status.ok()) {
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
    hooks.checkpoint = [this, weak](const std::string& which,
                                    std::shared_ptr<const std::string> bytes, int64_t step) {
      auto job = weak.lock();
      if (!job) return;
      absl::MutexLock lock(&mu_);
      job->checkpoints[which] = CheckpointData{std::move(bytes), step};
    };
    hooks.metrics = metrics_.get();
    hooks.job_metrics = &metrics_->Job(job->id);
    hooks.quarantine = &quarantine_;
    RunnerOptions runner_options;
    runner_options.job_dir = JobDir(job->id);
    runner_options.pool.assignment_timeout = options_.assignment_timeout;
    runner_options.pool.max_task_attempts = options_.max_task_attempts;
    runner_options.pool.poll_interval = options_.poll_interval;
    runner_options.pool.no_worker_timeout = options_.no_worker_timeout;
    runner_options.pool.speculative_duplicates = options_.speculative_duplicates;
    runner_options.pool.deadline_factor = options_.deadline_factor;
    runner_options.pool.min_deadline = options_.min_deadline;
    runner_options.pool.clock = &clock_;
    status = CatchTorch(absl::StrCat("job ", job->id), [&] {
      runner =
          std::make_shared<JobRunner>(job->id, job->context, std::move(job->initial_params),
                                      std::move(job->resume), runner_options, std::move(hooks));
    });
    job->resume.reset();
  }
  if (status.ok()) {
    absl::MutexLock lock(&mu_);
    if (job->cancel_requested) {
      status = absl::CancelledError("cancelled");
    } else if (shutting_down_) {
      status = absl::AbortedError("coordinator shutting down");
    } else {
      job->runner = runner;
    }
  }
  // Any LibTorch exception that escaped the core ends this job only (out of memory:
  // RESOURCE_EXHAUSTED); the other jobs go on.
  if (status.ok())
    status = CatchTorch(absl::StrCat("job ", job->id), [&] { return runner->Run(); });

  std::vector<std::thread> ended;
  {
    absl::MutexLock lock(&mu_);
    --running_;
    if (shutting_down_ && !status.ok() && status.code() != absl::StatusCode::kCancelled) {
      // Interrupted by shutdown: the job stays resumable from its resume.pt (or, if it
      // had not trained yet, its submitted.pb).
    } else if (status.ok()) {
      FinishJobLocked(job, v1::SUCCEEDED, "");
    } else if (status.code() == absl::StatusCode::kCancelled) {
      FinishJobLocked(job, v1::CANCELLED, "");
    } else {
      FinishJobLocked(job, v1::FAILED, std::string(status.message()));
    }
    job->runner.reset();
    MaybeStartJobsLocked();
    // This thread cannot join itself: it hands itself to the next one to end (or to
    // Shutdown) and joins those that ended before it, so ended threads never pile up.
    ended.swap(ended_threads_);
    if (auto self = threads_.find(job->seq); self != threads_.end()) {
      ended_threads_.push_back(std::move(self->second));
      threads_.erase(self);
    }
  }
  // Released outside mu_: the data set and the runner's tensors can be large.
  runner.reset();
  job->context.reset();
  job->initial_params.clear();
  for (auto& thread : ended) thread.join();
}

void Coordinator::FinishJobLocked(const std::shared_ptr<Job>& job, v1::JobState state,
                                  const std::string& error) {
  job->finishing = true;
  v1::JobStatus final_status = job->status;
  final_status.set_state(state);
  final_status.set_error(error);
  final_status.set_workers(0);
  final_status.set_finished_unix_ms(absl::ToUnixMillis(clock_.Now()));
  if (!options_.checkpoint_dir.empty()) {
    // NOTE [Nothing blocks under mu_]: the job's runner has returned (or never ran), so
    // nothing else changes its status while the file is written; GetJob still shows the
    // old state until the terminal event is published, after the file is on disk.
    const std::string bytes = final_status.SerializeAsString();
    mu_.Unlock();
    absl::Status written =
        meta::WriteFileAtomically((fs::path(JobDir(job->id)) / kStatusFile).string(), bytes);
    if (!written.ok()) LogLine(absl::StrCat("job ", job->id, ": ", written.message()));
    mu_.Lock();
  }
  job->status = std::move(final_status);
  job->finishing = false;
  if (!options_.checkpoint_dir.empty()) {
    job->checkpoints.clear();  // served from the files from now on
  } else if (!job->checkpoints.empty()) {
    memory_checkpoints_.push_back(job);
    while (static_cast<int>(memory_checkpoints_.size()) >
           std::max(0, options_.memory_checkpoint_jobs)) {
      memory_checkpoints_.front()->checkpoints.clear();
      memory_checkpoints_.front()->checkpoints_released = true;
      memory_checkpoints_.pop_front();
    }
  }
  // Series first: a client that sees the terminal event sees them updated.
  RecordJobStateLocked(job.get());
  if (job->has_series) metrics_->RetireJob(job->id);
  PublishLocked(*job, v1::JobEvent::STATE_CHANGE);
  const v1::JobStatus& done = job->status;
  std::string outcome;
  if (state == v1::SUCCEEDED) {
    const v1::EvaluationResult& test = done.test();
    outcome = absl::StrCat(" after ", done.step(), " steps; meta-test loss ",
                           absl::SixDigits(test.loss_after().mean()));
    if (test.accuracy_after().n() > 0) {
      absl::StrAppend(&outcome, ", accuracy ", absl::SixDigits(test.accuracy_after().mean()), " ± ",
                      absl::SixDigits(test.accuracy_after().ci95()));
    }
  } else if (state == v1::FAILED) {
    outcome = absl::StrCat(": ", error);
  } else {
    outcome = absl::StrCat(" at step ", done.step());
  }
  LogLine(
      absl::StrCat("job ", job->id, " ", absl::AsciiStrToLower(v1::JobState_Name(state)), outcome));
}

void Coordinator::RecordJobStateLocked(const Job* job) {
  std::map<v1::JobState, int64_t> by_state;
  for (const auto& [id, each] : jobs_) ++by_state[each->status.state()];
  metrics_->SetJobsByState(by_state, static_cast<int64_t>(queue_.size()));
  if (job == nullptr || !job->has_series) return;
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
  if (job.watchers.empty()) return;
  const bool terminal = IsTerminal(job.status.state());
  // One event shared by every watcher's queue.
  auto event = std::make_shared<v1::JobEvent>();
  event->set_kind(kind);
  // The curve changes only at validations; resending it with every step would make a long
  // watch quadratic in the number of validations.
  if (kind == v1::JobEvent::STEP) {
    CopyWithoutHistory(job.status, event->mutable_status());
  } else {
    *event->mutable_status() = job.status;
  }
  const int64_t bytes = static_cast<int64_t>(event->ByteSizeLong());
  std::vector<std::weak_ptr<JobEventQueue>> alive;
  for (auto& weak : job.watchers) {
    if (auto queue = weak.lock()) {
      queue->Push(event, bytes, terminal);
      // A queue that overflowed has ended; its RPC reports RESOURCE_EXHAUSTED.
      if (!terminal && queue->open()) alive.push_back(weak);
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
  const std::optional<int64_t> routed = RoutingAssignmentId(message);
  if (!routed) {
    metrics_->ResultRejected(RejectReason::kMalformed);
    return;
  }
  const int64_t assignment_id = *routed;
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
