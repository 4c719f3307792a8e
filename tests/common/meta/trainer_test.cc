#include "common/meta/trainer.h"

#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <utility>

#include "common/meta/checkpoint.h"
#include "common/meta/job_spec.h"
#include "tests/common/meta/python_util.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

JobContext Context(const std::string& json) {
  at::set_num_threads(1);
  auto spec = ParseJobSpec(json);
  EXPECT_TRUE(spec.ok()) << spec.status();
  auto normalized = NormalizeJobSpec(*spec);
  EXPECT_TRUE(normalized.ok()) << normalized.status();
  auto job = MakeJobContext(*normalized);
  EXPECT_TRUE(job.ok()) << job.status();
  return std::move(*job);
}

// The MAML paper's sinusoid setting, shortened.
constexpr char kSinusoidMaml[] = R"({
  "algorithm": "maml", "tasks": {"family": "sinusoid", "shots": 10},
  "inner": {"steps": 1, "lr": 0.01, "test_steps": 10},
  "outer": {"lr": 0.003}, "meta_batch_size": 25,
  "steps": 400, "test_tasks": 200, "seed": 5})";

TEST(TrainerTest, SinusoidMamlLearnsToAdapt) {
  JobContext job = Context(kSinusoidMaml);
  std::vector<double> losses;
  auto result = Train(job, [&](const StepReport& r) {
    losses.push_back(r.train_loss);
    EXPECT_GT(r.tasks_per_second, 0);
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->steps_run, 400);
  ASSERT_EQ(losses.size(), 400u);
  const auto& test = result->test;
  EXPECT_EQ(test.loss_after.n, 200);
  EXPECT_EQ(test.accuracy_after.n, 0);
  std::printf("meta-test: %s\n", test.ToString().c_str());
  // Before adaptation a sinusoid of random phase is unpredictable (MSE ~ E[A^2]/2 ~ 3-4);
  // a meta-learned init adapts within 10 steps. A broken inner loop leaves after == before.
  EXPECT_GT(test.loss_before.mean, 2.0);
  EXPECT_LT(test.loss_after.mean, 0.5 * test.loss_before.mean);
  EXPECT_LT(test.loss_after.mean, 1.3);
  // And training itself improved the post-adaptation loss.
  double first = 0, last = 0;
  for (int i = 0; i < 50; ++i) {
    first += losses[i] / 50;
    last += losses[losses.size() - 1 - i] / 50;
  }
  EXPECT_LT(last, 0.7 * first);
}

TEST(TrainerTest, SyntheticImagesMetaTrainingBeatsFreshInit) {
  JobContext job = Context(R"({"algorithm": "fomaml", "model": {"kind": "conv", "filters": 8},
      "tasks": {"family": "synthetic_images", "ways": 5, "shots": 1, "query_size": 5,
                "image_size": 16},
      "meta_batch_size": 4, "inner": {"steps": 2, "lr": 0.4, "test_steps": 3},
      "outer": {"lr": 0.003}, "steps": 60, "test_tasks": 50, "seed": 3})");
  auto init = InitialMetaParams(job);
  ASSERT_TRUE(init.ok());
  auto fresh = MetaTest(job, *init);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  auto result = Train(job);
  ASSERT_TRUE(result.ok()) << result.status();
  std::printf("fresh init: %s\nmeta-trained: %s\n", fresh->ToString().c_str(),
              result->test.ToString().c_str());
  EXPECT_EQ(result->test.accuracy_after.n, 50);
  EXPECT_NEAR(result->test.accuracy_before.mean, 0.2, 0.1);  // chance before adapting
  EXPECT_GT(result->test.accuracy_after.mean, 0.38);
  EXPECT_GT(result->test.accuracy_after.mean, fresh->accuracy_after.mean + 0.05);
}

TEST(TrainerTest, SameSeedSameBits) {
  const std::string json = R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
      "steps": 15, "test_tasks": 10, "seed": 77})";
  JobContext a = Context(json), b = Context(json);
  auto ra = Train(a);
  auto rb = Train(b);
  ASSERT_TRUE(ra.ok() && rb.ok());
  ASSERT_EQ(ra->final_params.size(), rb->final_params.size());
  for (size_t i = 0; i < ra->final_params.size(); ++i) {
    EXPECT_TRUE(at::equal(ra->final_params[i], rb->final_params[i])) << i;
  }
  EXPECT_EQ(ra->test.loss_after.mean, rb->test.loss_after.mean);
  // A different seed gives different parameters.
  JobContext c = Context(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
      "steps": 15, "test_tasks": 10, "seed": 78})");
  auto rc = Train(c);
  ASSERT_TRUE(rc.ok());
  EXPECT_FALSE(at::equal(ra->final_params[0], rc->final_params[0]));
}

