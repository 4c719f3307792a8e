// distributed_bench: meta-training throughput of the distributed service (a real
// metatrain-coordinator and 1, 2, 4 metatrain-worker processes on loopback) against the
// single-process core (meta::Train) on the same jobs, and the coordinator's share of the
// step time.
//
//   distributed_bench [--workers 1,2,4] [--only sinusoid|omniglot_conv|omniglot_fc]
//                     [--gradient_group_size N] (JobSpec.gradient_group_size of every job)
//
// Throughput counts training tasks only: the clock runs from the first to the last
// meta-step event (watch stream for the service, on_step callback for the core), so
// start-up, validation and the meta-test are excluded. The coordinator's cost per step
// (serialisation, RPC, aggregation, optimizer, scheduling) is what is left of a step's
// wall time once the busiest worker's compute time for that step (AssignmentDone.
// compute_seconds, logged by the workers with --log_assignments) is taken out.

#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/meta/job_spec.h"
#include "common/meta/runtime.h"
#include "common/meta/trainer.h"
#include "metatrain/v1/job_service.grpc.pb.h"
#include "tests/e2e/process.h"

namespace metatrain {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchJob {
  std::string name;
  std::string json;
};

// Omniglot-sized 5-way 1-shot MAML on synthetic images (no dataset needed) with `model`.
std::string ImageJobJson(const std::string& name, const std::string& model, int64_t steps) {
  return absl::StrCat(R"({"name": ")", name, R"(", "algorithm": "maml", "model": {"kind": ")",
                      model, R"("},
        "tasks": {"family": "synthetic_images", "ways": 5, "shots": 1, "query_size": 15,
                  "image_size": 28},
        "meta_batch_size": 32, "inner": {"steps": 1, "lr": 0.4, "test_steps": 1},
        "steps": )",
                      steps, R"(, "test_tasks": 10, "seed": 1})");
}

std::vector<BenchJob> Jobs(int64_t sinusoid_steps, int64_t conv_steps, int64_t fc_steps) {
  return {
      {"sinusoid", absl::StrCat(R"({"name": "bench-sinusoid", "algorithm": "maml",
        "model": {"kind": "mlp", "hidden_sizes": [40, 40]},
        "tasks": {"family": "sinusoid", "shots": 10, "query_size": 10},
        "meta_batch_size": 25, "inner": {"steps": 1, "lr": 0.01},
        "steps": )",
                                sinusoid_steps, R"(, "test_tasks": 10, "seed": 1})")},
      {"omniglot_conv", ImageJobJson("bench-conv", "conv", conv_steps)},
      {"omniglot_fc", ImageJobJson("bench-fc", "mlp", fc_steps)},
  };
}

struct Result {
  double tasks_per_second = 0;
  double step_seconds = 0;      // mean wall time per step
  double critical_compute = 0;  // mean busiest-worker compute per step
  int64_t steps_timed = 0;
};

Result RunSingleProcess(const v1::JobSpec& spec) {
  auto job = meta::MakeJobContext(spec);
  if (!job.ok()) {
    std::fprintf(stderr, "single-process: %s\n", job.status().ToString().c_str());
    return {};
  }
  std::vector<Clock::time_point> times;
  auto result = meta::Train(*job, [&](const meta::StepReport&) {
    times.push_back(Clock::now());
    return true;
  });
  if (!result.ok() || times.size() < 2) {
    std::fprintf(stderr, "single-process: %s\n", result.status().ToString().c_str());
    return {};
  }
  Result r;
  r.steps_timed = static_cast<int64_t>(times.size()) - 1;
  const double seconds = std::chrono::duration<double>(times.back() - times.front()).count();
  r.step_seconds = seconds / r.steps_timed;
  r.critical_compute = r.step_seconds;
  r.tasks_per_second = r.steps_timed * spec.meta_batch_size() / seconds;
  return r;
}

// version -> worker log -> compute seconds
using ComputeTimes = std::map<int64_t, std::map<int, double>>;

void ReadWorkerLog(const std::string& path, int worker, const std::string& job_id,
                   ComputeTimes& times) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find(": assignment ");
    if (at == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(line.substr(at + 2), ' ');
    // assignment ID job JOB version V tasks N compute S
    if (f.size() < 10 || f[3] != job_id) continue;
    int64_t version = 0;
    double seconds = 0;
    if (!absl::SimpleAtoi(f[5], &version) || !absl::SimpleAtod(f[9], &seconds)) continue;
    times[version][worker] += seconds;
  }
}

