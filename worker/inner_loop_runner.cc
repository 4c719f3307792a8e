#include "worker/inner_loop_runner.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/meta/aggregation.h"
#include "common/meta/job_paths.h"
#include "common/meta/params.h"
#include "common/meta/task_groups.h"
#include "common/status/status_macros.h"
#include "common/status/torch_status.h"

namespace metatrain::worker {
namespace {

// Copies a [T] tensor (possibly on a device, possibly undefined) into doubles.
std::vector<double> ToDoubles(const at::Tensor& t, int64_t n, double fallback) {
  std::vector<double> out(n, fallback);
  if (!t.defined()) return out;
  at::Tensor cpu = t.detach().to(at::kCPU, at::kDouble).contiguous().reshape({-1});
  const double* data = cpu.data_ptr<double>();
  for (int64_t i = 0; i < n && i < cpu.numel(); ++i) out[i] = data[i];
  return out;
}

// CatchTorch wraps a StatusOr-returning call into StatusOr<StatusOr<T>>; unwrap it.
template <typename T>
absl::StatusOr<T> Flatten(absl::StatusOr<absl::StatusOr<T>> result) {
  if (!result.ok()) return result.status();
  return std::move(*result);
}

meta::TaskBatch ToDevice(const meta::TaskBatch& batch, const at::Device& device) {
  if (device.is_cpu()) return batch;
  meta::TaskBatch out;
  out.support_x = batch.support_x.to(device);
  out.support_y = batch.support_y.to(device);
  out.query_x = batch.query_x.to(device);
  out.query_y = batch.query_y.to(device);
  return out;
}

}  // namespace

absl::StatusOr<at::Device> ParseDevice(const std::string& device) {
  if (device == "cpu") return at::Device(at::kCPU);
  absl::string_view rest = device;
  if (rest == "cuda" || absl::ConsumePrefix(&rest, "cuda:")) {
    int index = 0;
    if (rest != "cuda" && (!absl::SimpleAtoi(rest, &index) || index < 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device must be cpu or cuda:N (got \"", device, "\")"));
    }
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--device ", device,
          ": this metatrain-worker is linked against a LibTorch without "
          "CUDA support (or no CUDA device is visible); use --device cpu or rebuild with a CUDA "
          "LibTorch (-DCMAKE_PREFIX_PATH=<libtorch>)"));
    }
    const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
    if (index >= count) {
      return absl::InvalidArgumentError(
          absl::StrCat("--device ", device, ": only ", count, " CUDA device(s) visible"));
    }
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--device must be cpu or cuda:N (got \"", device, "\")"));
}

InnerLoopRunner::InnerLoopRunner(RunnerOptions options)
    : options_(std::move(options)), device_(at::kCPU) {
  auto device = ParseDevice(options_.device);
  if (device.ok()) device_ = *device;
}

absl::Status InnerLoopRunner::HandleJobSetup(const v1::JobSetup& setup) {
  const std::string& job_id = setup.job_id();
  if (job_id.empty()) return absl::InvalidArgumentError("JobSetup.job_id is empty");
  // A setup may bring another spec under the same id: episodes sampled for the old one
  // must not be used.
  if (prefetched_ && prefetched_->first.job_id == job_id) prefetched_.reset();
  if (next_guess_ && next_guess_->job_id == job_id) next_guess_.reset();
  std::string spec_bytes;
  setup.spec().SerializeToString(&spec_bytes);
  Job& job = jobs_[job_id];
  job.last_used = ++clock_;
  if (job.spec_bytes == spec_bytes && job.setup_error.ok()) {
    // The same job again (after a reconnection, or resent): keep its parameters, and its
    // data if still built.
    if (job.context != nullptr && options_.metrics) options_.metrics->DatasetReused();
    absl::Status built = EnsureContext(job_id, job);
    EvictIfNeeded();
    return built;
  }
  // A new job, a reused id with another spec, or a setup that failed before (the data may
  // have appeared since): build from scratch.
  job.spec_bytes = std::move(spec_bytes);
  job.spec = setup.spec();
  job.context.reset();
  job.versions.clear();
  job.setup_error = absl::OkStatus();
  absl::Status built = EnsureContext(job_id, job);
  EvictIfNeeded();
  return built;
}

