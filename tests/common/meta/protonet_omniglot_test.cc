// Prototypical networks learn on real Omniglot (NOTE [Test data]): a short higher-way run of
// the single-process core beats chance on held-out 5-way 1-shot tasks by a margin that a
// broken embedding, loss or gradient cannot reach.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/meta/job_spec.h"
#include "common/meta/trainer.h"
#include "tests/common/data/data_test_util.h"
#include "tests/testing/test_data.h"

namespace metatrain::meta {
namespace {

TEST(ProtoNetOmniglotTest, ShortHigherWayRunBeatsChanceByAWideMargin) {
  SKIP_WITHOUT_OMNIGLOT();
  setenv("METATRAIN_CACHE_DIR", data::testing::TestCacheDir().c_str(), 1);
  // 10-way training episodes, 5-way 1-shot tests; a 32-filter conv embedding.
  auto spec = ParseJobSpec(absl::StrCat(R"({
    "algorithm": "protonet",
    "model": {"kind": "conv", "filters": 32},
    "tasks": {"family": "omniglot", "data_dir": ")",
                                        ::metatrain::testing::OmniglotDir(), R"(",
              "ways": 5, "shots": 1, "query_size": 5},
    "protonet": {"train_ways": 10},
    "meta_batch_size": 2, "steps": 60,
    "outer": {"lr": 0.003},
    "test_tasks": 100, "seed": 11
  })"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto normalized = NormalizeJobSpec(*spec);
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  auto job = MakeJobContext(*normalized);
  ASSERT_TRUE(job.ok()) << job.status();
  double first_loss = -1, last_loss = -1;
  auto result = Train(*job, [&](const StepReport& report) {
    if (first_loss < 0) first_loss = report.train_loss;
    last_loss = report.train_loss;
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  const EvaluationSummary& test = result->test;
  ASSERT_EQ(test.accuracy_after.n, 100);
  // The same 100 tasks with the untrained embedding.
  auto initial = InitialMetaParams(*job);
  ASSERT_TRUE(initial.ok()) << initial.status();
  auto untrained = MetaTest(*job, *initial);
  ASSERT_TRUE(untrained.ok()) << untrained.status();
  std::printf("meta-test accuracy %.4f ± %.4f (untrained %.4f); train loss %.3f -> %.3f\n",
              test.accuracy_after.mean, test.accuracy_after.ci95, untrained->accuracy_after.mean,
              first_loss, last_loss);
  EXPECT_GT(test.accuracy_after.mean, untrained->accuracy_after.mean + 0.15);
  // Chance is 20%; an untrained random conv embedding already gets well above it, so
  // training must also add a wide margin over it (below).
  EXPECT_GT(test.accuracy_after.mean - test.accuracy_after.ci95, 0.75)
      << "meta-test accuracy " << test.accuracy_after.mean << " ± " << test.accuracy_after.ci95;
  EXPECT_LT(last_loss, first_loss);
}

}  // namespace
}  // namespace metatrain::meta
