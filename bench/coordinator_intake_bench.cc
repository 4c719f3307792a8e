// coordinator_intake_bench: how many tasks per second one coordinator can take in, with many
// workers. A real metatrain-coordinator process on loopback serves N simulated workers:
// real gRPC Session streams from this process that compute nothing and answer every
// assignment at once with ready-made gradients of the job's real shapes (one per gradient
// group, JobSpec.gradient_group_size). So the workers are never the bottleneck, and what
// is measured is the coordinator's own cost per step: sending the parameters to every
// worker, assignments, receiving, reassembling and checking each gradient, the group-order
// sum, Adam and the watch events.
//
//   coordinator_intake_bench [--workers 64] [--workload omniglot_fc|omniglot_conv|sinusoid]
//                            [--meta_batch 256] [--group_sizes 1,4] [--steps 30]
//
// On a machine with few cores the simulated workers' own gRPC work competes with the
// coordinator for them, so besides wall-clock tasks/s the bench reads the coordinator's CPU
// time (/proc/PID/stat) over the timed steps: tasks per coordinator CPU second is what one
// coordinator core can take in, whoever else runs on the machine.

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/meta/gradient_groups.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"
#include "common/rpc/tensor_codec.h"
#include "common/version/version.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "metatrain/v1/worker_service.grpc.pb.h"
#include "tests/e2e/process.h"

namespace metatrain {
namespace {

using Clock = std::chrono::steady_clock;

std::string SpecJson(const std::string& workload, int meta_batch, int group_size, int steps) {
  std::string model_and_tasks;
  if (workload == "sinusoid") {
    model_and_tasks = R"("tasks": {"family": "sinusoid"})";
  } else {
    model_and_tasks =
        absl::StrCat(R"("model": {"kind": ")", workload == "omniglot_conv" ? "conv" : "mlp",
                     R"("}, "tasks": {"family": "synthetic_images", "image_size": 28})");
  }
  return absl::StrCat(R"({"name": "intake-bench", "algorithm": "maml", )", model_and_tasks,
                      R"(, "meta_batch_size": )", meta_batch, R"(, "gradient_group_size": )",
                      group_size, R"(, "steps": )", steps, R"(, "test_tasks": 64, "seed": 1})");
}

// One simulated worker: a Session stream that answers each assignment with `chunks` per
// gradient group (the same bytes every time) and evaluation metrics of constants.
class SimulatedWorker {
 public:
  SimulatedWorker(const std::string& address, int index, int capacity,
                  const std::vector<v1::TensorChunk>& chunks)
      : chunks_(chunks) {
    grpc::ChannelArguments args;
    // A connection of its own, as separate worker processes have.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
    stub_ = v1::WorkerService::NewStub(channel_);
    stream_ = stub_->Session(&context_);
    v1::WorkerMessage hello;
    hello.mutable_hello()->set_name(absl::StrCat("simulated-", index));
    hello.mutable_hello()->set_device("cpu");
    hello.mutable_hello()->set_capacity(capacity);
    hello.mutable_hello()->set_threads(1);
    hello.mutable_hello()->set_version(Version());
    // Joined once welcomed: the job is submitted after every worker is.
    v1::CoordinatorMessage welcome;
    joined_ = stream_->Write(hello) && stream_->Read(&welcome) && welcome.has_welcome();
    thread_ = std::thread([this] { Serve(); });
  }

  bool joined() const { return joined_; }

  ~SimulatedWorker() {
    context_.TryCancel();
    thread_.join();
  }

 private:
  void Serve() {
    v1::CoordinatorMessage message;
    while (stream_->Read(&message)) {
      if (message.has_job_setup()) {
        group_size_ = std::max<int64_t>(1, message.job_setup().spec().gradient_group_size());
      } else if (message.has_assignment()) {
        if (!Answer(message.assignment())) return;
      }
    }
  }

