// The algorithm catalogue and what it drives: the names a job may give, the rule that an
// algorithm's options are an error on another algorithm's job, the protonet defaults and
// checks, and docs/core-models.md holding the very text of `metactl algorithms`.

#include "common/meta/algorithm_catalog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

v1::JobSpec Parse(const std::string& json) {
  auto spec = ParseJobSpec(json);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return *spec;
}

// INVALID_ARGUMENT whose message starts with `field`.
void ExpectRejectedNaming(const std::string& json, const std::string& field) {
  auto normalized = NormalizeJobSpec(Parse(json));
  ASSERT_EQ(normalized.status().code(), absl::StatusCode::kInvalidArgument) << json;
  EXPECT_EQ(std::string(normalized.status().message()).rfind(field, 0), 0u)
      << normalized.status().message();
}

TEST(AlgorithmCatalogTest, ListsEveryAlgorithmWithPaperAndSummary) {
  std::vector<std::string> names;
  for (const AlgorithmInfo& a : AlgorithmCatalog()) {
    names.push_back(a.name);
    EXPECT_FALSE(a.summary.empty()) << a.name;
    EXPECT_FALSE(a.paper.empty()) << a.name;
    EXPECT_FALSE(a.outer_defaults.empty()) << a.name;
    for (const AlgorithmOption& o : a.options) {
      const std::string group = o.field.substr(0, o.field.find('.'));
      EXPECT_THAT(AlgorithmOptionGroups(), ::testing::Contains(group)) << o.field;
      // The field exists in the proto.
      const auto* g = v1::JobSpec::descriptor()->FindFieldByName(group);
      ASSERT_NE(g, nullptr) << o.field;
      EXPECT_NE(g->message_type()->FindFieldByName(o.field.substr(group.size() + 1)), nullptr)
          << o.field;
    }
  }
  for (const char* name : {"maml", "fomaml", "reptile", "meta_sgd", "anil", "protonet"}) {
    EXPECT_THAT(names, ::testing::Contains(name));
    EXPECT_NE(FindAlgorithm(name), nullptr) << name;
  }
  EXPECT_EQ(FindAlgorithm("mamal"), nullptr);
  EXPECT_THAT(AlgorithmNames(), HasSubstr("maml, fomaml, reptile, meta_sgd, anil"));
  EXPECT_THAT(FormatAlgorithmCatalog(),
              HasSubstr("protonet.train_ways: classes per meta-training episode"));
  EXPECT_THAT(FormatAlgorithmCatalog(), HasSubstr("Snell, Swersky, Zemel"));
}

TEST(AlgorithmCatalogTest, DocsHoldTheGeneratedText) {
  const std::string path = std::string(METATRAIN_SOURCE_DIR) + "/docs/core-models.md";
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  std::stringstream doc;
  doc << in.rdbuf();
  const std::string text = FormatAlgorithmCatalog();
  EXPECT_NE(doc.str().find("```text\n" + text + "```\n"), std::string::npos)
      << path << " must hold the output of `metactl algorithms` in a ```text block; "
      << "replace the block under \"## Algorithm catalogue\" with:\n"
      << text;
}

TEST(AlgorithmOptionsTest, OptionsOfAnotherAlgorithmAreInvalidArgumentNamingTheField) {
  const std::string sinusoid = R"("tasks": {"family": "sinusoid"})";
  const std::string images = R"("tasks": {"family": "synthetic_images"})";
  ExpectRejectedNaming(
      R"({"algorithm": "maml", )" + images + R"(, "protonet": {"train_ways": 10}})",
      "protonet.train_ways does not apply to algorithm 'maml' (only to protonet");
  ExpectRejectedNaming(
      R"({"algorithm": "maml", )" + sinusoid + R"(, "meta_lstm": {"hidden_size": 20}})",
      "meta_lstm.hidden_size does not apply to algorithm 'maml'");
  ExpectRejectedNaming(
      R"({"algorithm": "reptile", )" + sinusoid + R"(, "meta_lstm": {"preprocess_p": 10}})",
      "meta_lstm.preprocess_p does not apply");
  for (const char* inner : {R"("steps": 2)", R"("lr": 0.1)", R"("test_steps": 3)"}) {
    const std::string json =
        R"({"algorithm": "protonet", )" + images + R"(, "inner": {)" + inner + "}}";
    const std::string field =
        std::string("inner.") + std::string(inner).substr(1, std::string(inner).find('"', 1) - 1);
    ExpectRejectedNaming(json, field + " does not apply to algorithm 'protonet'");
  }
  // An empty option group names nothing and is fine.
  EXPECT_TRUE(NormalizeJobSpec(Parse(R"({"algorithm": "protonet", )" + images +
                                     R"(, "inner": {}, "meta_lstm": {}})"))
                  .ok());
  EXPECT_TRUE(NormalizeJobSpec(Parse(R"({"algorithm": "maml", )" + sinusoid +
                                     R"(, "inner": {"steps": 2}, "protonet": {}})"))
                  .ok());
}

