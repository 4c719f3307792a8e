// Bounds on JobSpecs and the memory estimate (common/meta/job_limits.h).

#include "common/meta/job_limits.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>

#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "common/meta/model.h"
#include "common/meta/trainer.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

v1::JobSpec Parse(const std::string& json) {
  auto spec = ParseJobSpec(json);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : v1::JobSpec();
}

// The issue's two specs: refused at once, naming the field, before anything is allocated.
TEST(JobLimitsTest, AbsurdShotsAndMetaBatchAreRefusedNamingTheField) {
  struct Case {
    std::string json, field;
  };
  const std::vector<Case> cases = {
      {R"({"algorithm": "maml", "tasks": {"family": "sinusoid", "shots": 2000000000}})",
       "tasks.shots must be <= 10000 (got 2000000000)"},
      {R"({"algorithm": "maml", "tasks": {"family": "omniglot", "data_dir": "x",
           "shots": 2000000000}})",
       "tasks.shots must be <= 10000 (got 2000000000)"},
      {R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "meta_batch_size": 2000000000})",
       "meta_batch_size must be <= 10000 (got 2000000000)"},
  };
  for (const Case& c : cases) {
    const auto start = std::chrono::steady_clock::now();
    auto normalized = NormalizeJobSpec(Parse(c.json));
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_FALSE(normalized.ok()) << c.json;
    EXPECT_EQ(normalized.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(normalized.status().message(), c.field);
    EXPECT_LT(took, std::chrono::milliseconds(100)) << "a refusal must not allocate or compute";
  }
}

TEST(JobLimitsTest, EverySizeHasALimitNamedByItsField) {
  struct Case {
    std::function<void(v1::JobSpec&)> edit;
    std::string field;
  };
  // Options of one algorithm are tried on that algorithm (on another they do not apply).
  const std::vector<Case> cases = {
      {[](v1::JobSpec& s) { s.set_name(std::string(300, 'n')); }, "name (bytes)"},
      {[](v1::JobSpec& s) { s.mutable_tasks()->set_ways(1001); }, "tasks.ways"},
      {[](v1::JobSpec& s) { s.mutable_tasks()->set_query_size(10001); }, "tasks.query_size"},
      {[](v1::JobSpec& s) { s.mutable_tasks()->set_image_size(257); }, "tasks.image_size"},
      {[](v1::JobSpec& s) {
         for (int i = 0; i < 33; ++i) s.mutable_model()->add_hidden_sizes(4);
       },
       "model.hidden_sizes (layers)"},
      {[](v1::JobSpec& s) { s.mutable_model()->add_hidden_sizes(1 << 20); },
       "model.hidden_sizes[0]"},
      {[](v1::JobSpec& s) { s.mutable_model()->set_filters(4096); }, "model.filters"},
      {[](v1::JobSpec& s) {
         s.set_algorithm("protonet");
         s.mutable_protonet()->set_train_ways(100000);
       },
       "protonet.train_ways"},
      {[](v1::JobSpec& s) {
         s.set_algorithm("meta_lstm");
         s.mutable_meta_lstm()->set_hidden_size(1 << 30);
       },
       "meta_lstm.hidden_size"},
      {[](v1::JobSpec& s) { s.mutable_inner()->set_steps(1001); }, "inner.steps"},
      {[](v1::JobSpec& s) { s.mutable_inner()->set_test_steps(5000); }, "inner.test_steps"},
      {[](v1::JobSpec& s) { s.set_steps(int64_t{1} << 40); }, "steps"},
      {[](v1::JobSpec& s) { s.set_validation_tasks(1000000); }, "validation_tasks"},
      {[](v1::JobSpec& s) { s.set_test_tasks(1000000); }, "test_tasks"},
      {[](v1::JobSpec& s) { s.set_initial_weights(std::string(5000, 'w')); },
       "initial_weights (bytes)"},
      {[](v1::JobSpec& s) { s.mutable_tasks()->set_data_dir(std::string(5000, 'd')); },
       "tasks.data_dir (bytes)"},
      {[](v1::JobSpec& s) { s.mutable_resources()->set_max_workers(1 << 30); },
       "resources.max_workers"},
  };
  for (const Case& c : cases) {
    v1::JobSpec spec = Parse(R"({"algorithm": "maml", "tasks": {"family": "synthetic_images"}})");
    c.edit(spec);
    auto normalized = NormalizeJobSpec(spec);
    ASSERT_FALSE(normalized.ok()) << c.field;
    EXPECT_EQ(normalized.status().code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(std::string(normalized.status().message()), HasSubstr(c.field + " must be <= "));
  }
  // Conv nets halve the image four times.
  auto tiny = NormalizeJobSpec(Parse(R"({"algorithm": "maml", "model": {"kind": "conv"},
      "tasks": {"family": "synthetic_images", "image_size": 8}})"));
  EXPECT_THAT(std::string(tiny.status().message()), HasSubstr("tasks.image_size must be >= 16"));
}

TEST(JobLimitsTest, MemoryOverTheLimitIsResourceExhaustedNamingTheLimit) {
  // Every size within its own bound, together far too much for one task.
  const v1::JobSpec spec = Parse(R"({"algorithm": "maml", "model": {"kind": "conv"},
      "tasks": {"family": "synthetic_images", "ways": 1000, "shots": 1000, "image_size": 256},
      "inner": {"steps": 100}})");
  auto normalized = NormalizeJobSpec(spec);
  ASSERT_FALSE(normalized.ok());
  EXPECT_EQ(normalized.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(normalized.status().message()),
              HasSubstr("per task, over the limit max_task_memory_mb=2048"));
  // Small tasks, but a meta-batch of 10000 of them.
  auto batch = NormalizeJobSpec(Parse(R"({"algorithm": "maml", "model": {"kind": "conv"},
      "tasks": {"family": "synthetic_images", "shots": 5}, "meta_batch_size": 10000})"));
  EXPECT_EQ(batch.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(batch.status().message()),
              HasSubstr("over the limit max_meta_batch_memory_mb=16384"));
  // Raised limits let the same job through (the coordinator's flags).
  JobLimits generous;
  generous.max_meta_batch_memory_mb = int64_t{1} << 30;
  EXPECT_TRUE(NormalizeJobSpec(Parse(R"({"algorithm": "maml", "model": {"kind": "conv"},
      "tasks": {"family": "synthetic_images", "shots": 5}, "meta_batch_size": 10000})"),
                               generous)
                  .ok());
  // Unlimited validates only.
  EXPECT_TRUE(NormalizeJobSpec(spec, JobLimits::Unlimited()).ok());
}

