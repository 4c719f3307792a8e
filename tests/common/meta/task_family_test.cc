#include "common/meta/task_family.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "common/meta/job_spec.h"
#include "common/meta/task_family_impl.h"
#include "tests/common/meta/python_util.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

v1::JobSpec Spec(const std::string& json) {
  auto spec = ParseJobSpec(json);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto normalized = NormalizeJobSpec(*spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  return *normalized;
}

std::unique_ptr<TaskFamily> Family(const v1::JobSpec& spec) {
  auto family = MakeTaskFamily(spec);
  EXPECT_TRUE(family.ok()) << family.status();
  return family.ok() ? std::move(*family) : nullptr;
}

bool SameBatch(const TaskBatch& a, const TaskBatch& b) {
  return at::equal(a.support_x, b.support_x) && at::equal(a.support_y, b.support_y) &&
         at::equal(a.query_x, b.query_x) && at::equal(a.query_y, b.query_y);
}

TEST(SinusoidTasksTest, DeterministicPerKeyAndShaped) {
  auto spec = Spec(
      R"({"algorithm": "maml", "tasks": {"family": "sinusoid", "shots": 10, "query_size": 7}, "seed": 3})");
  auto family = Family(spec);
  ASSERT_NE(family, nullptr);
  EXPECT_EQ(family->loss(), LossKind::kMse);
  EXPECT_EQ(family->input_shape(), std::vector<int64_t>{1});
  std::vector<TaskKey> keys = {{Split::kTrain, 4, 0}, {Split::kTrain, 4, 1}};
  auto a = family->Sample(keys, at::kFloat);
  auto b = family->Sample(keys, at::kFloat);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(SameBatch(*a, *b));
  EXPECT_EQ(a->support_x.sizes(), (std::vector<int64_t>{2, 10, 1}));
  EXPECT_EQ(a->query_y.sizes(), (std::vector<int64_t>{2, 7, 1}));
  EXPECT_EQ(a->support_x.scalar_type(), at::kFloat);
  EXPECT_FALSE(at::equal(a->support_x[0], a->support_x[1]));
  // A task does not depend on its batch-mates.
  auto alone = family->Sample({keys[1]}, at::kFloat);
  EXPECT_TRUE(at::equal(alone->query_y[0], a->query_y[1]));
  // Other splits and seeds give other tasks.
  auto val = family->Sample({{Split::kValidation, 4, 0}}, at::kFloat);
  EXPECT_FALSE(at::equal(val->support_x[0], a->support_x[0]));
  spec.set_seed(4);
  auto other = Family(spec)->Sample({keys[0]}, at::kFloat);
  EXPECT_FALSE(at::equal(other->support_x[0], a->support_x[0]));
}

TEST(SinusoidTasksTest, StatisticsInRange) {
  auto family = Family(Spec(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}})"));
  std::vector<TaskKey> keys;
  for (int i = 0; i < 500; ++i) keys.push_back({Split::kTrain, 0, i});
  auto batch = family->Sample(keys, at::kDouble);
  ASSERT_TRUE(batch.ok());
  const at::Tensor x = at::cat({batch->support_x, batch->query_x}, 1);
  const at::Tensor y = at::cat({batch->support_y, batch->query_y}, 1);
  EXPECT_GE(x.min().item<double>(), -5.0);
  EXPECT_LT(x.max().item<double>(), 5.0);
  EXPECT_NEAR(x.mean().item<double>(), 0.0, 0.2);
  EXPECT_LE(y.abs().max().item<double>(), 5.0);
  // Per-task amplitude >= max |y|; the largest over 500 tasks gets close to 5.
  EXPECT_GT(y.abs().max().item<double>(), 4.0);
  // E[A^2]/2 = (5^3 - 0.1^3) / (3 * 4.9) / 2 ~= 4.25 is the mean of y^2.
  EXPECT_NEAR(y.pow(2).mean().item<double>(), 4.25, 0.5);
}

TEST(LinearTasksTest, TargetsAreLinearInInputs) {
  auto family = Family(
      Spec(R"({"algorithm": "maml", "tasks": {"family": "linear", "input_dim": 3, "shots": 8}})"));
  auto batch = family->Sample({{Split::kTrain, 0, 0}}, at::kDouble);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->support_x.sizes(), (std::vector<int64_t>{1, 8, 3}));
  // Least squares on the support set recovers the function exactly (no noise).
  at::Tensor a = at::cat({batch->support_x[0], at::ones({8, 1}, at::kDouble)}, 1);
  at::Tensor coef = std::get<0>(at::linalg_lstsq(a, batch->support_y[0]));
  at::Tensor qa = at::cat({batch->query_x[0], at::ones({8, 1}, at::kDouble)}, 1);
  EXPECT_TRUE(at::allclose(qa.matmul(coef), batch->query_y[0], 1e-6, 1e-6));
}