// metatrain-train --threads / --task_group_size change how a step is computed, never its
// bits (NOTE [One intra-op thread per task] in runtime.h): a conv-net MAML job trained with
// 1 thread and the whole batch at once, with 2 threads in groups of 1 and with 3 threads
// in groups of 2 ends on the same parameters.
TEST(TrainerTest, ThreadsAndTaskGroupsDoNotChangeTheBits) {
  const std::string json = R"({"algorithm": "maml", "model": {"kind": "conv", "filters": 8},
      "tasks": {"family": "synthetic_images", "ways": 3, "shots": 1, "query_size": 3,
                "image_size": 16},
      "meta_batch_size": 5, "steps": 4, "test_tasks": 5, "seed": 12})";
  JobContext job = Context(json);
  auto whole = Train(job, {}, /*threads=*/1, /*task_group_size=*/5);
  ASSERT_TRUE(whole.ok()) << whole.status();
  for (auto [threads, group] : {std::pair<int, int64_t>{2, 1}, {3, 2}}) {
    JobContext again = Context(json);
    auto grouped = Train(again, {}, threads, group);
    ASSERT_TRUE(grouped.ok()) << grouped.status();
    for (size_t i = 0; i < whole->final_params.size(); ++i) {
      EXPECT_TRUE(at::equal(whole->final_params[i], grouped->final_params[i]))
          << threads << " threads, groups of " << group << ": parameter " << i;
    }
  }
}

// gradient_group_size is part of the job's arithmetic (aggregation.h): another grouping
// rounds the meta-gradient's sum differently, by a few ulps, while compute groups and
// threads (above) change nothing.
TEST(TrainerTest, GradientGroupSizeChangesOnlyTheRoundingOfTheSum) {
  const std::string base = R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
      "meta_batch_size": 7, "steps": 4, "test_tasks": 5, "seed": 3)";
  JobContext ungrouped = Context(base + "}");
  auto plain = Train(ungrouped);
  ASSERT_TRUE(plain.ok()) << plain.status();
  JobContext grouped_job = Context(base + R"(, "gradient_group_size": 3})");
  auto grouped = Train(grouped_job);
  ASSERT_TRUE(grouped.ok()) << grouped.status();
  JobContext again_job = Context(base + R"(, "gradient_group_size": 3})");
  auto again = Train(again_job, {}, /*threads=*/2, /*task_group_size=*/2);
  ASSERT_TRUE(again.ok()) << again.status();
  bool any_bit_differs = false;
  for (size_t i = 0; i < plain->final_params.size(); ++i) {
    EXPECT_TRUE(at::allclose(plain->final_params[i], grouped->final_params[i], 1e-4, 1e-6)) << i;
    any_bit_differs |= !at::equal(plain->final_params[i], grouped->final_params[i]);
    EXPECT_TRUE(at::equal(grouped->final_params[i], again->final_params[i])) << i;
  }
  EXPECT_TRUE(any_bit_differs);
}

TEST(TrainerTest, EarlyStoppingKeepsBestParams) {
  // A far too large outer lr makes validation loss stop improving quickly.
  JobContext job = Context(R"({"algorithm": "fomaml", "tasks": {"family": "sinusoid"},
      "outer": {"lr": 0.3}, "steps": 200, "validation_interval": 2, "validation_tasks": 20,
      "early_stopping_patience": 3, "test_tasks": 20, "seed": 2})");
  double best = 1e300;
  int64_t best_step = -1;
  int validations = 0;
  auto result = Train(job, [&](const StepReport& r) {
    if (r.validation) {
      ++validations;
      EXPECT_EQ(r.step % 2, 0);
      if (r.validation->loss_after.mean < best) {
        best = r.validation->loss_after.mean;
        best_step = r.step;
      }
    }
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->stopped_early);
  EXPECT_LT(result->steps_run, 200);
  EXPECT_EQ(result->steps_run, best_step + 3 * 2);
  EXPECT_EQ(validations, result->steps_run / 2);
  // best_params are the parameters validated at best_step: re-validating reproduces it.
  auto again = MetaValidate(job, result->best_params, best_step);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->loss_after.mean, best);
  bool same = true;
  for (size_t i = 0; i < result->best_params.size(); ++i) {
    same = same && at::equal(result->best_params[i], result->final_params[i]);
  }
  EXPECT_FALSE(same);
}