absl::Status InnerLoopRunner::EnsureContext(const std::string& job_id, Job& job) {
  if (job.context != nullptr || !job.setup_error.ok()) return job.setup_error;
  v1::JobSpec spec = job.spec;
  // The worker's own --data_dir is the operator's, not the job's: it is not confined.
  const bool own_data = !options_.data_dir.empty();
  if (own_data) spec.mutable_tasks()->set_data_dir(options_.data_dir);
  const absl::Time load_start = absl::Now();
  auto context = Flatten(CatchTorch("building the job", [&]() -> absl::StatusOr<meta::JobContext> {
    ASSIGN_OR_RETURN(v1::JobSpec resolved,
                     meta::ResolveJobPaths(spec, {own_data ? nullptr : &options_.data_roots,
                                                  &options_.data_roots, nullptr}));
    return meta::MakeJobContext(resolved);
  }));
  if (options_.metrics) options_.metrics->DatasetLoaded(absl::Now() - load_start);
  if (!context.ok()) {
    job.setup_error =
        absl::Status(context.status().code(),
                     absl::StrCat("job ", job_id, " setup failed: ", context.status().message()));
    job.versions.clear();
    return job.setup_error;
  }
  job.context = std::make_unique<meta::JobContext>(std::move(*context));
  // Room for this one: the least recently used other job gives up its data.
  DropContextsBeyond(std::max(1, options_.max_cached_jobs), &job);
  return absl::OkStatus();
}

void InnerLoopRunner::DropContextsBeyond(int limit, const Job* keep) {
  while (cached_jobs() > limit) {
    Job* oldest = nullptr;
    for (auto& [id, job] : jobs_) {
      if (job.context == nullptr || &job == keep) continue;
      if (oldest == nullptr || job.last_used < oldest->last_used) oldest = &job;
    }
    if (oldest == nullptr) return;
    oldest->context.reset();
  }
}

void InnerLoopRunner::EvictIfNeeded() {
  DropContextsBeyond(std::max(1, options_.max_cached_jobs), nullptr);
  const int known = std::max(options_.max_known_jobs, std::max(1, options_.max_cached_jobs));
  while (static_cast<int>(jobs_.size()) > known) {
    auto oldest = jobs_.begin();
    for (auto it = jobs_.begin(); it != jobs_.end(); ++it) {
      if (it->second.last_used < oldest->second.last_used) oldest = it;
    }
    jobs_.erase(oldest);
  }
}

int InnerLoopRunner::cached_jobs() const {
  int built = 0;
  for (const auto& [id, job] : jobs_) built += job.context != nullptr ? 1 : 0;
  return built;
}

absl::Status InnerLoopRunner::HandleParameters(const v1::Parameters& parameters) {
  auto it = jobs_.find(parameters.job_id());
  // An evicted job: its assignment will ask for the setup and these parameters again.
  if (it == jobs_.end()) return absl::OkStatus();
  Job& job = it->second;
  job.last_used = ++clock_;
  // Assembling needs the model's shapes: a job whose data was dropped is built again.
  RETURN_IF_ERROR(EnsureContext(parameters.job_id(), job));
  ParameterVersion& version = job.versions[parameters.version()];
  const v1::TensorChunk& chunk = parameters.chunk();
  const bool restart = chunk.tensor_index() == 0 && chunk.offset() == 0;
  if (version.assembler == nullptr || version.complete || (restart && !version.error.ok())) {
    version = ParameterVersion();
    version.assembler = std::make_unique<rpc::TensorAssembler>(
        job.context->learner->meta_param_specs(), job.context->dtype);
  }
  if (!version.error.ok()) return version.error;
  absl::Status added = version.assembler->Add(chunk);
  if (added.ok() && parameters.last()) {
    auto tensors = version.assembler->Finish();
    if (tensors.ok()) {
      version.tensors = std::move(*tensors);
      version.complete = true;
      version.assembler.reset();
    } else {
      added = tensors.status();
    }
  }
  if (!added.ok()) {
    version.error = absl::Status(
        added.code(), absl::StrCat("parameters version ", parameters.version(), " of job ",
                                   parameters.job_id(), ": ", added.message()));
    return version.error;
  }
  if (version.complete) {
    // Keep this version and the newest older complete one; drop the rest of the past.
    const int64_t newest = parameters.version();
    int64_t kept_older = -1;
    for (auto& [v, pv] : job.versions) {
      if (v < newest && pv.complete) kept_older = v;
    }
    for (auto vit = job.versions.begin(); vit != job.versions.end();) {
      if (vit->first < newest && vit->first != kept_older) {
        vit = job.versions.erase(vit);
      } else {
        ++vit;
      }
    }
  }
  return absl::OkStatus();
}

