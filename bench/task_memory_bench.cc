// How far the spec-based memory estimate (common/meta/job_limits.h) is from reality: runs
// one meta-batch of a job's training tasks (ComputeMetaGradients) and one evaluation batch
// (Evaluate with inner.test_steps) and compares each one's peak RSS increase with the
// estimate. docs/security.md ("Limits") quotes its results.
//
//   task_memory_bench --job SPEC.json [--tasks N] [--phase train|eval]
//
// One phase per process: memory freed by the first would be reused by the second and hide
// its peak.
//
// Peak RSS is Linux's VmHWM, reset before each measurement through /proc/self/clear_refs.

#include <ATen/Parallel.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "common/meta/job_limits.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"

namespace {

int64_t StatusKb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0 && line.size() > std::strlen(field)) {
      long long kb = -1;  // "VmRSS:   123456 kB"
      std::sscanf(line.c_str() + std::strlen(field) + 1, "%lld", &kb);
      return kb;
    }
  }
  return -1;
}

void ResetPeak() { std::ofstream("/proc/self/clear_refs") << "5"; }

}  // namespace

int main(int argc, char** argv) {
  std::string job_path;
  int64_t tasks = 0;
  std::string phase = "train";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--job") job_path = argv[i + 1];
    if (flag == "--tasks") (void)absl::SimpleAtoi(argv[i + 1], &tasks);
    if (flag == "--phase") phase = argv[i + 1];
  }
  if (job_path.empty()) {
    std::fprintf(stderr, "usage: task_memory_bench --job SPEC.json [--tasks N]\n");
    return 2;
  }
  at::set_num_threads(1);
  using namespace metatrain::meta;
  auto parsed = ReadJobSpecFile(job_path);
  auto spec = parsed.ok() ? NormalizeJobSpec(*parsed, JobLimits::Unlimited()) : parsed;
  if (!spec.ok()) {
    std::fprintf(stderr, "task_memory_bench: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  if (tasks > 0) spec->set_meta_batch_size(tasks);
  auto job = MakeJobContext(*spec);
  if (!job.ok()) {
    std::fprintf(stderr, "task_memory_bench: %s\n", job.status().ToString().c_str());
    return 2;
  }
  auto params = InitialMetaParams(*job);
  if (!params.ok()) return 2;
  const JobMemoryEstimate estimate =
      EstimateJobMemory(*spec, job->family->input_shape(), job->family->output_size());
  const std::vector<TaskKey> keys = TrainingKeys(*spec, 0);
  auto batch = job->family->Sample(keys, job->dtype);
  if (!batch.ok()) return 2;
  // Warm-up: the first run pays for one-time allocations (thread pools, kernels' caches).
  {
    auto warm =
        job->family->Sample(std::vector<TaskKey>(keys.begin(), keys.begin() + 1), job->dtype);
    if (!warm.ok() || !job->learner->ComputeMetaGradients(*params, *warm).ok()) return 2;
  }
  const double mib = 1024.0;
  ResetPeak();
  const int64_t base = StatusKb("VmRSS");
  absl::Status ran;
  if (phase == "eval") {
    ran = job->learner->Evaluate(*params, *batch, spec->inner().test_steps()).status();
  } else {
    ran = job->learner->ComputeMetaGradients(*params, *batch).status();
  }
  const double peak = (StatusKb("VmHWM") - base) / mib;
  if (!ran.ok()) {
    std::fprintf(stderr, "task_memory_bench: %s\n", ran.ToString().c_str());
    return 1;
  }
  const double per_task_estimate = static_cast<double>(estimate.task_bytes) / (1 << 20);
  const double n = static_cast<double>(keys.size());
  std::printf(
      "%s: %s %s %s, %lld tasks: estimate %.1f MiB/task, measured peak RSS increase %.1f MiB "
      "(%.2f MiB/task): estimate/measured %.2f; %lld parameters\n",
      job_path.c_str(), phase.c_str(), spec->algorithm().c_str(), spec->model().kind().c_str(),
      static_cast<long long>(keys.size()), per_task_estimate, peak, peak / n,
      per_task_estimate / (peak / n), static_cast<long long>(estimate.parameters));
  return 0;
}
