// The coordinator's CPU cost per received task gradient, without the network: a meta-batch
// of real-sized per-task gradients is cut into TensorChunks (as a worker sends them), then
// reassembled and checked (TensorAssembler), added to a TaskOrderAggregator and averaged,
// as the coordinator does for every training step. A benchmark, not a test: it reports.
//
//   gradient_intake_bench [--workload omniglot_fc|omniglot_conv|sinusoid] [--tasks 32]
//                         [--repeats 20]
//
// One JSON line: milliseconds per task (median over repeats) and the gradient's size.

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/meta/aggregation.h"
#include "common/meta/job_spec.h"
#include "common/meta/runtime.h"
#include "common/meta/trainer.h"
#include "common/rpc/tensor_codec.h"

namespace metatrain {
namespace {

std::string SpecJson(const std::string& workload) {
  if (workload == "sinusoid") return R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}})";
  const std::string model =
      workload == "omniglot_conv" ? R"({"kind": "conv"})" : R"({"kind": "mlp"})";
  return absl::StrCat(R"({"algorithm": "maml", "model": )", model,
                      R"(, "tasks": {"family": "synthetic_images", "image_size": 28}})");
}

int Run(int argc, char** argv) {
  std::string workload = "omniglot_fc";
  int tasks = 32;
  int repeats = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const std::string value = argv[i + 1];
    if (flag == "--workload") {
      workload = value;
    } else if ((flag == "--tasks" && absl::SimpleAtoi(value, &tasks) && tasks > 0) ||
               (flag == "--repeats" && absl::SimpleAtoi(value, &repeats) && repeats > 0)) {
    } else {
      std::fprintf(stderr, "gradient_intake_bench: bad flag %s %s\n", flag.c_str(), value.c_str());
      return 2;
    }
  }
  // As the coordinator's main does: one intra-op thread, its allocator settings.
  meta::ConfigureRuntime();
  auto spec = meta::ParseJobSpec(SpecJson(workload));
  if (spec.ok()) spec = meta::NormalizeJobSpec(*spec);
  if (!spec.ok()) {
    std::fprintf(stderr, "gradient_intake_bench: %s\n", spec.status().ToString().c_str());
    return 2;
  }
  auto job = meta::MakeJobContext(*spec);
  if (!job.ok()) {
    std::fprintf(stderr, "gradient_intake_bench: %s\n", job.status().ToString().c_str());
    return 2;
  }
  const auto& specs = job->learner->meta_param_specs();

  // One encoded gradient per task, built before the clock starts (that is worker work).
  std::vector<std::vector<v1::TensorChunk>> encoded;
  for (int t = 0; t < tasks; ++t) {
    meta::TensorList gradient;
    for (const auto& p : specs) gradient.push_back(at::randn(p.shape, at::kFloat));
    auto chunks = rpc::EncodeTensors(gradient, specs);
    if (!chunks.ok()) {
      std::fprintf(stderr, "gradient_intake_bench: %s\n", chunks.status().ToString().c_str());
      return 1;
    }
    encoded.push_back(std::move(*chunks));
  }

  std::vector<double> ms_per_task;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    meta::TaskOrderAggregator aggregator(specs, tasks);
    for (int t = 0; t < tasks; ++t) {
      rpc::TensorAssembler assembler(specs, at::kFloat);
      for (const auto& chunk : encoded[t]) {
        if (absl::Status s = assembler.Add(chunk); !s.ok()) {
          std::fprintf(stderr, "gradient_intake_bench: %s\n", s.ToString().c_str());
          return 1;
        }
      }
      auto gradient = assembler.Finish();
      absl::Status added =
          gradient.ok() ? aggregator.Add(t, std::move(*gradient)) : gradient.status();
      if (!added.ok()) {
        std::fprintf(stderr, "gradient_intake_bench: %s\n", added.ToString().c_str());
        return 1;
      }
    }
    if (auto mean = aggregator.Mean(); !mean.ok()) {
      std::fprintf(stderr, "gradient_intake_bench: %s\n", mean.status().ToString().c_str());
      return 1;
    }
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    ms_per_task.push_back(ms / tasks);
  }
  std::sort(ms_per_task.begin(), ms_per_task.end());
  std::printf(
      "{\"bench\": \"gradient_intake\", \"workload\": \"%s\", \"gradient_bytes\": %lld, "
      "\"tasks\": %d, \"repeats\": %d, \"ms_per_task_median\": %.4f, \"ms_per_task_min\": "
      "%.4f}\n",
      workload.c_str(), static_cast<long long>(meta::TotalNumElements(specs) * 4), tasks, repeats,
      ms_per_task[ms_per_task.size() / 2], ms_per_task.front());
  return 0;
}

}  // namespace
}  // namespace metatrain

int main(int argc, char** argv) { return metatrain::Run(argc, argv); }