TEST(TrainerTest, SelectBestByAccuracyKeepsMostAccurateParams) {
  // A large outer lr makes validation accuracy peak early and then wander.
  JobContext job = Context(R"({"algorithm": "maml", "model": {"hidden_sizes": [32]},
      "tasks": {"family": "synthetic_images", "ways": 3, "query_size": 3, "image_size": 14},
      "meta_batch_size": 4, "outer": {"lr": 0.05}, "steps": 200, "validation_interval": 2,
      "validation_tasks": 10, "early_stopping_patience": 3, "select_best_by": "accuracy",
      "test_tasks": 10, "seed": 4})");
  double best_accuracy = -1;
  int64_t best_step = -1;
  auto result = Train(job, [&](const StepReport& r) {
    if (r.validation && r.validation->accuracy_after.mean > best_accuracy) {
      best_accuracy = r.validation->accuracy_after.mean;
      best_step = r.step;
    }
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  // Patience counts validations without a more accurate one, not without a lower loss.
  EXPECT_TRUE(result->stopped_early);
  EXPECT_EQ(result->steps_run, best_step + 3 * 2);
  auto again = MetaValidate(job, result->best_params, best_step);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->accuracy_after.mean, best_accuracy);
}

TEST(TrainerTest, PlateauScheduleLowersLearningRate) {
  JobContext job = Context(R"({"algorithm": "fomaml", "tasks": {"family": "sinusoid"},
      "outer": {"lr": 0.3, "schedule": "plateau", "plateau_patience": 1, "plateau_factor": 0.5},
      "steps": 40, "validation_interval": 2, "validation_tasks": 20, "test_tasks": 10})");
  std::vector<double> lrs;
  auto result = Train(job, [&](const StepReport& r) {
    lrs.push_back(r.lr);
    return true;
  });
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(lrs.front(), 0.3);
  EXPECT_LT(lrs.back(), 0.3);
  for (size_t i = 1; i < lrs.size(); ++i) {
    EXPECT_LE(lrs[i], lrs[i - 1]);
    const double ratio = std::log2(0.3 / lrs[i]);
    EXPECT_NEAR(ratio, std::round(ratio), 1e-9);  // 0.3 * 0.5^k
  }
}

TEST(TrainerTest, ReptileAnnealsLinearly) {
  JobContext job = Context(R"({"algorithm": "reptile", "tasks": {"family": "sinusoid"},
      "inner": {"steps": 3}, "steps": 10, "test_tasks": 10})");
  std::vector<double> lrs;
  auto result = Train(job, [&](const StepReport& r) {
    lrs.push_back(r.lr);
    return r.step < 8;  // cancel after step 8
  });
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kCancelled);
  ASSERT_EQ(lrs.size(), 8u);
  for (size_t i = 0; i < lrs.size(); ++i) EXPECT_DOUBLE_EQ(lrs[i], 1.0 - i / 10.0);
}

TEST(TrainerTest, InitialWeightsFromCheckpoint) {
  const std::string dir = metatrain::testing::TempDir();
  JobContext job = Context(R"({"algorithm": "maml", "tasks": {"family": "sinusoid"},
      "steps": 3, "test_tasks": 10, "seed": 1})");
  auto trained = Train(job);
  ASSERT_TRUE(trained.ok());
  const std::string path = dir + "/init.pt";
  ASSERT_TRUE(
      SaveStateDict(path, ToStateDict(job.learner->meta_param_specs(), trained->final_params))
          .ok());
  v1::JobSpec spec = job.spec;
  spec.set_initial_weights(path);
  spec.set_seed(99);
  auto resumed = MakeJobContext(spec);
  ASSERT_TRUE(resumed.ok());
  auto params = InitialMetaParams(*resumed);
  ASSERT_TRUE(params.ok()) << params.status();
  for (size_t i = 0; i < params->size(); ++i) {
    EXPECT_TRUE(at::equal((*params)[i], trained->final_params[i]));
  }
  // A checkpoint of another architecture is a clear error naming the tensor.
  spec.mutable_model()->clear_hidden_sizes();
  spec.mutable_model()->add_hidden_sizes(20);
  spec.mutable_model()->add_hidden_sizes(40);
  auto other = MakeJobContext(spec);
  ASSERT_TRUE(other.ok());
  auto bad = InitialMetaParams(*other);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("layers.0.weight: checkpoint has [40, 1], model needs [20, 1]"));
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace metatrain::meta
