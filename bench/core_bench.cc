// Meta-training throughput of the single-process core (tasks per second), for the
// workloads of docs/benchmarks.md. A benchmark, not a test: it reports, it asserts nothing.
//
//   metatrain-core-bench --workload sinusoid|omniglot_fc|omniglot_conv --algorithm maml|fomaml
//                        [--threads 1] [--steps 20] [--repeats 5] [--task_group_size 0]
//                        [--profile trace.json]   (Chrome trace of the measured rounds' ops)
//                        [--inner_steps N] [--recompute]   (inner.steps, inner.recompute)
//                        [--shots K]   (Omniglot-sized workloads: K-shot; default 1)
//
// One JSON line per run, like bench/reference/per_task.py, so bench/run_all.sh can tabulate them.

#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/meta/aggregation.h"
#include "common/meta/job_limits.h"
#include "common/meta/job_spec.h"
#include "common/meta/runtime.h"
#include "common/meta/task_groups.h"
#include "common/meta/trainer.h"

namespace metatrain::meta {
namespace {

struct Options {
  std::string workload = "sinusoid";
  std::string algorithm = "maml";
  int threads = 1;
  int steps = 20;
  int repeats = 5;
  // common/meta/task_groups.h: 0 computes the meta-batch at once.
  int task_group_size = 0;
  // Where to write a Chrome trace of the measured rounds' ATen ops (empty: none).
  std::string profile;
  // inner.steps (0: the job's default) and inner.recompute: the second-order memory knob.
  int inner_steps = 0;
  bool recompute = false;
  int shots = 1;
};

absl::StatusOr<v1::JobSpec> SpecFor(const Options& options) {
  v1::JobSpec spec;
  spec.set_algorithm(options.algorithm);
  spec.set_seed(1);
  spec.set_steps(options.steps * (options.repeats + 1));
  spec.mutable_inner()->set_steps(options.inner_steps);
  spec.mutable_inner()->set_recompute(options.recompute);
  if (options.workload == "sinusoid") {
    spec.mutable_tasks()->set_family("sinusoid");
  } else if (options.workload == "omniglot_fc" || options.workload == "omniglot_conv") {
    // Omniglot-sized tasks (28x28x1, 5-way 1-shot, 15 queries per class) without the data.
    spec.mutable_tasks()->set_family("synthetic_images");
    spec.mutable_tasks()->set_ways(5);
    spec.mutable_tasks()->set_shots(options.shots);
    spec.mutable_tasks()->set_image_size(28);
    if (options.workload == "omniglot_fc") {
      spec.mutable_model()->set_kind("mlp");
      spec.mutable_model()->set_batch_norm(true);
    } else {
      spec.mutable_model()->set_kind("conv");
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat("--workload: unknown '", options.workload, "'"));
  }
  // A benchmark measures what a job costs; admission limits are the service's business.
  return NormalizeJobSpec(spec, JobLimits::Unlimited());
}

// One meta-step exactly as the trainer does it: sample, per-task meta-gradients,
// ordered aggregation, outer Adam step.
absl::Status Step(const JobContext& job, OuterOptimizer& optimizer, TensorList& params,
                  int64_t step, int64_t task_group_size, int threads, double& sample_seconds) {
  const std::vector<TaskKey> keys = TrainingKeys(job.spec, step);
  const auto sample_start = std::chrono::steady_clock::now();
  auto tasks = job.family->Sample(keys, job.dtype);
  sample_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sample_start).count();
  if (!tasks.ok()) return tasks.status();
  auto gradients =
      ComputeMetaGradientsInGroups(*job.learner, params, *tasks, task_group_size, threads);
  if (!gradients.ok()) return gradients.status();
  TaskOrderAggregator aggregator(job.learner->meta_param_specs(), tasks->size());
  std::vector<TensorList> per_task = SplitPerTask(gradients->per_task);
  for (size_t t = 0; t < per_task.size(); ++t) {
    absl::Status added = aggregator.Add(static_cast<int64_t>(t), std::move(per_task[t]));
    if (!added.ok()) return added;
  }
  auto mean = aggregator.Mean();
  if (!mean.ok()) return mean.status();
  optimizer.Step(params, *mean);
  return absl::OkStatus();
}

int Run(const Options& options) {
  ConfigureRuntime();
  auto spec = SpecFor(options);
  if (!spec.ok()) {
    std::fprintf(stderr, "metatrain-core-bench: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  auto job = MakeJobContext(*spec);
  if (!job.ok()) {
    std::fprintf(stderr, "metatrain-core-bench: %s\n", job.status().ToString().c_str());
    return 2;
  }
  auto params = InitialMetaParams(*job);
  auto optimizer = MakeOuterOptimizer(spec->outer(), job->learner->meta_param_specs());
  if (!params.ok() || !optimizer.ok()) {
    std::fprintf(stderr, "metatrain-core-bench: initialisation failed\n");
    return 2;
  }
  const int64_t group_size =
      options.task_group_size > 0 ? options.task_group_size : job->model->default_task_group_size();
  int64_t step = 0;
  std::vector<double> rates;
  double sample_seconds = 0, measured_seconds = 0;
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profiler;
  for (int repeat = 0; repeat <= options.repeats; ++repeat) {
    if (repeat == 1 && !options.profile.empty()) {
      profiler = std::make_unique<torch::autograd::profiler::RecordProfile>(options.profile);
    }
    const auto start = std::chrono::steady_clock::now();
    double round_sample_seconds = 0;
    for (int i = 0; i < options.steps; ++i) {
      absl::Status status = Step(*job, **optimizer, *params, step++, group_size, options.threads,
                                 round_sample_seconds);
      if (!status.ok()) {
        std::fprintf(stderr, "metatrain-core-bench: %s\n", status.ToString().c_str());
        return 1;
      }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // The first round warms up allocators and caches.
    if (repeat > 0) {
      rates.push_back(options.steps * spec->meta_batch_size() / seconds);
      sample_seconds += round_sample_seconds;
      measured_seconds += seconds;
    }
  }
  profiler.reset();
  std::vector<double> sorted = rates;
  std::sort(sorted.begin(), sorted.end());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "{\"impl\": \"metatrain-cpp-batched\", \"workload\": \"%s\", \"order\": %d, \"threads\": %d, "
      "\"meta_batch\": %d, \"shots\": %d, \"task_group_size\": %d, \"inner_steps\": %d, "
      "\"recompute\": %s, "
      "\"tasks_per_second\": [%s], \"median\": %.1f, "
      "\"sampling_share\": %.3f, \"peak_rss_mib\": %.1f}\n",
      options.workload.c_str(), options.algorithm == "maml" ? 2 : 1, options.threads,
      spec->meta_batch_size(), spec->tasks().shots(), static_cast<int>(group_size),
      spec->inner().steps(), spec->inner().recompute() ? "true" : "false",
      absl::StrJoin(rates, ", ").c_str(), sorted[sorted.size() / 2],
      sample_seconds / measured_seconds, usage.ru_maxrss / 1024.0);
  return 0;
}

}  // namespace
}  // namespace metatrain::meta

int main(int argc, char** argv) {
  metatrain::meta::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "metatrain-core-bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--workload")
      options.workload = value();
    else if (arg == "--algorithm")
      options.algorithm = value();
    else if (arg == "--threads")
      options.threads = std::atoi(value().c_str());
    else if (arg == "--steps")
      options.steps = std::atoi(value().c_str());
    else if (arg == "--repeats")
      options.repeats = std::atoi(value().c_str());
    else if (arg == "--profile")
      options.profile = value();
    else if (arg == "--task_group_size")
      options.task_group_size = std::atoi(value().c_str());
    else if (arg == "--inner_steps")
      options.inner_steps = std::atoi(value().c_str());
    else if (arg == "--recompute")
      options.recompute = true;
    else if (arg == "--shots")
      options.shots = std::atoi(value().c_str());
    else {
      std::fprintf(stderr, "metatrain-core-bench: unknown flag %s\n", arg.c_str());
      return 2;
    }
  }
  if (options.threads < 1 || options.steps < 1 || options.repeats < 1) {
    std::fprintf(stderr, "metatrain-core-bench: --threads, --steps and --repeats must be >= 1\n");
    return 2;
  }
  if (options.inner_steps < 0 || options.shots < 1) {
    std::fprintf(stderr, "metatrain-core-bench: --inner_steps must be >= 0 and --shots >= 1\n");
    return 2;
  }
  return metatrain::meta::Run(options);
}