void InnerLoopRunner::ResetSession() {
  for (auto& [id, job] : jobs_) job.versions.clear();
}

bool InnerLoopRunner::NeedsSetup(const v1::Assignment& assignment) const {
  auto it = jobs_.find(assignment.job_id());
  if (it == jobs_.end()) return true;
  const Job& job = it->second;
  if (!job.setup_error.ok()) return false;  // its setup failed: Compute reports why
  auto vit = job.versions.find(assignment.version());
  // A poisoned version is an error to report, not something to ask for again.
  return vit == job.versions.end() || (!vit->second.complete && vit->second.error.ok());
}

void InnerLoopRunner::HandleAssignment(const v1::Assignment& assignment, const Emit& emit,
                                       const std::function<bool()>& cancelled) {
  if (NeedsSetup(assignment)) {
    // Nothing is computed (and nothing recorded): the coordinator resends the setup, the
    // parameters and this assignment.
    v1::WorkerMessage message;
    message.mutable_done()->set_assignment_id(assignment.assignment_id());
    message.mutable_done()->set_needs_setup(true);
    emit(std::move(message));
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  v1::AssignmentDone done;
  absl::Status status = Compute(assignment, emit, done, cancelled);
  if (absl::IsCancelled(status) && cancelled && cancelled()) {
    done.Clear();
    done.set_cancelled(true);  // stopped between compute groups; nothing was sent
  } else if (!status.ok()) {
    done.Clear();
    done.set_error(status.ToString());
  }
  done.set_assignment_id(assignment.assignment_id());
  const std::chrono::duration<double> compute = std::chrono::steady_clock::now() - start;
  done.set_compute_seconds(compute.count());
  if (options_.metrics) {
    options_.metrics->AssignmentComputed(assignment.job_id(),
                                         status.ok() ? assignment.task_indices_size() : 0,
                                         absl::Seconds(compute.count()));
  }
  v1::WorkerMessage message;
  *message.mutable_done() = std::move(done);
  emit(std::move(message));
}

absl::Status InnerLoopRunner::Compute(const v1::Assignment& assignment, const Emit& emit,
                                      v1::AssignmentDone& done,
                                      const std::function<bool()>& cancelled) {
  auto it = jobs_.find(assignment.job_id());
  if (it == jobs_.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("assignment for job ", assignment.job_id(), " before its JobSetup"));
  }
  Job& job = it->second;
  job.last_used = ++clock_;
  RETURN_IF_ERROR(EnsureContext(assignment.job_id(), job));
  auto vit = job.versions.find(assignment.version());
  if (vit == job.versions.end() || !vit->second.error.ok() || !vit->second.complete) {
    if (vit != job.versions.end() && !vit->second.error.ok()) return vit->second.error;
    return absl::FailedPreconditionError(absl::StrCat("parameters version ", assignment.version(),
                                                      " of job ", assignment.job_id(),
                                                      " not received"));
  }
  if (assignment.eval_steps() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("Assignment.eval_steps must be >= 0 (got ", assignment.eval_steps(), ")"));
  }
  const meta::JobContext& context = *job.context;
  const int64_t n = assignment.task_indices_size();
  if (n == 0) return absl::OkStatus();

  const EpisodeKeys episode_keys = KeysOf(assignment);
  std::optional<meta::TaskBatch> prefetched = TakePrefetched(episode_keys);
  meta::TaskBatch cpu_tasks;
  if (prefetched) {
    cpu_tasks = *std::move(prefetched);
  } else {
    ASSIGN_OR_RETURN(cpu_tasks, Flatten(CatchTorch("sampling tasks", [&] {
                       return context.family->Sample(TaskKeys(episode_keys), context.dtype);
                     })));
  }
  ASSIGN_OR_RETURN(meta::TaskBatch tasks, CatchTorch("moving tasks to " + options_.device,
                                                     [&] { return ToDevice(cpu_tasks, device_); }));
  ASSIGN_OR_RETURN(meta::TensorList params,
                   CatchTorch("moving parameters to " + options_.device, [&] {
                     meta::TensorList out;
                     for (const at::Tensor& t : vit->second.tensors) out.push_back(t.to(device_));
                     return out;
                   }));

  // Evaluation: steps to adapt, or any validation/test round (algorithms without an inner
  // loop, such as protonet, evaluate with 0 steps).
  if (assignment.eval_steps() > 0 || assignment.split() != v1::TASK_SPLIT_TRAIN) {
    ASSIGN_OR_RETURN(meta::Adaptation adaptation, Flatten(CatchTorch("evaluating", [&] {
                       return context.learner->Evaluate(params, tasks, assignment.eval_steps());
                     })));
    const auto lb = ToDoubles(adaptation.loss_before, n, 0);
    const auto la = ToDoubles(adaptation.loss_after, n, 0);
    const auto ab = ToDoubles(adaptation.accuracy_before, n, -1);
    const auto aa = ToDoubles(adaptation.accuracy_after, n, -1);
    for (int64_t i = 0; i < n; ++i) {
      v1::TaskMetrics* m = done.add_metrics();
      m->set_task_index(assignment.task_indices(i));
      m->set_loss_before(lb[i]);
      m->set_loss_after(la[i]);
      m->set_accuracy_before(ab[i]);
      m->set_accuracy_after(aa[i]);
    }
    return absl::OkStatus();
  }

  ASSIGN_OR_RETURN(
      meta::MetaGradients gradients, Flatten(CatchTorch("computing meta-gradients", [&] {
        return meta::ComputeMetaGradientsInGroups(*context.learner, params, tasks,
                                                  options_.task_group_size > 0
                                                      ? options_.task_group_size
                                                      : context.model->default_task_group_size(),
                                                  options_.threads, cancelled);
      })));
  const auto& specs = context.learner->meta_param_specs();
  if (gradients.per_task.size() != specs.size()) {
    return absl::InternalError(absl::StrCat("learner returned ", gradients.per_task.size(),
                                            " gradient tensors for ", specs.size(),
                                            " meta-parameters"));
  }
  // Encode every group before emitting anything, so a failure leaves no partial answer.
  ASSIGN_OR_RETURN(meta::TensorList cpu_grads, CatchTorch("copying gradients", [&] {
                     meta::TensorList out;
                     for (const at::Tensor& g : gradients.per_task) {
                       out.push_back(g.detach().to(at::kCPU).contiguous());
                     }
                     return out;
                   }));
  for (const at::Tensor& g : cpu_grads) {
    if (g.dim() == 0 || g.size(0) != n) {
      return absl::InternalError("learner returned gradients without a task dimension");
    }
  }
  std::vector<meta::TensorList> per_task = meta::SplitPerTask(cpu_grads);
  for (int64_t t = 0; t < n; ++t) {
    for (size_t i = 0; i < per_task[t].size(); ++i) {
      const bool finite = CatchTorch("checking gradients", [&] {
                            return meta::AllFinite(per_task[t][i]);
                          }).value_or(false);
      if (!finite) {
        return absl::InternalError(absl::StrCat("meta-gradient of ", specs[i].name, " for task ",
                                                assignment.task_indices(t),
                                                " is not finite (diverged?)"));
      }
    }
  }
  // Gradient groups (JobSpec.gradient_group_size) are runs of consecutive task indices with
  // the same index / group size; the coordinator only assigns whole groups, and refuses a
  // partial one.
  const int64_t group_size = std::max<int64_t>(1, context.spec.gradient_group_size());
  struct Group {
    int64_t begin = 0, end = 0;  // positions in the assignment
    std::vector<v1::TensorChunk> chunks;
  };
  std::vector<Group> groups;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t group = assignment.task_indices(t) / group_size;
    if (groups.empty() || assignment.task_indices(t) != assignment.task_indices(t - 1) + 1 ||
        assignment.task_indices(groups.back().begin) / group_size != group) {
      groups.push_back(Group{t, t, {}});
    }
    groups.back().end = t + 1;
  }
  for (Group& group : groups) {
    // A group of one task (the default) is encoded from the task's own gradient, uncopied.
    ASSIGN_OR_RETURN(meta::TensorList sum, CatchTorch("summing a gradient group", [&] {
                       return group.end - group.begin == 1
                                  ? per_task[group.begin]
                                  : meta::SumInOrder(per_task, group.begin, group.end);
                     }));
    ASSIGN_OR_RETURN(group.chunks, rpc::EncodeTensors(sum, specs, options_.max_chunk_bytes));
  }
  const auto loss = ToDoubles(gradients.query_loss, n, 0);
  const auto accuracy = ToDoubles(gradients.query_accuracy, n, -1);
  // Consecutive messages travel together while they fit in one chunk's size (GradientBatch
  // in worker_service.proto); one that does not fit goes alone, as a plain TaskGradient.
  v1::GradientBatch pending;
  int64_t pending_bytes = 0;
  auto flush = [&] {
    if (pending.gradients().empty()) return;
    v1::WorkerMessage out;
    if (pending.gradients_size() == 1) {
      *out.mutable_gradient() = std::move(*pending.mutable_gradients(0));
    } else {
      *out.mutable_gradients() = std::move(pending);
    }
    pending.Clear();
    pending_bytes = 0;
    emit(std::move(out));
  };
  for (Group& group : groups) {
    for (size_t c = 0; c < group.chunks.size(); ++c) {
      v1::TaskGradient g;
      g.set_assignment_id(assignment.assignment_id());
      g.set_task_index(assignment.task_indices(group.begin));
      g.set_task_count(group.end - group.begin);
      *g.mutable_chunk() = std::move(group.chunks[c]);
      g.set_last(c + 1 == group.chunks.size());
      if (g.last()) {
        for (int64_t t = group.begin; t < group.end; ++t) {
          g.add_query_loss(loss[t]);
          g.add_query_accuracy(accuracy[t]);
        }
      }
      const auto bytes = static_cast<int64_t>(g.ByteSizeLong());
      if (pending_bytes + bytes > options_.max_chunk_bytes) flush();
      *pending.add_gradients() = std::move(g);
      pending_bytes += bytes;
    }
  }
  flush();
  EpisodeKeys next = episode_keys;
  ++next.round;
  next_guess_ = std::move(next);
  return absl::OkStatus();
}

