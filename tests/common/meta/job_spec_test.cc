#include "common/meta/job_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/meta/algorithm_catalog.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<v1::JobSpec> Normalize(const std::string& json) {
  auto spec = ParseJobSpec(json);
  if (!spec.ok()) return spec.status();
  return NormalizeJobSpec(*spec);
}

void ExpectInvalid(const std::string& json, const std::string& message) {
  auto spec = Normalize(json);
  ASSERT_FALSE(spec.ok()) << json;
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr(message)) << json;
}

TEST(JobSpecTest, RegressionDefaults) {
  auto spec = Normalize(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->model().kind(), "mlp");
  EXPECT_THAT(spec->model().hidden_sizes(), ::testing::ElementsAre(40, 40));
  EXPECT_EQ(spec->tasks().shots(), 10);
  EXPECT_EQ(spec->tasks().query_size(), 10);
  EXPECT_EQ(spec->meta_batch_size(), 25);
  EXPECT_EQ(spec->inner().steps(), 1);
  EXPECT_DOUBLE_EQ(spec->inner().lr(), 0.01);
  EXPECT_EQ(spec->inner().test_steps(), 1);
  EXPECT_EQ(spec->outer().kind(), "adam");
  EXPECT_DOUBLE_EQ(spec->outer().lr(), 0.001);
  EXPECT_DOUBLE_EQ(spec->outer().beta1(), 0.9);
  EXPECT_DOUBLE_EQ(spec->outer().beta2(), 0.999);
  EXPECT_DOUBLE_EQ(spec->outer().epsilon(), 1e-8);
  EXPECT_EQ(spec->outer().schedule(), "none");
  EXPECT_DOUBLE_EQ(spec->outer().plateau_factor(), 0.5);
  EXPECT_EQ(spec->outer().plateau_patience(), 5);
  EXPECT_EQ(spec->steps(), 1000);
  EXPECT_EQ(spec->validation_tasks(), 100);
  EXPECT_EQ(spec->test_tasks(), 600);
  EXPECT_EQ(spec->dtype(), "float32");
  EXPECT_EQ(spec->tasks().input_dim(), 1);
  EXPECT_EQ(spec->select_best_by(), "loss");
  EXPECT_EQ(spec->resources().device_type(), "cpu");
}

TEST(JobSpecTest, DeviceTypeIsCpuOrCuda) {
  auto spec = Normalize(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
                            "resources": {"device_type": "cuda"}})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->resources().device_type(), "cuda");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
                    "resources": {"device_type": "cuda:0"}})",
                "resources.device_type: unknown 'cuda:0' (expected one of cpu, cuda)");
}

TEST(JobSpecTest, DeviceTypeOfAWorkersDevice) {
  EXPECT_EQ(DeviceType("").value_or("?"), "cpu");
  EXPECT_EQ(DeviceType("cpu").value_or("?"), "cpu");
  EXPECT_EQ(DeviceType("cuda").value_or("?"), "cuda");
  EXPECT_EQ(DeviceType("cuda:0").value_or("?"), "cuda");
  EXPECT_EQ(DeviceType("cuda:12").value_or("?"), "cuda");
  for (const char* bad : {"gpu", "cuda:", "cuda:-1", "cuda:x", "CPU", "tpu:0"}) {
    EXPECT_EQ(DeviceType(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(JobSpecTest, SelectBestByIsLossOrAccuracyOfAClassificationFamily) {
  auto spec = Normalize(R"({"algorithm": "reptile", "tasks": {"family": "synthetic_images"},
                            "select_best_by": "accuracy"})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->select_best_by(), "accuracy");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "synthetic_images"},
                    "select_best_by": "f1"})",
                "select_best_by: unknown 'f1'");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
                    "select_best_by": "accuracy"})",
                "select_best_by 'accuracy' needs a classification family");
}

TEST(JobSpecTest, ClassificationDefaults) {
  auto spec = Normalize(R"({"algorithm": "fomaml", "tasks": {"family": "synthetic_images"},
                            "inner": {"steps": 2}})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_THAT(spec->model().hidden_sizes(), ::testing::ElementsAre(256, 128, 64, 64));
  EXPECT_EQ(spec->tasks().ways(), 5);
  EXPECT_EQ(spec->tasks().shots(), 1);
  EXPECT_EQ(spec->tasks().query_size(), 15);
  EXPECT_EQ(spec->tasks().image_size(), 28);
  EXPECT_EQ(spec->meta_batch_size(), 32);
  EXPECT_DOUBLE_EQ(spec->inner().lr(), 0.4);
  EXPECT_EQ(spec->inner().test_steps(), 5);
  EXPECT_EQ(spec->model().filters(), 64);
}