TEST(ImageTasksTest, SyntheticNWayKShot) {
  auto spec = Spec(
      R"({"algorithm": "maml", "tasks": {"family": "synthetic_images", "ways": 5, "shots": 2, "query_size": 3}, "seed": 9})");
  auto family = Family(spec);
  ASSERT_NE(family, nullptr);
  EXPECT_EQ(family->loss(), LossKind::kCrossEntropy);
  EXPECT_EQ(family->input_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(family->output_size(), 5);
  std::vector<TaskKey> keys = {{Split::kTrain, 1, 0}, {Split::kTrain, 1, 1}, {Split::kTest, 1, 0}};
  auto a = family->Sample(keys, at::kFloat);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->support_x.sizes(), (std::vector<int64_t>{3, 10, 1, 28, 28}));
  EXPECT_EQ(a->query_x.sizes(), (std::vector<int64_t>{3, 15, 1, 28, 28}));
  EXPECT_EQ(a->support_y.sizes(), (std::vector<int64_t>{3, 10}));
  EXPECT_EQ(a->support_y.scalar_type(), at::kLong);
  EXPECT_GE(a->support_x.min().item<float>(), 0.0f);
  EXPECT_LE(a->support_x.max().item<float>(), 1.0f);
  EXPECT_GT(a->support_x.max().item<float>(), 0.5f);
  for (int64_t label = 0; label < 5; ++label) {
    EXPECT_EQ(a->query_y[0].eq(label).sum().item<int64_t>(), 3);
  }
  auto b = family->Sample(keys, at::kFloat);
  EXPECT_TRUE(SameBatch(*a, *b));
  EXPECT_FALSE(at::equal(a->support_x[0], a->support_x[1]));
  EXPECT_FALSE(at::equal(a->support_x[0], a->support_x[2]));
  // Support and query examples of a class never repeat.
  for (int64_t i = 0; i < 15; ++i) {
    for (int64_t j = 0; j < 10; ++j) {
      EXPECT_FALSE(at::equal(a->query_x[0][i], a->support_x[0][j]));
    }
  }
  // Same class, same label: examples resemble each other more than other classes'.
  const at::Tensor s = a->support_x[0].reshape({10, -1});
  const double same = (s[0] - s[1]).pow(2).mean().item<double>();
  double other = 0;
  for (int64_t j = 2; j < 10; ++j) other += (s[0] - s[j]).pow(2).mean().item<double>() / 8;
  EXPECT_LT(same, other);
}

TEST(ImageTasksTest, RejectsTooFewExamples) {
  auto spec = Spec(
      R"({"algorithm": "maml", "tasks": {"family": "synthetic_images", "shots": 10, "query_size": 15}})");
  auto family = MakeTaskFamily(spec);
  ASSERT_FALSE(family.ok());
  EXPECT_EQ(family.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(family.status().message()),
              HasSubstr("tasks.shots + tasks.query_size = 25"));
  auto many = Spec(R"({"algorithm": "maml", "tasks": {"family": "synthetic_images", "ways": 30}})");
  auto f2 = MakeTaskFamily(many);
  ASSERT_FALSE(f2.ok());
  EXPECT_THAT(std::string(f2.status().message()), HasSubstr("tasks.ways is 30"));
}