Result RunDistributed(const v1::JobSpec& spec, int workers, const std::string& dir) {
  auto coordinator = e2e::StartCoordinator(dir);
  if (!coordinator.ok()) {
    std::fprintf(stderr, "%s\n", coordinator.status().ToString().c_str());
    return {};
  }
  std::vector<std::unique_ptr<e2e::ChildProcess>> procs;
  std::vector<std::string> logs;
  for (int i = 0; i < workers; ++i) {
    logs.push_back(absl::StrCat(dir, "/worker-", i, ".log"));
    auto w = e2e::StartWorker(coordinator->address, logs.back(), {"--log_assignments"});
    if (!w.ok()) return {};
    procs.push_back(std::move(*w));
  }
  auto stub = v1::JobService::NewStub(
      grpc::CreateChannel(coordinator->address, grpc::InsecureChannelCredentials()));
  std::string job_id;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitJobResponse response;
    grpc::Status s = stub->SubmitJob(&context, request, &response);
    if (!s.ok()) {
      std::fprintf(stderr, "submit: %s\n", s.error_message().c_str());
      return {};
    }
    job_id = response.job_id();
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1800));
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  auto stream = stub->WatchJob(&context, request);
  v1::JobEvent event;
  // Time only steps in which every worker took part (workers connect at their own pace).
  std::vector<Clock::time_point> times;
  std::vector<int64_t> steps;
  v1::JobStatus last;
  while (stream->Read(&event)) {
    last = event.status();
    if (event.kind() == v1::JobEvent::STEP && last.workers() == workers) {
      times.push_back(Clock::now());
      steps.push_back(last.step());
    }
    if (last.state() == v1::SUCCEEDED || last.state() == v1::FAILED ||
        last.state() == v1::CANCELLED) {
      break;
    }
  }
  context.TryCancel();
  stream->Finish();
  if (last.state() != v1::SUCCEEDED || times.size() < 2) {
    std::fprintf(stderr, "distributed (%d workers): job ended %d with %zu timed steps: %s\n",
                 workers, static_cast<int>(last.state()), times.size(), last.error().c_str());
    return {};
  }
  for (auto& p : procs) p->Signal(SIGTERM);
  for (auto& p : procs) (void)p->Wait(absl::Seconds(10));
  ComputeTimes compute;
  for (int i = 0; i < workers; ++i) ReadWorkerLog(logs[i], i, job_id, compute);

  Result r;
  r.steps_timed = static_cast<int64_t>(times.size()) - 1;
  const double seconds = std::chrono::duration<double>(times.back() - times.front()).count();
  r.step_seconds = seconds / r.steps_timed;
  r.tasks_per_second = r.steps_timed * spec.meta_batch_size() / seconds;
  // Steps timed: the ones after the first timed event; version s computes step s+1.
  double critical = 0;
  int64_t counted = 0;
  for (size_t i = 1; i < steps.size(); ++i) {
    auto it = compute.find(steps[i] - 1);
    if (it == compute.end()) continue;
    double busiest = 0;
    for (const auto& [w, s] : it->second) busiest = std::max(busiest, s);
    critical += busiest;
    ++counted;
  }
  r.critical_compute = counted > 0 ? critical / counted : 0;
  return r;
}

int Main(int argc, char** argv) {
  std::vector<int> worker_counts = {1, 2, 4};
  std::string only;
  int64_t sinusoid_steps = 300, conv_steps = 8, fc_steps = 40, gradient_group_size = 1;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--workers") {
      worker_counts.clear();
      for (absl::string_view w : absl::StrSplit(next(), ',')) {
        int n = 0;
        if (absl::SimpleAtoi(w, &n) && n > 0) worker_counts.push_back(n);
      }
    } else if (arg == "--only") {
      only = next();
    } else if (arg == "--sinusoid_steps") {
      (void)absl::SimpleAtoi(next(), &sinusoid_steps);
    } else if (arg == "--conv_steps") {
      (void)absl::SimpleAtoi(next(), &conv_steps);
    } else if (arg == "--fc_steps") {
      (void)absl::SimpleAtoi(next(), &fc_steps);
    } else if (arg == "--gradient_group_size") {
      (void)absl::SimpleAtoi(next(), &gradient_group_size);
    } else {
      std::fprintf(stderr,
                   "usage: distributed_bench [--workers 1,2,4] "
                   "[--only sinusoid|omniglot_conv|omniglot_fc] [--sinusoid_steps N] "
                   "[--conv_steps N] [--fc_steps N] [--gradient_group_size N]\n");
      return 2;
    }
  }
  // As metatrain-train does: the single-process baseline runs with the allocator settings
  // of the binaries it stands for (NOTE [Allocator churn], common/meta/runtime.h).
  metatrain::meta::ConfigureRuntime();
  std::printf(
      "| job | setup | tasks/s | step time (ms) | busiest worker compute / step (ms) | "
      "coordinator share of step |\n|---|---|---|---|---|---|\n");
  std::fflush(stdout);
  for (const BenchJob& job : Jobs(sinusoid_steps, conv_steps, fc_steps)) {
    if (!only.empty() && only != job.name) continue;
    auto parsed = meta::ParseJobSpec(job.json);
    if (parsed.ok()) parsed->set_gradient_group_size(static_cast<int32_t>(gradient_group_size));
    auto spec = parsed.ok() ? meta::NormalizeJobSpec(*parsed) : parsed;
    if (!spec.ok()) {
      std::fprintf(stderr, "%s: %s\n", job.name.c_str(), spec.status().ToString().c_str());
      return 1;
    }
    Result single = RunSingleProcess(*spec);
    std::printf("| %s | single process (meta::Train) | %.1f | %.2f | %.2f | - |\n",
                job.name.c_str(), single.tasks_per_second, 1000 * single.step_seconds,
                1000 * single.critical_compute);
    std::fflush(stdout);
    for (int workers : worker_counts) {
      const std::string dir = e2e::MakeTempDir("metatrain-bench-");
      Result r = RunDistributed(*spec, workers, dir);
      const double share =
          r.step_seconds > 0 ? std::max(0.0, 1 - r.critical_compute / r.step_seconds) : 0;
      std::printf("| %s | coordinator + %d worker(s) | %.1f | %.2f | %.2f | %.0f%% |\n",
                  job.name.c_str(), workers, r.tasks_per_second, 1000 * r.step_seconds,
                  1000 * r.critical_compute, 100 * share);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace metatrain

int main(int argc, char** argv) { return metatrain::Main(argc, argv); }