TEST(JobSpecTest, ReptileDefaultsToSgdWithLinearAnnealing) {
  auto spec = Normalize(R"({"algorithm": "reptile", "tasks": {"family": "sinusoid"}})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->outer().kind(), "sgd");
  EXPECT_DOUBLE_EQ(spec->outer().lr(), 1.0);
  EXPECT_EQ(spec->outer().schedule(), "linear");
}

TEST(JobSpecTest, ExplicitValuesAreKept) {
  auto spec = Normalize(R"({"algorithm": "maml", "tasks": {"family": "sinusoid", "shots": 5},
                            "outer": {"lr": 0.01, "schedule": "plateau"},
                            "validation_interval": 10})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->tasks().shots(), 5);
  EXPECT_EQ(spec->tasks().query_size(), 5);
  EXPECT_DOUBLE_EQ(spec->outer().lr(), 0.01);
}

TEST(JobSpecTest, RejectsBadFieldsNamingThem) {
  ExpectInvalid(R"({"algorithm": "foo", "tasks": {"family": "sinusoid"}})",
                "algorithm: unknown 'foo' (expected one of " + AlgorithmNames() + ")");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "sinusoid", "shots": -1}})",
                "tasks.shots must be > 0 (got -1)");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "inner": {"lr": -0.5}})",
                "inner.lr must be > 0");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "omniglot"}})",
                "tasks.data_dir is required for family 'omniglot'");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "tensor_file"}})",
                "tasks.tensor_file is required");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "cats"}})",
                "tasks.family: unknown 'cats'");
  ExpectInvalid(
      R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "outer": {"kind": "rmsprop"}})",
      "outer.kind: unknown 'rmsprop'");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "meta_batch_size": -3})",
                "meta_batch_size must be > 0 (got -3)");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "dtype": "int8"})",
                "dtype: unknown 'int8'");
  ExpectInvalid(
      R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "model": {"kind": "conv"}})",
      "model.kind: 'conv' needs image tasks");
  ExpectInvalid(R"({"algorithm": "maml", "tasks": {"family": "synthetic_images", "ways": 1}})",
                "tasks.ways must be >= 2");
  ExpectInvalid(
      R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}, "early_stopping_patience": 3})",
      "early_stopping_patience needs validation_interval > 0");
  ExpectInvalid(R"({"tasks": {"family": "sinusoid"}})", "algorithm is required");
}

TEST(JobSpecTest, UnknownJsonFieldIsRejected) {
  auto spec = ParseJobSpec(R"({"algorithm": "maml", "taskz": {}})");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("taskz"));
}

// Found by tests/fuzz (job_spec): text format let an escape put non-UTF-8 bytes into a
// string, which the JSON form then dropped (corpus/job_spec/regression-non-utf8-string).
TEST(JobSpecTest, StringsThatAreNotUtf8AreRejectedNamingTheField) {
  for (const std::string& text :
       {std::string("algorithm: \"maml\"\ntasks { family: \"omniglot\" data_dir: \"d\\223ta\" }\n"),
        std::string(
            "algorithm: \"maml\"\ntasks { family: \"omniglot\" data_dir: \"d\x93ta\" }\n")}) {
    auto spec = ParseJobSpec(text);
    ASSERT_FALSE(spec.ok()) << text;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(spec.status().message()),
                HasSubstr("tasks.data_dir is not valid UTF-8"))
        << text;
  }
  // The JSON parser refuses such bytes itself.
  auto json = ParseJobSpec("{\"algorithm\": \"maml\", \"tasks\": {\"data_dir\": \"d\x93ta\"}}");
  ASSERT_FALSE(json.ok());
  EXPECT_EQ(json.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(json.status().message()), HasSubstr("UTF-8"));
  auto fine = ParseJobSpec("algorithm: \"maml\"\ntasks { data_dir: \"caf\\303\\251\" }\n");
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->tasks().data_dir(), "caf\xc3\xa9");
}

TEST(JobSpecTest, TextFormatAndJsonRoundTrip) {
  auto spec = ParseJobSpec("algorithm: \"anil\"\ntasks { family: \"linear\" input_dim: 3 }\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->tasks().input_dim(), 3);
  auto again = ParseJobSpec(JobSpecToJson(*spec));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), spec->SerializeAsString());

  auto bad = ParseJobSpec("algorithm: \"anil\"\nbogus: 3\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("line 2"));
}

TEST(JobSpecTest, ExamplesAreValid) {
  const std::string dir = std::string(METATRAIN_SOURCE_DIR) + "/examples";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".json") continue;
    auto spec = ReadJobSpecFile(entry.path().string());
    ASSERT_TRUE(spec.ok()) << entry.path() << ": " << spec.status();
    auto normalized = NormalizeJobSpec(*spec);
    EXPECT_TRUE(normalized.ok()) << entry.path() << ": " << normalized.status();
    ++checked;
  }
  EXPECT_GE(checked, 5);
  auto missing = ReadJobSpecFile("/nonexistent/spec.json");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace metatrain::meta