  bool Answer(const v1::Assignment& a) {
    const auto& indices = a.task_indices();
    if (a.split() == v1::TASK_SPLIT_TRAIN && a.eval_steps() == 0) {
      for (int i = 0; i < indices.size();) {
        int end = i + 1;
        while (end < indices.size() && indices[end] / group_size_ == indices[i] / group_size_)
          ++end;
        for (size_t c = 0; c < chunks_.size(); ++c) {
          v1::WorkerMessage m;
          v1::TaskGradient* g = m.mutable_gradient();
          g->set_assignment_id(a.assignment_id());
          g->set_task_index(indices[i]);
          g->set_task_count(end - i);
          *g->mutable_chunk() = chunks_[c];
          g->set_last(c + 1 == chunks_.size());
          for (int t = i; g->last() && t < end; ++t) {
            g->add_query_loss(0.5);
            g->add_query_accuracy(0.5);
          }
          if (!stream_->Write(m)) return false;
        }
        i = end;
      }
    }
    v1::WorkerMessage done;
    done.mutable_done()->set_assignment_id(a.assignment_id());
    if (a.split() != v1::TASK_SPLIT_TRAIN || a.eval_steps() > 0) {
      for (int64_t index : indices) {
        v1::TaskMetrics* m = done.mutable_done()->add_metrics();
        m->set_task_index(index);
        m->set_loss_before(1);
        m->set_loss_after(0.5);
        m->set_accuracy_before(0.2);
        m->set_accuracy_after(0.5);
      }
    }
    return stream_->Write(done);
  }

  const std::vector<v1::TensorChunk>& chunks_;
  bool joined_ = false;
  int64_t group_size_ = 1;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>> stream_;
  std::thread thread_;
};

// utime + stime of `pid`, in seconds.
double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(in, line);
  // The fields after the command name, which is in parentheses and may hold spaces.
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ');
  double utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtod(fields[11], &utime) ||
      !absl::SimpleAtod(fields[12], &stime)) {
    return 0;
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct Result {
  double tasks_per_second = 0;        // wall clock
  double gradient_mb_per_second = 0;  // gradient payload received, wall clock
  double coordinator_cpu_ms_per_step = 0;
  double tasks_per_coordinator_cpu_second = 0;
  double gradient_mb_per_coordinator_cpu_second = 0;
};

bool Run(const std::string& workload, int workers, int meta_batch, int group_size, int steps,
         Result& r) {
  auto spec = meta::ParseJobSpec(SpecJson(workload, meta_batch, group_size, steps));
  if (spec.ok()) spec = meta::NormalizeJobSpec(*spec);
  if (!spec.ok()) {
    std::fprintf(stderr, "spec: %s\n", spec.status().ToString().c_str());
    return false;
  }
  auto job = meta::MakeJobContext(*spec);
  if (!job.ok()) {
    std::fprintf(stderr, "job: %s\n", job.status().ToString().c_str());
    return false;
  }
  auto params = meta::InitialMetaParams(*job);
  if (!params.ok()) return false;
  // A small, finite gradient of the real shapes: the values do not matter here.
  meta::TensorList gradient;
  int64_t gradient_bytes = 0;
  for (const at::Tensor& p : *params) {
    gradient.push_back(at::full_like(p, 1e-3));
    gradient_bytes += p.numel() * p.element_size();
  }
  auto chunks = rpc::EncodeTensors(gradient, job->learner->meta_param_specs());
  if (!chunks.ok()) return false;

  const std::string dir = e2e::MakeTempDir("intake-bench");
  auto coordinator = e2e::StartCoordinator(dir);
  if (!coordinator.ok()) {
    std::fprintf(stderr, "%s\n", coordinator.status().ToString().c_str());
    return false;
  }
  const int capacity = std::max(1, meta_batch / workers);
  std::vector<std::unique_ptr<SimulatedWorker>> simulated;
  for (int i = 0; i < workers; ++i) {
    simulated.push_back(
        std::make_unique<SimulatedWorker>(coordinator->address, i, capacity, *chunks));
    if (!simulated.back()->joined()) {
      std::fprintf(stderr, "simulated worker %d was not welcomed\n", i);
      return false;
    }
  }
  auto stub = v1::JobService::NewStub(
      grpc::CreateChannel(coordinator->address, grpc::InsecureChannelCredentials()));
  std::string job_id;
  {
    grpc::ClientContext context;
    v1::SubmitJobRequest request;
    *request.mutable_spec() = *spec;
    v1::SubmitJobResponse response;
    grpc::Status s = stub->SubmitJob(&context, request, &response);
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", s.error_message().c_str());
      return false;
    }
    job_id = response.job_id();
  }
  grpc::ClientContext context;
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto stream = stub->WatchJob(&context, request);
  v1::JobEvent event;
  // Timed from the second step with every worker taking part to the last step.
  Clock::time_point first, last;
  double cpu_first = 0, cpu_last = 0;
  int64_t timed_steps = -1;
  v1::JobStatus status;
  while (stream->Read(&event)) {
    status = event.status();
    if (event.kind() == v1::JobEvent::STEP && status.workers() == workers && status.step() >= 2) {
      last = Clock::now();
      cpu_last = ProcessCpuSeconds(coordinator->process->pid());
      if (timed_steps < 0) {
        first = last;
        cpu_first = cpu_last;
      }
      ++timed_steps;
    }
    if (status.state() == v1::SUCCEEDED || status.state() == v1::FAILED ||
        status.state() == v1::CANCELLED) {
      break;
    }
  }
  context.TryCancel();
  stream->Finish();
  simulated.clear();
  coordinator->process->Signal(SIGTERM);
  (void)coordinator->process->Wait(absl::Seconds(10));
  if (status.state() != v1::SUCCEEDED || timed_steps < 2) {
    std::fprintf(stderr, "job ended in state %d with %lld timed steps (workers %d): %s\n",
                 static_cast<int>(status.state()), static_cast<long long>(timed_steps),
                 status.workers(), status.error().c_str());
    return false;
  }
  const double seconds = std::chrono::duration<double>(last - first).count();
  const double cpu = cpu_last - cpu_first;
  const double tasks = static_cast<double>(timed_steps) * meta_batch;
  const double gradients =
      static_cast<double>(timed_steps) * meta::NumGroups(meta_batch, group_size);
  const double megabytes = gradients * static_cast<double>(gradient_bytes) / 1e6;
  r.tasks_per_second = tasks / seconds;
  r.gradient_mb_per_second = megabytes / seconds;
  r.coordinator_cpu_ms_per_step = 1e3 * cpu / timed_steps;
  r.tasks_per_coordinator_cpu_second = cpu > 0 ? tasks / cpu : 0;
  r.gradient_mb_per_coordinator_cpu_second = cpu > 0 ? megabytes / cpu : 0;
  return true;
}

