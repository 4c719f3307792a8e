// Task t's meta-gradient, losses and evaluation metrics are bit-identical whether t is
// computed in a batch of 4 or alone: what lets a distributed run shard tasks over any
// number of workers and still produce the same bits (NOTE [Task independence is bitwise]
// in common/meta/batched_ops.h).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/strip.h"
#include "common/meta/learner.h"
#include "common/meta/model.h"
#include "common/meta/task_groups.h"
#include "tests/common/meta/meta_test_util.h"

namespace metatrain::meta {
namespace {

using testing::ClassificationBatch;
using testing::ConvSpec;
using testing::LearnerSpec;
using testing::MlpSpec;
using testing::RegressionBatch;
using testing::Slice;

enum class Net { kSinusoidMlp, kBatchNormMlp, kConvNet };

struct Fixture {
  std::shared_ptr<const Model> model;
  LossKind loss;
  TaskBatch tasks;
};

Fixture MakeFixture(Net net) {
  const at::ScalarType dtype = at::kFloat;
  auto build = [](const v1::ModelSpec& spec, std::vector<int64_t> input, int64_t out) {
    auto model = MakeModel(spec, input, out);
    EXPECT_TRUE(model.ok()) << model.status();
    return std::shared_ptr<const Model>(std::move(model).value());
  };
  switch (net) {
    case Net::kSinusoidMlp:
      return {build(MlpSpec({40, 40}, false), {1}, 1), LossKind::kMse,
              RegressionBatch(21, 4, 10, 10, {1}, 1, dtype)};
    case Net::kBatchNormMlp:
      // Odd widths so vectorised kernels have scalar tails, one layer wider than a
      // GEMM kernel's blocks.
      return {build(MlpSpec({67, 13}, true), {1, 9, 9}, 5), LossKind::kCrossEntropy,
              ClassificationBatch(22, 4, 5, 15, {1, 9, 9}, 5, dtype)};
    case Net::kConvNet:
      return {build(ConvSpec(6), {1, 28, 28}, 5), LossKind::kCrossEntropy,
              ClassificationBatch(23, 4, 5, 10, {1, 28, 28}, 5, dtype)};
  }
  return {};
}

// "maml+recompute": the algorithm with inner.recompute.
v1::JobSpec Spec(const std::string& name) {
  absl::string_view stripped = name;
  const bool recompute = absl::ConsumeSuffix(&stripped, "+recompute");
  const std::string algorithm(stripped);
  v1::JobSpec spec = LearnerSpec(algorithm, 2, 0.1);
  spec.mutable_inner()->set_recompute(recompute);
  if (algorithm == "meta_lstm") {
    // An odd hidden size, so the meta-learner's tensors have scalar tails too; a larger
    // input gate than the default, so the updates move the parameters.
    spec.mutable_meta_lstm()->set_hidden_size(5);
    spec.mutable_meta_lstm()->set_preprocess_p(10);
    spec.mutable_meta_lstm()->set_input_bias_init(-1);
  }
  return spec;
}

void ExpectBitIdentical(Net net, const std::string& algorithm) {
  SCOPED_TRACE(algorithm);
  Fixture setup = MakeFixture(net);
  auto learner = MakeMetaLearner(Spec(algorithm), setup.model, setup.loss);
  ASSERT_TRUE(learner.ok()) << learner.status();
  Rng rng(99);
  TensorList theta = (*learner)->InitialMetaParams(rng, at::kFloat);
  const auto& specs = (*learner)->meta_param_specs();

  auto batch = (*learner)->ComputeMetaGradients(theta, setup.tasks);
  ASSERT_TRUE(batch.ok()) << batch.status();
  auto batch_eval = (*learner)->Evaluate(theta, setup.tasks, 3);
  ASSERT_TRUE(batch_eval.ok()) << batch_eval.status();
  for (int64_t t = 0; t < setup.tasks.size(); ++t) {
    auto alone = (*learner)->ComputeMetaGradients(theta, Slice(setup.tasks, t));
    ASSERT_TRUE(alone.ok()) << alone.status();
    for (size_t i = 0; i < specs.size(); ++i) {
      EXPECT_TRUE(at::equal(batch->per_task[i][t], alone->per_task[i][0]))
          << specs[i].name << " task " << t << ": max diff "
          << (batch->per_task[i][t] - alone->per_task[i][0]).abs().max().item<double>();
    }
    EXPECT_TRUE(at::equal(batch->query_loss[t], alone->query_loss[0])) << "task " << t;
    if (setup.loss == LossKind::kCrossEntropy) {
      EXPECT_TRUE(at::equal(batch->query_accuracy[t], alone->query_accuracy[0]));
    }
    auto eval = (*learner)->Evaluate(theta, Slice(setup.tasks, t), 3);
    ASSERT_TRUE(eval.ok()) << eval.status();
    EXPECT_TRUE(at::equal(batch_eval->loss_before[t], eval->loss_before[0])) << "task " << t;
    EXPECT_TRUE(at::equal(batch_eval->loss_after[t], eval->loss_after[0])) << "task " << t;
  }
  // The tasks differ, so a result that ignored the task would not pass for free.
  EXPECT_FALSE(at::equal(batch->per_task[0][0], batch->per_task[0][1]));
}

class BatchIndependenceTest : public ::testing::TestWithParam<Net> {};

TEST_P(BatchIndependenceTest, PerTaskResultsAreBitIdenticalToTasksAlone) {
  for (const char* algorithm : {"maml", "fomaml", "meta_sgd", "anil", "reptile", "meta_lstm",
                                "maml+recompute", "meta_sgd+recompute", "anil+recompute"}) {
    ExpectBitIdentical(GetParam(), algorithm);
  }
}

// Workers may run with different --threads; the bits must not care. Each task runs on one
// intra-op thread (NOTE [One intra-op thread per task], runtime.h) and a worker's threads
// compute different task groups, concurrently. Meta-LSTM runs its own elementwise kernels
// (meta_lstm_learner.h), so it is checked too.
TEST_P(BatchIndependenceTest, ResultsDoNotDependOnThreadsComputingGroups) {
  at::set_num_threads(1);  // what ConfigureRuntime does in every binary
  for (const char* algorithm : {"maml", "fomaml", "meta_lstm"}) {
    SCOPED_TRACE(algorithm);
    Fixture setup = MakeFixture(GetParam());
    auto learner = MakeMetaLearner(Spec(algorithm), setup.model, setup.loss);
    ASSERT_TRUE(learner.ok()) << learner.status();
    Rng rng(98);
    TensorList theta = (*learner)->InitialMetaParams(rng, at::kFloat);
    auto one = ComputeMetaGradientsInGroups(**learner, theta, setup.tasks, 0, /*threads=*/1);
    ASSERT_TRUE(one.ok()) << one.status();
    for (int threads : {2, 4}) {
      auto many = ComputeMetaGradientsInGroups(**learner, theta, setup.tasks, 0, threads);
      ASSERT_TRUE(many.ok()) << many.status();
      for (size_t i = 0; i < theta.size(); ++i) {
        EXPECT_TRUE(at::equal(one->per_task[i], many->per_task[i]))
            << threads << " threads: " << (*learner)->meta_param_specs()[i].name;
      }
      EXPECT_TRUE(at::equal(one->query_loss, many->query_loss)) << threads << " threads";
    }
  }
}

// The memory knob (common/meta/task_groups.h): computed in groups of 1 or of 3 (+ 1), the
// batch's meta-gradients and losses are its bits computed at once.
TEST_P(BatchIndependenceTest, TaskGroupsGiveTheWholeBatchsBits) {
  for (const char* algorithm : {"maml", "fomaml", "reptile", "meta_lstm"}) {
    SCOPED_TRACE(algorithm);
    Fixture setup = MakeFixture(GetParam());
    auto learner = MakeMetaLearner(Spec(algorithm), setup.model, setup.loss);
    ASSERT_TRUE(learner.ok()) << learner.status();
    Rng rng(97);
    TensorList theta = (*learner)->InitialMetaParams(rng, at::kFloat);
    auto whole = ComputeMetaGradientsInGroups(**learner, theta, setup.tasks, 0);
    ASSERT_TRUE(whole.ok()) << whole.status();
    for (int64_t group : {1, 3}) {
      auto grouped = ComputeMetaGradientsInGroups(**learner, theta, setup.tasks, group);
      ASSERT_TRUE(grouped.ok()) << grouped.status();
      ASSERT_EQ(grouped->per_task.size(), whole->per_task.size());
      for (size_t i = 0; i < theta.size(); ++i) {
        EXPECT_TRUE(at::equal(grouped->per_task[i], whole->per_task[i]))
            << "group " << group << ": " << (*learner)->meta_param_specs()[i].name;
      }
      EXPECT_TRUE(at::equal(grouped->query_loss, whole->query_loss)) << "group " << group;
      if (setup.loss == LossKind::kCrossEntropy) {
        EXPECT_TRUE(at::equal(grouped->query_accuracy, whole->query_accuracy));
      }
    }
  }
}

std::string NetName(const ::testing::TestParamInfo<Net>& info) {
  const char* names[] = {"SinusoidMlp", "BatchNormMlp", "ConvNet"};
  return names[static_cast<int>(info.param)];
}

// One case per model, not per algorithm: LibTorch's start-up dominates these tests' time.
INSTANTIATE_TEST_SUITE_P(AllModels, BatchIndependenceTest,
                         ::testing::Values(Net::kSinusoidMlp, Net::kBatchNormMlp, Net::kConvNet),
                         NetName);

}  // namespace
}  // namespace metatrain::meta