// A tiny hand-made dataset: class 0 has a single bright pixel at (row 0, col 1) in every
// example, class 1 at (row 2, col 2). The train split has class 0 rotated a quarter turn.
TEST(ImageTasksTest, AppliesQuarterTurnsCounterClockwise) {
  data::FewShotDataset d;
  d.images.channels = 1;
  d.images.height = 3;
  d.images.width = 3;
  d.images.class_names = {"a", "b"};
  for (int c = 0; c < 2; ++c) {
    for (int e = 0; e < 4; ++e) {
      std::vector<uint8_t> img(9, 0);
      img[c == 0 ? 1 : 8] = 255;
      img[4] = static_cast<uint8_t>(e);  // makes examples distinct
      d.images.pixels.insert(d.images.pixels.end(), img.begin(), img.end());
      d.images.labels.push_back(c);
    }
  }
  d.examples_by_class = data::GroupByClass(d.images);
  d.train_classes = {{0, 1}, {1, 0}};
  d.validation_classes = d.test_classes = {{0, 0}, {1, 0}};
  v1::TaskSpec spec;
  spec.set_ways(2);
  spec.set_shots(1);
  spec.set_query_size(3);
  spec.set_image_size(3);
  auto family = MakeImageClassificationTasks(d, spec, 1);
  ASSERT_TRUE(family.ok()) << family.status();
  auto batch = (*family)->Sample({{Split::kTrain, 0, 0}, {Split::kTest, 0, 0}}, at::kFloat);
  ASSERT_TRUE(batch.ok()) << batch.status();
  for (int64_t t = 0; t < 2; ++t) {
    for (int64_t i = 0; i < 2; ++i) {
      const at::Tensor img = batch->support_x[t][i][0];
      // Which class got this label: class 1's pixel (2, 2) is never rotated.
      if (img[2][2].item<float>() == 1.0f) continue;
      // Class 0: (0, 1) unrotated; rot90 counter-clockwise moves it to (1, 0).
      if (t == 0) {
        EXPECT_EQ(img[1][0].item<float>(), 1.0f);
        EXPECT_EQ(img[0][1].item<float>(), 0.0f);
      } else {
        EXPECT_EQ(img[0][1].item<float>(), 1.0f);
      }
    }
  }
  // Every class has 4 examples: asking for 1 + 4 is refused, naming the class.
  spec.set_query_size(4);
  auto refused = MakeImageClassificationTasks(d, spec, 1);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("class 'a'"));
}

TEST(ConcatTest, ConcatenatesAlongTasks) {
  auto family = Family(Spec(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"}})"));
  auto a = family->Sample({{Split::kTest, 0, 0}}, at::kFloat);
  auto b = family->Sample({{Split::kTest, 0, 1}}, at::kFloat);
  auto both = family->Sample({{Split::kTest, 0, 0}, {Split::kTest, 0, 1}}, at::kFloat);
  EXPECT_TRUE(SameBatch(ConcatTaskBatches({*a, *b}), *both));
}

class TensorFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!metatrain::testing::PythonHasTorch()) {
      GTEST_SKIP() << "/usr/bin/python3 has no torch (install python3-torch): cannot write "
                      "torch.save files";
    }
    dir_ = metatrain::testing::TempDir();
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }
  std::string Save(const std::string& name, const std::string& dict_expr) {
    const std::string path = dir_ + "/" + name;
    int rc = 0;
    const std::string out = metatrain::testing::RunPython(
        "import torch\ntorch.manual_seed(0)\ntorch.save(" + dict_expr + ", '" + path + "')\n", &rc);
    EXPECT_EQ(rc, 0) << out;
    return path;
  }
  v1::JobSpec SpecFor(const std::string& path, bool file_order) {
    v1::JobSpec spec = Spec(
        R"({"algorithm": "maml", "tasks": {"family": "tensor_file", "tensor_file": "x"}, "meta_batch_size": 4})");
    spec.mutable_tasks()->set_tensor_file(path);
    spec.mutable_tasks()->set_file_order(file_order);
    return spec;
  }
  std::string dir_;
};

TEST_F(TensorFileTest, RegressionTasksInFileOrder) {
  const std::string path =
      Save("reg.pt",
           "{'support_x': torch.arange(10 * 5 * 2, dtype=torch.float32).reshape(10, 5, 2),"
           " 'support_y': torch.randn(10, 5, 1), 'query_x': torch.randn(10, 6, 2),"
           " 'query_y': torch.randn(10, 6, 1)}");
  auto family = MakeTaskFamily(SpecFor(path, true));
  ASSERT_TRUE(family.ok()) << family.status();
  EXPECT_EQ((*family)->loss(), LossKind::kMse);
  EXPECT_EQ((*family)->input_shape(), std::vector<int64_t>{2});
  EXPECT_EQ((*family)->output_size(), 1);
  // step 2, index 3 with meta-batch 4 -> task (2 * 4 + 3) % 10 = 1.
  auto batch = (*family)->Sample({{Split::kTrain, 2, 3}}, at::kDouble);
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(batch->support_x.scalar_type(), at::kDouble);
  EXPECT_EQ(batch->support_x[0][0][0].item<double>(), 10.0);
  EXPECT_EQ(batch->query_x.sizes(), (std::vector<int64_t>{1, 6, 2}));
}