int Main(int argc, char** argv) {
  std::string workload = "omniglot_fc";
  int workers = 64, meta_batch = 256, steps = 30;
  std::vector<int> group_sizes = {1, 4};
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    const std::string value = i + 1 < argc ? argv[++i] : "";
    bool ok = true;
    if (flag == "--workload") {
      workload = value;
      ok = workload == "omniglot_fc" || workload == "omniglot_conv" || workload == "sinusoid";
    } else if (flag == "--workers") {
      ok = absl::SimpleAtoi(value, &workers) && workers > 0;
    } else if (flag == "--meta_batch") {
      ok = absl::SimpleAtoi(value, &meta_batch) && meta_batch > 0;
    } else if (flag == "--steps") {
      ok = absl::SimpleAtoi(value, &steps) && steps > 3;
    } else if (flag == "--group_sizes") {
      group_sizes.clear();
      for (absl::string_view part : absl::StrSplit(value, ',')) {
        int g = 0;
        ok = ok && absl::SimpleAtoi(part, &g) && g > 0 && g <= meta_batch;
        group_sizes.push_back(g);
      }
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "coordinator_intake_bench: bad flag %s %s\nusage: coordinator_intake_bench "
                   "[--workers 64] [--workload omniglot_fc|omniglot_conv|sinusoid] "
                   "[--meta_batch 256] [--group_sizes 1,4] [--steps 30]\n",
                   flag.c_str(), value.c_str());
      return 2;
    }
  }
  std::printf(
      "| workload | simulated workers | meta-batch | gradient group | tasks/s (wall) | gradient "
      "MB/s (wall) | coordinator CPU ms/step | tasks per coordinator CPU s | gradient MB per "
      "coordinator CPU s |\n|---|---|---|---|---|---|---|---|---|\n");
  int failures = 0;
  for (int g : group_sizes) {
    Result r;
    if (!Run(workload, workers, meta_batch, g, steps, r)) {
      ++failures;
      continue;
    }
    std::printf("| %s | %d | %d | %d | %.0f | %.0f | %.1f | %.0f | %.0f |\n", workload.c_str(),
                workers, meta_batch, g, r.tasks_per_second, r.gradient_mb_per_second,
                r.coordinator_cpu_ms_per_step, r.tasks_per_coordinator_cpu_second,
                r.gradient_mb_per_coordinator_cpu_second);
    std::fflush(stdout);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace
}  // namespace metatrain

int main(int argc, char** argv) { return metatrain::Main(argc, argv); }