TEST(AlgorithmOptionsTest, UnknownAlgorithmListsTheCatalogue) {
  auto normalized =
      NormalizeJobSpec(Parse(R"({"algorithm": "foo", "tasks": {"family": "sinusoid"}})"));
  EXPECT_EQ(normalized.status().message(),
            "algorithm: unknown 'foo' (expected one of " + AlgorithmNames() + ")");
}

TEST(ProtoNetSpecTest, DefaultsAndIdempotence) {
  auto spec = NormalizeJobSpec(Parse(R"({"algorithm": "protonet",
      "tasks": {"family": "synthetic_images", "ways": 4}})"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->protonet().train_ways(), 4);
  // No inner loop: nothing filled in that a re-normalisation would reject.
  EXPECT_EQ(spec->inner().steps(), 0);
  EXPECT_EQ(spec->inner().lr(), 0);
  EXPECT_EQ(spec->inner().test_steps(), 0);
  EXPECT_EQ(spec->outer().kind(), "adam");
  EXPECT_EQ(spec->outer().lr(), 0.001);
  EXPECT_EQ(spec->outer().schedule(), "none");
  auto again = NormalizeJobSpec(*spec);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), spec->SerializeAsString());
  // MAML's normalised spec has no protonet options.
  auto maml = NormalizeJobSpec(Parse(R"({"algorithm": "maml",
      "tasks": {"family": "synthetic_images"}})"));
  ASSERT_TRUE(maml.ok());
  EXPECT_FALSE(maml->has_protonet());
  EXPECT_TRUE(NormalizeJobSpec(*maml).ok());
}

TEST(ProtoNetSpecTest, BadSettingsNameTheField) {
  ExpectRejectedNaming(R"({"algorithm": "protonet", "tasks": {"family": "sinusoid"}})",
                       "tasks.family: algorithm 'protonet' needs classification tasks");
  ExpectRejectedNaming(R"({"algorithm": "protonet", "tasks": {"family": "synthetic_images",
                          "ways": 5}, "protonet": {"train_ways": 3}})",
                       "protonet.train_ways must be >= tasks.ways (5) (got 3)");
  ExpectRejectedNaming(R"({"algorithm": "protonet", "tasks": {"family": "synthetic_images"},
                          "protonet": {"train_ways": -2}})",
                       "protonet.train_ways must be >= tasks.ways");
  // More classes per episode than the training split has: found when the data is loaded.
  auto spec = NormalizeJobSpec(Parse(R"({"algorithm": "protonet",
      "tasks": {"family": "synthetic_images", "image_size": 16}, "protonet": {"train_ways": 65}})"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto job = MakeJobContext(*spec);
  ASSERT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(job.status().message(),
            "protonet.train_ways is 65 but the train split has only 64 classes");
}

TEST(ProtoNetSpecTest, TrainingEpisodesAreTrainWaysWideAndEvaluationOnesTasksWays) {
  auto spec = NormalizeJobSpec(Parse(R"({"algorithm": "protonet", "seed": 3,
      "model": {"kind": "conv", "filters": 4},
      "tasks": {"family": "synthetic_images", "ways": 3, "shots": 2, "query_size": 1,
                "image_size": 16}, "protonet": {"train_ways": 7},
      "meta_batch_size": 2, "steps": 2, "validation_interval": 1, "validation_tasks": 3,
      "test_tasks": 3})"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto job = MakeJobContext(*spec);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->family->output_size(), 3);
  auto train = job->family->Sample(TrainingKeys(*spec, 0), at::kFloat);
  ASSERT_TRUE(train.ok()) << train.status();
  EXPECT_EQ(train->support_x.size(1), 14);
  EXPECT_EQ(train->query_y.max().item<int64_t>(), 6);
  const TaskKey test_keys[] = {{Split::kTest, 0, 0}, {Split::kTest, 0, 1}};
  auto test = job->family->Sample(test_keys, at::kFloat);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->support_x.size(1), 6);
  EXPECT_EQ(test->query_y.max().item<int64_t>(), 2);
  const TaskKey mixed[] = {{Split::kTrain, 0, 0}, {Split::kTest, 0, 1}};
  EXPECT_EQ(job->family->Sample(mixed, at::kFloat).status().code(),
            absl::StatusCode::kInvalidArgument);
  // The same key gives the same episode again (workers rebuild tasks from keys).
  auto again = job->family->Sample(TrainingKeys(*spec, 0), at::kFloat);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(at::equal(again->support_x, train->support_x));
  // A higher-way step trains; validation and test run on tasks.ways-way episodes.
  auto result = Train(*job);
  ASSERT_TRUE(result.ok()) << result.status();
}

}  // namespace
}  // namespace metatrain::meta
