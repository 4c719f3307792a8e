// Episodes sampled from the real Omniglot set (NOTE [Test data]) by the omniglot task
// family: what every published number rests on. Same seed and key, same episode; another
// seed, another episode; N-way K-shot shapes and labels; pixels as the MAML code feeds them.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "common/meta/task_family.h"
#include "tests/common/data/data_test_util.h"
#include "tests/testing/test_data.h"

namespace metatrain::meta {
namespace {

using data::testing::TestCacheDir;
using ::metatrain::testing::OmniglotDir;

std::unique_ptr<TaskFamily> OmniglotFamily(uint64_t seed, int shots) {
  setenv("METATRAIN_CACHE_DIR", TestCacheDir().c_str(), 1);
  auto spec = ParseJobSpec(absl::StrCat(
      R"({"algorithm": "maml", "tasks": {"family": "omniglot", "data_dir": ")", OmniglotDir(),
      R"(", "ways": 5, "shots": )", shots, R"(, "query_size": 15}, "seed": )", seed, "}"));
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto normalized = NormalizeJobSpec(*spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  auto family = MakeTaskFamily(*normalized);
  EXPECT_TRUE(family.ok()) << family.status();
  return family.ok() ? std::move(*family) : nullptr;
}

TEST(OmniglotTasksTest, EpisodesAreDeterministicGivenTheSeed) {
  SKIP_WITHOUT_OMNIGLOT();
  auto family = OmniglotFamily(5, 1);
  ASSERT_NE(family, nullptr);
  const std::vector<TaskKey> keys = {{Split::kTrain, 7, 0},
                                     {Split::kTrain, 7, 1},
                                     {Split::kValidation, 2, 0},
                                     {Split::kTest, 0, 3}};
  auto a = family->Sample(keys, at::kFloat);
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = family->Sample(keys, at::kFloat);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(at::equal(a->support_x, b->support_x));
  EXPECT_TRUE(at::equal(a->query_x, b->query_x));
  EXPECT_TRUE(at::equal(a->support_y, b->support_y));
  EXPECT_TRUE(at::equal(a->query_y, b->query_y));
  // A task does not depend on which other tasks are sampled with it (workers get shards).
  auto alone = family->Sample({keys[3]}, at::kFloat);
  ASSERT_TRUE(alone.ok());
  EXPECT_TRUE(at::equal(alone->support_x[0], a->support_x[3]));
  EXPECT_TRUE(at::equal(alone->query_x[0], a->query_x[3]));
  // Another key or another job seed: another episode.
  EXPECT_FALSE(at::equal(a->support_x[0], a->support_x[1]));
  auto other_seed = OmniglotFamily(6, 1);
  ASSERT_NE(other_seed, nullptr);
  auto c = other_seed->Sample(keys, at::kFloat);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(at::equal(a->support_x, c->support_x));
}

TEST(OmniglotTasksTest, FiveWayFiveShotShapesLabelsAndPixels) {
  SKIP_WITHOUT_OMNIGLOT();
  auto family = OmniglotFamily(1, 5);
  ASSERT_NE(family, nullptr);
  EXPECT_EQ(family->input_shape(), (std::vector<int64_t>{1, 28, 28}));
  EXPECT_EQ(family->output_size(), 5);
  std::vector<TaskKey> keys;
  for (int64_t i = 0; i < 8; ++i) keys.push_back({Split::kTrain, 0, i});
  auto t = family->Sample(keys, at::kFloat);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->support_x.sizes(), (std::vector<int64_t>{8, 25, 1, 28, 28}));
  EXPECT_EQ(t->query_x.sizes(), (std::vector<int64_t>{8, 75, 1, 28, 28}));
  for (int64_t task = 0; task < 8; ++task) {
    for (int64_t label = 0; label < 5; ++label) {
      EXPECT_EQ(t->support_y[task].eq(label).sum().item<int64_t>(), 5);
      EXPECT_EQ(t->query_y[task].eq(label).sum().item<int64_t>(), 15);
    }
    // Twenty drawings per character: 5 support + 15 query are all different drawings.
    const at::Tensor all = at::cat({t->support_x[task], t->query_x[task]}).reshape({100, -1});
    for (int64_t label = 0; label < 5; ++label) {
      std::vector<int64_t> rows;
      for (int64_t i = 0; i < 25; ++i) {
        if (t->support_y[task][i].item<int64_t>() == label) rows.push_back(i);
      }
      for (int64_t i = 0; i < 75; ++i) {
        if (t->query_y[task][i].item<int64_t>() == label) rows.push_back(25 + i);
      }
      ASSERT_EQ(rows.size(), 20u);
      for (size_t i = 0; i < rows.size(); ++i) {
        for (size_t j = i + 1; j < rows.size(); ++j) {
          EXPECT_FALSE(at::equal(all[rows[i]], all[rows[j]])) << "task " << task;
        }
      }
    }
  }
  // Ink is 1, paper 0, Lanczos in between: most of a 28x28 drawing is paper.
  EXPECT_GE(t->support_x.min().item<float>(), 0.0f);
  EXPECT_LE(t->support_x.max().item<float>(), 1.0f);
  const double mean = t->query_x.mean().item<double>();
  EXPECT_GT(mean, 0.03);
  EXPECT_LT(mean, 0.3);
}

}  // namespace
}  // namespace metatrain::meta
