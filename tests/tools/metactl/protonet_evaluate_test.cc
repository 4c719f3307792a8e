// `metactl evaluate` on prototypical-network checkpoints: it reproduces the job's own
// meta-test, scores user episodes of any number of classes (PNG folders) and user tasks in
// a tensor_file, says there is no inner loop, and refuses --inner_steps.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/data/png_decoder.h"
#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"
#include "tests/common/data/data_test_util.h"
#include "tools/metactl/evaluate.h"

namespace metatrain::metactl {
namespace {

namespace fs = std::filesystem;
using data::testing::ScratchDir;
using ::testing::HasSubstr;

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

std::string ProtoJob(int ways, const std::string& family_extra = "") {
  return absl::StrCat(R"({"algorithm": "protonet",
    "model": {"kind": "conv", "filters": 8},
    "tasks": {"family": "synthetic_images", "ways": )",
                      ways, R"(, "shots": 2, "query_size": 3, "image_size": 16)", family_extra,
                      R"(},
    "protonet": {"train_ways": 6},
    "meta_batch_size": 2, "steps": 4, "test_tasks": 6, "seed": 21})");
}

meta::JobContext MakeJob(const std::string& json) {
  auto spec = meta::ParseJobSpec(json);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto normalized = meta::NormalizeJobSpec(*spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  auto job = meta::MakeJobContext(*normalized);
  EXPECT_TRUE(job.ok()) << job.status();
  return std::move(*job);
}

// Task t of `batch` as an episode folder of PNGs (synthetic images are stored as is).
void WriteEpisode(const meta::TaskBatch& batch, int64_t t, const std::string& dir) {
  for (const char* part : {"support", "query"}) {
    const bool support = std::string(part) == "support";
    at::Tensor x = (support ? batch.support_x : batch.query_x)[t].to(at::kDouble);
    at::Tensor y = (support ? batch.support_y : batch.query_y)[t];
    for (int64_t i = 0; i < x.size(0); ++i) {
      const std::string class_dir = absl::StrCat(dir, "/", part, "/class", y[i].item<int64_t>());
      fs::create_directories(class_dir);
      at::Tensor bytes = x[i].mul(255).round().clamp(0, 255).to(at::kByte).contiguous();
      data::DecodedImage image;
      image.channels = x.size(1);
      image.height = x.size(2);
      image.width = x.size(3);
      image.pixels.assign(bytes.data_ptr<uint8_t>(), bytes.data_ptr<uint8_t>() + bytes.numel());
      ASSERT_TRUE(data::WritePngFile(image, absl::StrFormat("%s/%03d.png", class_dir, i)).ok());
    }
  }
}

TEST(ProtoNetEvaluateTest, ReproducesTheJobsMetaTestAndSaysThereIsNoInnerLoop) {
  const std::string dir = ScratchDir("evaluate-protonet");
  const std::string json = ProtoJob(3);
  meta::JobContext job = MakeJob(json);
  auto trained = meta::Train(job);
  ASSERT_TRUE(trained.ok()) << trained.status();
  ASSERT_TRUE(meta::SaveStateDict(dir + "/p.pt", meta::ToStateDict(job.learner->meta_param_specs(),
                                                                   trained->best_params))
                  .ok());
  WriteFile(dir + "/job.json", json);
  EvaluateOptions options;
  options.checkpoint = dir + "/p.pt";
  options.job = dir + "/job.json";
  auto report = RunEvaluation(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs.size(), 1u);
  EXPECT_FALSE(report->inner_loop);
  const meta::EvaluationSummary& got = report->runs[0].summary;
  EXPECT_EQ(got.accuracy_after.n, 6);
  EXPECT_EQ(got.accuracy_after.mean, trained->test.accuracy_after.mean);
  EXPECT_EQ(got.loss_after.mean, trained->test.loss_after.mean);
  EXPECT_THAT(FormatReport(*report, false), HasSubstr("no inner loop, mean ± 95% CI over 6 tasks"));

  options.inner_steps = {1, 5};
  auto refused = RunEvaluation(options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("--inner_steps"));
}

// Prototypes need no head sized by tasks.ways: a 3-way model scores 4-way episodes.
TEST(ProtoNetEvaluateTest, ScoresUserEpisodesOfAnyWay) {
  const std::string dir = ScratchDir("evaluate-protonet-episodes");
  meta::JobContext job = MakeJob(ProtoJob(3));
  auto params = meta::InitialMetaParams(job);
  ASSERT_TRUE(params.ok());
  ASSERT_TRUE(meta::SaveStateDict(dir + "/p.pt",
                                  meta::ToStateDict(job.learner->meta_param_specs(), *params))
                  .ok());
  WriteFile(dir + "/job.json", ProtoJob(3));
  meta::JobContext four = MakeJob(ProtoJob(4));
  auto tasks =
      four.family->Sample(std::vector<meta::TaskKey>{{meta::Split::kTest, 0, 0}}, four.dtype);
  ASSERT_TRUE(tasks.ok());
  WriteEpisode(*tasks, 0, dir + "/episodes/four_way");
  EvaluateOptions options;
  options.checkpoint = dir + "/p.pt";
  options.job = dir + "/job.json";
  options.episodes = dir + "/episodes";
  auto report = RunEvaluation(options);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->runs[0].episodes.size(), 1u);
  const EpisodeScore& score = report->runs[0].episodes[0];
  EXPECT_EQ(score.ways, 4);
  EXPECT_EQ(score.support, 8);
  EXPECT_EQ(score.query, 12);
  auto expected = job.learner->Evaluate(*params, *tasks, 0);
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_NEAR(score.loss_after, expected->loss_after.item<double>(), 1e-5);
  EXPECT_EQ(score.accuracy_after, expected->accuracy_after.item<double>());
  EXPECT_EQ(score.accuracy_before, score.accuracy_after);
}

// User tasks in a tensor file (tasks.family "tensor_file"), with a protonet job.
TEST(ProtoNetEvaluateTest, ScoresUserTasksFromATensorFile) {
  const std::string dir = ScratchDir("evaluate-protonet-tensor-file");
  meta::JobContext images = MakeJob(ProtoJob(3));
  auto tasks =
      images.family->Sample(std::vector<meta::TaskKey>{{meta::Split::kTest, 0, 2}}, at::kFloat);
  ASSERT_TRUE(tasks.ok());
  const std::string file = dir + "/tasks.pt";
  ASSERT_TRUE(meta::SaveStateDict(file, {{"support_x", tasks->support_x},
                                         {"support_y", tasks->support_y},
                                         {"query_x", tasks->query_x},
                                         {"query_y", tasks->query_y}})
                  .ok());
  const std::string json = absl::StrCat(R"({"algorithm": "protonet",
    "model": {"kind": "conv", "filters": 8},
    "tasks": {"family": "tensor_file", "tensor_file": ")",
                                        file, R"(", "ways": 3},
    "meta_batch_size": 2, "steps": 1, "test_tasks": 2, "seed": 21})");
  WriteFile(dir + "/job.json", json);
  meta::JobContext job = MakeJob(json);
  auto params = meta::InitialMetaParams(job);
  ASSERT_TRUE(params.ok());
  ASSERT_TRUE(meta::SaveStateDict(dir + "/p.pt",
                                  meta::ToStateDict(job.learner->meta_param_specs(), *params))
                  .ok());
  EvaluateOptions options;
  options.checkpoint = dir + "/p.pt";
  options.job = dir + "/job.json";
  auto report = RunEvaluation(options);
  ASSERT_TRUE(report.ok()) << report.status();
  // The file holds one task: both test tasks are it.
  auto expected = job.learner->Evaluate(*params, *tasks, 0);
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(report->runs[0].summary.accuracy_after.n, 2);
  EXPECT_EQ(report->runs[0].summary.loss_after.mean, expected->loss_after.item<double>());
  EXPECT_EQ(report->runs[0].summary.accuracy_after.mean, expected->accuracy_after.item<double>());
}

}  // namespace
}  // namespace metatrain::metactl