TEST_F(TensorFileTest, ClassificationTasksAtRandom) {
  const std::string path =
      Save("cls.pt",
           "{'support_x': torch.randn(20, 6, 1, 4, 4), 'support_y': torch.arange(3).repeat(20, 2),"
           " 'query_x': torch.randn(20, 9, 1, 4, 4), 'query_y': torch.arange(3).repeat(20, 3)}");
  auto family = MakeTaskFamily(SpecFor(path, false));
  ASSERT_TRUE(family.ok()) << family.status();
  EXPECT_EQ((*family)->loss(), LossKind::kCrossEntropy);
  EXPECT_EQ((*family)->output_size(), 3);
  EXPECT_EQ((*family)->input_shape(), (std::vector<int64_t>{1, 4, 4}));
  std::vector<TaskKey> keys;
  for (int i = 0; i < 8; ++i) keys.push_back({Split::kTrain, 0, i});
  auto a = (*family)->Sample(keys, at::kFloat);
  auto b = (*family)->Sample(keys, at::kFloat);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(SameBatch(*a, *b));
  EXPECT_EQ(a->support_y.scalar_type(), at::kLong);
  // 8 draws from 20 tasks are not all the same task.
  bool differ = false;
  for (int i = 1; i < 8; ++i) differ = differ || !at::equal(a->support_x[0], a->support_x[i]);
  EXPECT_TRUE(differ);
}

TEST_F(TensorFileTest, BadFilesGiveClearErrors) {
  struct Case {
    std::string dict, message;
  };
  const std::vector<Case> cases = {
      {"{'support_x': torch.randn(4, 5, 2), 'support_y': torch.randn(4, 5, 1),"
       " 'query_x': torch.randn(4, 5, 2)}",
       "missing key 'query_y'"},
      {"{'support_x': torch.randn(4, 5, 2), 'support_y': torch.randn(3, 5, 1),"
       " 'query_x': torch.randn(4, 5, 2), 'query_y': torch.randn(4, 5, 1)}",
       "support_y has shape [3, 5, 1] but support_x has [4, 5, 2]"},
      {"{'support_x': torch.randn(4, 5, 2), 'support_y': torch.randn(4, 5, 1),"
       " 'query_x': torch.randn(4, 5, 3), 'query_y': torch.randn(4, 5, 1)}",
       "different example shapes"},
      {"{'support_x': torch.randn(4, 5, 2), 'support_y': torch.zeros(4, 5, dtype=torch.long),"
       " 'query_x': torch.randn(4, 5, 2), 'query_y': torch.randn(4, 5, 1)}",
       "must both be int64 or both float"},
      {"{'support_x': torch.zeros(4, 5, 2, dtype=torch.long), 'support_y': torch.randn(4, 5, 1),"
       " 'query_x': torch.randn(4, 5, 2), 'query_y': torch.randn(4, 5, 1)}",
       "'support_x' must be a floating-point tensor"},
      {"[1, 2, 3]", "expected a dict of tensors"},
      {"{'support_x': 3, 'support_y': torch.randn(4, 5, 1),"
       " 'query_x': torch.randn(4, 5, 2), 'query_y': torch.randn(4, 5, 1)}",
       "'support_x' is a Int, not a tensor"},
  };
  // One Python process writes every file (importing torch is slow).
  std::string script = "import torch\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    script += "torch.save(" + cases[i].dict + ", '" + dir_ + "/bad" + std::to_string(i) + ".pt')\n";
  }
  int rc = 0;
  const std::string out = metatrain::testing::RunPython(script, &rc);
  ASSERT_EQ(rc, 0) << out;
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = dir_ + "/bad" + std::to_string(i) + ".pt";
    auto family = MakeTaskFamily(SpecFor(path, false));
    ASSERT_FALSE(family.ok()) << cases[i].dict;
    EXPECT_EQ(family.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(family.status().message()), HasSubstr(cases[i].message));
    EXPECT_THAT(std::string(family.status().message()), HasSubstr(path));
  }
  const std::string garbage = dir_ + "/garbage.pt";
  std::system(("echo 'not a tensor file' > " + garbage).c_str());
  auto family = MakeTaskFamily(SpecFor(garbage, false));
  ASSERT_FALSE(family.ok());
  EXPECT_EQ(family.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(family.status().message()), HasSubstr("not a torch.save file"));
  auto missing = MakeTaskFamily(SpecFor(dir_ + "/nope.pt", false));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace metatrain::meta
