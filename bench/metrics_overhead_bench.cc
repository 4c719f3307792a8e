// What recording metrics costs a training step, against the step itself. A benchmark, not
// a test: it reports.
//
//   metrics_overhead_bench [--tasks 25] [--workers 2] [--steps 40] [--repeats 2000]
//
// Recording: per step, everything the coordinator records (JobMetrics::RecordStep, and per
// assignment the worker latency, task count and assignment counters; per received message
// the byte counter) and what a worker records per assignment, timed over `repeats`
// simulated steps. Step: the wall time of one sinusoid MAML step of `tasks` tasks in this
// process (meta::Train), the cheapest real step there is, so the ratio is an upper bound
// for any distributed step (which adds the network to the same work). Scrape: one
// Collect() plus text serialisation, which runs on the metrics server's own threads.
//
// One JSON line.

#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"
#include "coordinator/coordinator_metrics.h"
#include "prometheus/text_serializer.h"
#include "worker/worker_metrics.h"

namespace metatrain {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int Run(int argc, char** argv) {
  int tasks = 25, workers = 2, steps = 40, repeats = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    int value = 0;
    if (!absl::SimpleAtoi(argv[i + 1], &value) || value <= 0) {
      std::fprintf(stderr, "metrics_overhead_bench: %s needs a positive integer\n", flag.c_str());
      return 2;
    }
    if (flag == "--tasks")
      tasks = value;
    else if (flag == "--workers")
      workers = value;
    else if (flag == "--steps")
      steps = value;
    else if (flag == "--repeats")
      repeats = value;
    else {
      std::fprintf(stderr, "metrics_overhead_bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  at::set_num_threads(1);

  // The step.
  auto spec = meta::ParseJobSpec(absl::StrCat(
      R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "meta_batch_size": )", tasks,
      R"(, "steps": )", steps, R"(, "validation_interval": 0, "test_tasks": 1})"));
  if (!spec.ok()) return std::fprintf(stderr, "%s\n", spec.status().ToString().c_str()), 1;
  auto normalized = meta::NormalizeJobSpec(*spec);
  auto context = meta::MakeJobContext(*normalized);
  if (!context.ok()) return std::fprintf(stderr, "%s\n", context.status().ToString().c_str()), 1;
  double step_seconds = 0;
  int64_t timed_steps = 0;
  auto trained = meta::Train(*context, [&](const meta::StepReport& report) {
    if (report.step > 5) {  // after warm-up
      step_seconds += report.tasks > 0 ? report.tasks / report.tasks_per_second : 0;
      ++timed_steps;
    }
    return true;
  });
  if (!trained.ok()) return std::fprintf(stderr, "%s\n", trained.status().ToString().c_str()), 1;
  const double step = step_seconds / static_cast<double>(timed_steps);

  // The recording of one step, as the coordinator and one worker do it.
  coordinator::CoordinatorMetrics service(absl::Minutes(10), nullptr);
  coordinator::JobMetrics& job = service.Job("job-000001");
  worker::WorkerMetrics worker("cpu");
  meta::StepReport report;
  report.step = 1;
  report.tasks = tasks;
  coordinator::RoundTimings round;
  for (int w = 0; w < workers; ++w) {
    round.worker_finish[absl::StrCat("worker-", w)] = absl::Milliseconds(10);
  }
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r) {
    report.step = r + 1;
    for (int w = 0; w < workers; ++w) {
      service.AssignmentSent();
      service.BytesSent(4096);
      service.WorkerTaskLatency(absl::StrCat("worker-", w), absl::Milliseconds(10), tasks);
      job.AddTasksCompleted(tasks / workers);
      worker.AssignmentComputed("job-000001", tasks / workers, absl::Milliseconds(10));
    }
    for (int t = 0; t < tasks; ++t) {
      service.BytesReceived(8192);
      worker.BytesSent(8192);
    }
    job.RecordStep(report, round);
  }
  const double record = SecondsSince(start) / repeats;

  const auto scrape_start = std::chrono::steady_clock::now();
  const int scrapes = 50;
  size_t bytes = 0;
  for (int i = 0; i < scrapes; ++i) {
    bytes = prometheus::TextSerializer().Serialize(service.Collect()).size();
  }
  const double scrape = SecondsSince(scrape_start) / scrapes;

  std::printf(
      "{\"tasks\": %d, \"workers\": %d, \"step_ms\": %.3f, \"record_us_per_step\": %.3f, "
      "\"overhead_percent\": %.4f, \"scrape_ms\": %.3f, \"scrape_bytes\": %zu}\n",
      tasks, workers, step * 1e3, record * 1e6, 100 * record / step, scrape * 1e3, bytes);
  return 0;
}

}  // namespace
}  // namespace metatrain

int main(int argc, char** argv) { return metatrain::Run(argc, argv); }