InnerLoopRunner::EpisodeKeys InnerLoopRunner::KeysOf(const v1::Assignment& assignment) {
  EpisodeKeys keys;
  keys.job_id = assignment.job_id();
  keys.split = assignment.split();
  keys.round = assignment.round();
  keys.task_indices.assign(assignment.task_indices().begin(), assignment.task_indices().end());
  return keys;
}

std::vector<meta::TaskKey> InnerLoopRunner::TaskKeys(const EpisodeKeys& keys) {
  std::vector<meta::TaskKey> out;
  out.reserve(keys.task_indices.size());
  for (int64_t index : keys.task_indices) {
    meta::TaskKey key;
    key.split = static_cast<meta::Split>(keys.split);
    key.step = keys.round;
    key.index = index;
    out.push_back(key);
  }
  return out;
}

std::optional<meta::TaskBatch> InnerLoopRunner::TakePrefetched(const EpisodeKeys& keys) {
  if (!prefetched_) return std::nullopt;
  std::optional<meta::TaskBatch> batch;
  if (prefetched_->first == keys) batch = std::move(prefetched_->second);
  if (options_.metrics) {
    batch ? options_.metrics->PrefetchUsed() : options_.metrics->PrefetchDiscarded();
  }
  prefetched_.reset();
  return batch;
}

bool InnerLoopRunner::PrefetchNextEpisodes() {
  if (!next_guess_) return false;
  EpisodeKeys guess = *std::move(next_guess_);
  next_guess_.reset();
  auto it = jobs_.find(guess.job_id);
  // Only into a context that is built: building one (a dataset load) is not worth a guess.
  if (it == jobs_.end() || !it->second.context) return false;
  const meta::JobContext& context = *it->second.context;
  auto batch = Flatten(CatchTorch(
      "prefetching tasks", [&] { return context.family->Sample(TaskKeys(guess), context.dtype); }));
  if (!batch.ok()) return false;  // the assignment, if it comes, samples and reports it
  if (prefetched_ && options_.metrics) options_.metrics->PrefetchDiscarded();
  prefetched_.emplace(std::move(guess), *std::move(batch));
  return true;
}

}  // namespace metatrain::worker