// The estimate's parameter count is the model's, exactly; its activations grow with the
// sizes that drive them; second order costs more than first order.
TEST(JobLimitsTest, EstimateCountsTheRealModelsParameters) {
  for (const char* json : {
           R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}})",
           R"({"algorithm": "maml", "tasks": {"family": "omniglot", "data_dir": "x"}})",
           R"({"algorithm": "maml", "model": {"kind": "mlp", "batch_norm": true,
               "hidden_sizes": [128, 64]}, "tasks": {"family": "synthetic_images", "ways": 7}})",
           R"({"algorithm": "maml", "model": {"kind": "conv", "filters": 32},
               "tasks": {"family": "omniglot", "data_dir": "x", "image_size": 28}})",
           R"({"algorithm": "maml", "model": {"kind": "conv"}, "meta_batch_size": 4,
               "tasks": {"family": "image_folder", "data_dir": "x", "image_size": 84}})",
       }) {
    auto spec = NormalizeJobSpec(Parse(json));
    ASSERT_TRUE(spec.ok()) << spec.status();
    std::vector<int64_t> input_shape;
    int64_t output_size = 0;
    ASSERT_TRUE(ShapesFromSpec(*spec, &input_shape, &output_size));
    auto model = MakeModel(spec->model(), input_shape, output_size);
    ASSERT_TRUE(model.ok()) << model.status();
    int64_t parameters = 0;
    for (const auto& p : (*model)->param_specs()) {
      int64_t n = 1;
      for (int64_t d : p.shape) n *= d;
      parameters += n;
    }
    EXPECT_EQ(EstimateJobMemory(*spec, input_shape, output_size).parameters, parameters) << json;
  }
  auto estimate = [](const std::string& json) {
    auto spec = NormalizeJobSpec(Parse(json), JobLimits::Unlimited());
    EXPECT_TRUE(spec.ok()) << spec.status();
    std::vector<int64_t> shape;
    int64_t out = 0;
    ShapesFromSpec(*spec, &shape, &out);
    return EstimateJobMemory(*spec, shape, out).task_bytes;
  };
  const std::string base = R"("tasks": {"family": "omniglot", "data_dir": "x", "shots": 1})";
  const int64_t maml1 = estimate(R"({"algorithm": "maml", )" + base + "}");
  const int64_t maml5 = estimate(R"({"algorithm": "maml", "inner": {"steps": 5}, )" + base + "}");
  const int64_t fomaml5 =
      estimate(R"({"algorithm": "fomaml", "inner": {"steps": 5}, )" + base + "}");
  EXPECT_GT(maml5, maml1);
  EXPECT_GT(maml5, fomaml5);
  // inner.recompute holds one step's graph, and every step's parameters: what a step adds
  // is a small part of what it adds with every graph stored. (At 1-shot the query's
  // activations dominate the total either way.)
  auto conv = [&](int steps, bool recompute) {
    return estimate(absl::StrCat(R"({"algorithm": "maml", "model": {"kind": "conv"}, )",
                                 R"("inner": {"steps": )", steps, R"(, "recompute": )",
                                 recompute ? "true" : "false", "}, ", base, "}"));
  };
  EXPECT_LT(conv(5, true), conv(5, false));
  EXPECT_LT(4 * (conv(5, true) - conv(1, true)), conv(5, false) - conv(1, false));
  EXPECT_GT(conv(5, true), conv(1, true));
  EXPECT_GT(estimate(R"({"algorithm": "maml", "tasks": {"family": "omniglot", "data_dir": "x",
                       "shots": 5}})"),
            maml1);
  // Saturates instead of wrapping around.
  auto huge = NormalizeJobSpec(Parse(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}})"));
  ASSERT_TRUE(huge.ok());
  huge->mutable_tasks()->set_shots(2000000000);
  huge->set_meta_batch_size(2000000000);
  huge->mutable_model()->clear_hidden_sizes();
  huge->mutable_model()->add_hidden_sizes(int64_t{1} << 40);
  const JobMemoryEstimate e = EstimateJobMemory(*huge, {1 << 30}, 1 << 30);
  EXPECT_GT(e.task_bytes, int64_t{1} << 60);
  EXPECT_GE(e.meta_batch_bytes, e.task_bytes);
}

}  // namespace
}  // namespace metatrain::meta
