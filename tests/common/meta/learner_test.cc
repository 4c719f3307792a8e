// Correctness of the meta-gradients against independent computations: central finite
// differences of the post-adaptation query loss (second-order MAML, Meta-SGD, ANIL), the
// first-order formula (FOMAML), an explicit SGD loop (Reptile); plus evaluation and the
// errors users see.

#include "common/meta/learner.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/meta/algorithm_catalog.h"
#include "common/meta/maml_learner.h"
#include "common/meta/model.h"
#include "tests/common/meta/meta_test_util.h"

namespace metatrain::meta {
namespace {

using testing::ClassificationBatch;
using testing::ConvSpec;
using ::testing::HasSubstr;
using testing::LearnerSpec;
using testing::MlpSpec;
using testing::RegressionBatch;
using testing::SharedModel;
using testing::Slice;

std::unique_ptr<MetaLearner> Learner(const std::string& algorithm,
                                     std::shared_ptr<const Model> model, LossKind loss, int steps,
                                     double lr) {
  return testing::LearnerFor(LearnerSpec(algorithm, steps, lr), std::move(model), loss);
}

// --- An independent reference: one task, written out with plain autograd. ---

at::Tensor TaskLoss(LossKind loss, const at::Tensor& out, const at::Tensor& y) {
  // out [1, n, O]; y [1, n, O] or [1, n].
  if (loss == LossKind::kMse) return at::mse_loss(out, y);
  return at::cross_entropy_loss(out[0], y[0]);
}

struct Reference {
  const Model* model;
  LossKind loss;
  double lr;
  int steps;
  bool head_only = false;

  // The model parameters after `steps` SGD steps (rates: lr, or per-element `alphas`) on
  // task (x, y) from theta (no task dimension). Detached.
  TensorList Adapt(const TensorList& theta, const TensorList& alphas, const at::Tensor& x,
                   const at::Tensor& y, int num_steps) const {
    TensorList phi;
    for (const auto& p : theta) phi.push_back(p.detach().unsqueeze(0));
    for (int s = 0; s < num_steps; ++s) {
      std::vector<at::Tensor> inputs;
      std::vector<size_t> which;
      for (size_t i = 0; i < phi.size(); ++i) {
        phi[i] = phi[i].detach();
        if (head_only && !model->param_specs()[i].head) continue;
        phi[i].requires_grad_(true);
        inputs.push_back(phi[i]);
        which.push_back(i);
      }
      at::Tensor l = TaskLoss(loss, model->Forward(phi, x), y);
      auto g = torch::autograd::grad({l}, inputs);
      for (size_t k = 0; k < which.size(); ++k) {
        const size_t i = which[k];
        phi[i] = (alphas.empty() ? phi[i] - lr * g[k] : phi[i] - alphas[i] * g[k]).detach();
      }
    }
    for (auto& p : phi) p = p.detach().squeeze(0);
    return phi;
  }

  double QueryLoss(const TensorList& theta, const TensorList& alphas, const TaskBatch& task) const {
    TensorList phi = Adapt(theta, alphas, task.support_x, task.support_y, steps);
    for (auto& p : phi) p = p.unsqueeze(0);
    at::NoGradGuard no_grad;
    return TaskLoss(loss, model->Forward(phi, task.query_x), task.query_y).item<double>();
  }
};

// Central differences of f wrt every element of params[which].
at::Tensor FiniteDifference(const std::function<double(const TensorList&)>& f,
                            const TensorList& params, size_t which, double h) {
  at::Tensor grad = at::zeros_like(params[which]);
  const int64_t n = params[which].numel();
  for (int64_t j = 0; j < n; ++j) {
    TensorList plus = params, minus = params;
    plus[which] = params[which].clone();
    minus[which] = params[which].clone();
    plus[which].data_ptr<double>()[j] += h;
    minus[which].data_ptr<double>()[j] -= h;
    grad.data_ptr<double>()[j] = (f(plus) - f(minus)) / (2 * h);
  }
  return grad;
}

// |a - b| <= 1e-6 * |b| + 1e-9 elementwise (finite differences in float64 with h = 1e-6
// are good to ~1e-9 here), reporting the worst element.
void ExpectGradientsMatch(const at::Tensor& autograd, const at::Tensor& fd,
                          const std::string& what) {
  at::Tensor excess = (autograd - fd).abs() - (1e-6 * fd.abs() + 1e-9);
  EXPECT_LE(excess.max().item<double>(), 0.0)
      << what << ": max |autograd - fd| = " << (autograd - fd).abs().max().item<double>()
      << ", max |fd| = " << fd.abs().max().item<double>();
}

// Meta-gradients of `algorithm` for every task equal finite differences of the
// reference post-adaptation query loss; Meta-SGD's rates included.
void CheckAgainstFiniteDifferences(const std::string& algorithm, std::shared_ptr<const Model> model,
                                   LossKind loss, const TaskBatch& tasks, int steps, double lr) {
  auto learner = Learner(algorithm, model, loss, steps, lr);
  Rng rng(11);
  TensorList meta = learner->InitialMetaParams(rng, at::kDouble);
  const size_t num_model = model->param_specs().size();
  if (algorithm == "meta_sgd") {
    // Distinct per-element rates, so a gradient wrt the wrong element would show.
    for (size_t i = num_model; i < meta.size(); ++i) {
      meta[i] = meta[i] *
                (1 + 0.5 * testing::RandomNormal(rng, meta[i].sizes().vec(), at::kDouble).tanh());
    }
  }
  auto grads = learner->ComputeMetaGradients(meta, tasks);
  ASSERT_TRUE(grads.ok()) << grads.status();
  ASSERT_EQ(grads->per_task.size(), meta.size());

  Reference ref{model.get(), loss, lr, steps, algorithm == "anil"};
  for (int64_t t = 0; t < tasks.size(); ++t) {
    const TaskBatch task = Slice(tasks, t);
    auto f = [&](const TensorList& all) {
      TensorList theta(all.begin(), all.begin() + num_model);
      TensorList alphas(all.begin() + num_model, all.end());
      return ref.QueryLoss(theta, alphas, task);
    };
    // The learner's own query loss is the reference's.
    EXPECT_NEAR(grads->query_loss[t].item<double>(), f(meta), 1e-12);
    for (size_t i = 0; i < meta.size(); ++i) {
      at::Tensor fd = FiniteDifference(f, meta, i, 1e-6);
      ExpectGradientsMatch(
          grads->per_task[i][t], fd,
          algorithm + " task " + std::to_string(t) + " " + learner->meta_param_specs()[i].name);
    }
  }
}

TaskBatch TinyRegression(int64_t tasks) {
  return RegressionBatch(/*seed=*/5, tasks, /*support=*/5, /*query=*/6, {1}, 1, at::kDouble);
}

TEST(MamlGradientTest, SecondOrderMatchesFiniteDifferencesOneStep) {
  CheckAgainstFiniteDifferences("maml", SharedModel(MlpSpec({4, 4}, false), {1}, 1), LossKind::kMse,
                                TinyRegression(2), /*steps=*/1, /*lr=*/0.3);
}

TEST(MamlGradientTest, SecondOrderMatchesFiniteDifferencesThreeSteps) {
  CheckAgainstFiniteDifferences("maml", SharedModel(MlpSpec({4, 4}, false), {1}, 1), LossKind::kMse,
                                TinyRegression(2), /*steps=*/3, /*lr=*/0.2);
}

TEST(MamlGradientTest, ClassificationMlpWithBatchNormMatchesFiniteDifferences) {
  TaskBatch tasks = ClassificationBatch(6, 2, 6, 6, {2}, 3, at::kDouble);
  CheckAgainstFiniteDifferences("maml", SharedModel(MlpSpec({3, 2}, true), {2}, 3),
                                LossKind::kCrossEntropy, tasks, /*steps=*/2, /*lr=*/0.5);
}

TEST(MamlGradientTest, ConvNetWithBatchNormMatchesFiniteDifferences) {
  TaskBatch tasks = ClassificationBatch(7, 2, 4, 4, {1, 16, 16}, 3, at::kDouble);
  CheckAgainstFiniteDifferences("maml", SharedModel(ConvSpec(2), {1, 16, 16}, 3),
                                LossKind::kCrossEntropy, tasks, /*steps=*/1, /*lr=*/0.5);
}

TEST(MetaSgdGradientTest, ParametersAndRatesMatchFiniteDifferences) {
  CheckAgainstFiniteDifferences("meta_sgd", SharedModel(MlpSpec({4, 4}, false), {1}, 1),
                                LossKind::kMse, TinyRegression(2), /*steps=*/1, /*lr=*/0.3);
  CheckAgainstFiniteDifferences("meta_sgd", SharedModel(MlpSpec({3}, false), {2}, 2),
                                LossKind::kMse, RegressionBatch(8, 2, 4, 5, {2}, 2, at::kDouble),
                                /*steps=*/3, /*lr=*/0.2);
}

TEST(AnilGradientTest, MatchesFiniteDifferencesOfHeadOnlyAdaptation) {
  CheckAgainstFiniteDifferences("anil", SharedModel(MlpSpec({4, 4}, false), {1}, 1), LossKind::kMse,
                                TinyRegression(2), /*steps=*/2, /*lr=*/0.3);
}

TEST(MetaSgdTest, RatesAreMetaParametersStartingAtInnerLr) {
  auto model = SharedModel(MlpSpec({4}, false), {1}, 1);
  auto learner = Learner("meta_sgd", model, LossKind::kMse, 1, 0.25);
  const auto& specs = learner->meta_param_specs();
  ASSERT_EQ(specs.size(), 8u);
  EXPECT_EQ(specs[4].name, "lr.layers.0.weight");
  EXPECT_EQ(specs[7].name, "lr.layers.2.bias");
  EXPECT_EQ(specs[7].shape, model->param_specs()[3].shape);
  Rng rng(1);
  TensorList meta = learner->InitialMetaParams(rng, at::kFloat);
  EXPECT_TRUE(at::equal(meta[5], at::full({4}, 0.25, at::kFloat)));
}

TEST(FomamlTest, EqualsQueryGradientAtAdaptedParametersAndDiffersFromMaml) {
  auto model = SharedModel(MlpSpec({4, 4}, false), {1}, 1);
  TaskBatch tasks = TinyRegression(2);
  const int steps = 2;
  const double lr = 0.3;
  auto fomaml = Learner("fomaml", model, LossKind::kMse, steps, lr);
  auto maml = Learner("maml", model, LossKind::kMse, steps, lr);
  Rng rng(3);
  TensorList theta = fomaml->InitialMetaParams(rng, at::kDouble);
  auto first = fomaml->ComputeMetaGradients(theta, tasks);
  auto second = maml->ComputeMetaGradients(theta, tasks);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();

  Reference ref{model.get(), LossKind::kMse, lr, steps};
  for (int64_t t = 0; t < 2; ++t) {
    TaskBatch task = Slice(tasks, t);
    TensorList phi = ref.Adapt(theta, {}, task.support_x, task.support_y, steps);
    TensorList leaves;
    for (auto& p : phi) leaves.push_back(p.unsqueeze(0).requires_grad_(true));
    at::Tensor l = TaskLoss(LossKind::kMse, model->Forward(leaves, task.query_x), task.query_y);
    auto expected = torch::autograd::grad({l}, leaves);
    double second_order_term = 0;
    for (size_t i = 0; i < theta.size(); ++i) {
      EXPECT_TRUE(at::allclose(first->per_task[i][t], expected[i][0], 1e-12, 1e-14))
          << model->param_specs()[i].name;
      second_order_term =
          std::max(second_order_term,
                   (first->per_task[i][t] - second->per_task[i][t]).abs().max().item<double>());
    }
    EXPECT_GT(second_order_term, 1e-4) << "task " << t;
    // Both report the same post-adaptation query loss.
    EXPECT_NEAR(first->query_loss[t].item<double>(), second->query_loss[t].item<double>(), 1e-12);
  }
}

TEST(ReptileTest, DirectionIsThetaMinusPhiOfSgdOnSupportAndQuery) {
  auto model = SharedModel(MlpSpec({5}, false), {2}, 1);
  TaskBatch tasks = RegressionBatch(9, 3, 4, 6, {2}, 1, at::kDouble);
  const int steps = 4;
  const double lr = 0.1;
  auto reptile = Learner("reptile", model, LossKind::kMse, steps, lr);
  Rng rng(4);
  TensorList theta = reptile->InitialMetaParams(rng, at::kDouble);
  auto grads = reptile->ComputeMetaGradients(theta, tasks);
  ASSERT_TRUE(grads.ok()) << grads.status();
  Reference ref{model.get(), LossKind::kMse, lr, steps};
  for (int64_t t = 0; t < 3; ++t) {
    TaskBatch task = Slice(tasks, t);
    at::Tensor x = at::cat({task.support_x, task.query_x}, 1);
    at::Tensor y = at::cat({task.support_y, task.query_y}, 1);
    TensorList phi = ref.Adapt(theta, {}, x, y, steps);
    for (size_t i = 0; i < theta.size(); ++i) {
      at::Tensor expected = theta[i] - phi[i];
      EXPECT_TRUE(at::allclose(grads->per_task[i][t], expected, 1e-12, 1e-14))
          << model->param_specs()[i].name;
      EXPECT_GT(expected.abs().max().item<double>(), 1e-3);
    }
  }
}

TEST(AnilTest, InnerLoopLeavesBodyUnadapted) {
  auto model = SharedModel(MlpSpec({6, 5}, true), {3}, 2);
  TaskBatch tasks = ClassificationBatch(10, 3, 4, 4, {3}, 2, at::kFloat);
  auto learner = MakeMetaLearner(LearnerSpec("anil", 3, 0.5), model, LossKind::kCrossEntropy);
  ASSERT_TRUE(learner.ok()) << learner.status();
  auto* anil = dynamic_cast<MamlLearner*>(learner->get());
  ASSERT_NE(anil, nullptr);
  Rng rng(5);
  TensorList theta = anil->InitialMetaParams(rng, at::kFloat);
  auto adapted = anil->AdaptedParams(theta, tasks, 3);
  ASSERT_TRUE(adapted.ok()) << adapted.status();
  for (size_t i = 0; i < theta.size(); ++i) {
    const bool head = model->param_specs()[i].head;
    for (int64_t t = 0; t < 3; ++t) {
      EXPECT_EQ(at::equal((*adapted)[i][t], theta[i]), !head)
          << model->param_specs()[i].name << " task " << t;
    }
  }
}

TEST(EvaluateTest, ReportsQueryMetricsBeforeAndAfterAdaptation) {
  auto model = SharedModel(MlpSpec({8}, false), {2}, 3);
  TaskBatch tasks = ClassificationBatch(12, 3, 9, 9, {2}, 3, at::kDouble);
  tasks.query_x = tasks.support_x;  // so that adaptation must help on the query set
  tasks.query_y = tasks.support_y;
  for (const std::string algorithm : {"maml", "fomaml", "meta_sgd", "anil", "reptile"}) {
    auto learner = Learner(algorithm, model, LossKind::kCrossEntropy, 1, 0.5);
    Rng rng(6);
    TensorList theta = learner->InitialMetaParams(rng, at::kDouble);
    auto result = learner->Evaluate(theta, tasks, 5);
    ASSERT_TRUE(result.ok()) << result.status();
    Reference ref{model.get(), LossKind::kCrossEntropy, 0.5, 5, algorithm == "anil"};
    for (int64_t t = 0; t < 3; ++t) {
      TaskBatch task = Slice(tasks, t);
      TensorList model_theta(theta.begin(), theta.begin() + model->param_specs().size());
      TensorList alphas(theta.begin() + model_theta.size(), theta.end());
      EXPECT_NEAR(result->loss_after[t].item<double>(), ref.QueryLoss(model_theta, alphas, task),
                  1e-12)
          << algorithm;
      Reference before = ref;
      before.steps = 0;
      EXPECT_NEAR(result->loss_before[t].item<double>(), before.QueryLoss(model_theta, {}, task),
                  1e-12);
      EXPECT_LT(result->loss_after[t].item<double>(), result->loss_before[t].item<double>());
      const double acc = result->accuracy_after[t].item<double>();
      EXPECT_GE(acc, 0.0);
      EXPECT_LE(acc, 1.0);
      EXPECT_EQ(acc * 9, std::round(acc * 9));
    }
    for (const at::Tensor& x : {result->loss_before, result->loss_after, result->accuracy_before,
                                result->accuracy_after}) {
      EXPECT_FALSE(x.requires_grad());
    }
  }
}

TEST(EvaluateTest, RegressionHasNoAccuracyAndZeroStepsChangeNothing) {
  auto model = SharedModel(MlpSpec({8}, false), {1}, 1);
  auto learner = Learner("maml", model, LossKind::kMse, 1, 0.01);
  Rng rng(6);
  TensorList theta = learner->InitialMetaParams(rng, at::kFloat);
  auto result = learner->Evaluate(theta, RegressionBatch(1, 2, 5, 5, {1}, 1, at::kFloat), 0);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(result->accuracy_before.defined());
  EXPECT_TRUE(at::equal(result->loss_before, result->loss_after));
}

TEST(MetaGradientsTest, AreDetachedAndShapedPerTask) {
  auto model = SharedModel(ConvSpec(2), {1, 16, 16}, 3);
  TaskBatch tasks = ClassificationBatch(13, 3, 3, 3, {1, 16, 16}, 3, at::kFloat);
  for (const std::string algorithm : {"maml", "fomaml", "meta_sgd", "anil", "reptile"}) {
    auto learner = Learner(algorithm, model, LossKind::kCrossEntropy, 2, 0.4);
    Rng rng(1);
    TensorList theta = learner->InitialMetaParams(rng, at::kFloat);
    auto grads = learner->ComputeMetaGradients(theta, tasks);
    ASSERT_TRUE(grads.ok()) << algorithm << ": " << grads.status();
    ASSERT_EQ(grads->per_task.size(), theta.size());
    for (size_t i = 0; i < theta.size(); ++i) {
      std::vector<int64_t> shape = {3};
      const auto& s = learner->meta_param_specs()[i].shape;
      shape.insert(shape.end(), s.begin(), s.end());
      EXPECT_EQ(grads->per_task[i].sizes(), at::IntArrayRef(shape));
      EXPECT_FALSE(grads->per_task[i].requires_grad());
      EXPECT_EQ(grads->per_task[i].scalar_type(), at::kFloat);
      EXPECT_TRUE(grads->per_task[i].isfinite().all().item<bool>());
    }
    EXPECT_EQ(grads->query_loss.sizes(), (at::IntArrayRef{3}));
    EXPECT_EQ(grads->query_accuracy.sizes(), (at::IntArrayRef{3}));
    EXPECT_FALSE(grads->query_loss.requires_grad());
  }
}

// --- Bad input: a clear status, never a crash. ---

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = SharedModel(MlpSpec({4}, false), {1}, 1);
    learner_ = Learner("maml", model_, LossKind::kMse, 1, 0.1);
    Rng rng(1);
    theta_ = learner_->InitialMetaParams(rng, at::kFloat);
    good_ = RegressionBatch(1, 2, 5, 4, {1}, 1, at::kFloat);
  }
  std::string Error(const TaskBatch& tasks) {
    auto grads = learner_->ComputeMetaGradients(theta_, tasks);
    EXPECT_EQ(grads.status().code(), absl::StatusCode::kInvalidArgument) << grads.status();
    auto eval = learner_->Evaluate(theta_, tasks, 1);
    EXPECT_EQ(eval.status().code(), absl::StatusCode::kInvalidArgument) << eval.status();
    return std::string(grads.status().message());
  }
  std::shared_ptr<const Model> model_;
  std::unique_ptr<MetaLearner> learner_;
  TensorList theta_;
  TaskBatch good_;
};

TEST_F(BadInputTest, GoodBatchWorks) {
  EXPECT_TRUE(learner_->ComputeMetaGradients(theta_, good_).ok());
}

TEST_F(BadInputTest, WrongInputShapeNamesTheTensor) {
  TaskBatch b = good_;
  b.support_x = at::zeros({2, 5, 2});
  EXPECT_THAT(Error(b), HasSubstr("support_x: expected [T, n, 1], got [2, 5, 2]"));
  b = good_;
  b.query_x = at::zeros({2, 4});
  EXPECT_THAT(Error(b), HasSubstr("query_x: expected [T, n, 1], got [2, 4]"));
  b = good_;
  b.query_x = at::zeros({3, 4, 1});
  b.query_y = at::zeros({3, 4, 1});
  EXPECT_THAT(Error(b), HasSubstr("query_x: 3 tasks but support_x has 2"));
}

TEST_F(BadInputTest, WrongTargetShapeNamesTheTensor) {
  TaskBatch b = good_;
  b.support_y = at::zeros({2, 5, 3});
  EXPECT_THAT(Error(b),
              HasSubstr("support_y: expected [T, n, 1] with T = 2, n = 5, got [2, 5, 3]"));
  b = good_;
  b.query_y = at::zeros({2, 3, 1});
  EXPECT_THAT(Error(b), HasSubstr("query_y: expected [T, n, 1]"));
  b = good_;
  b.support_y = at::Tensor();
  EXPECT_THAT(Error(b), HasSubstr("support_y: missing"));
}

TEST_F(BadInputTest, WrongDtypeIsRejected) {
  TaskBatch b = good_;
  b.support_x = b.support_x.to(at::kDouble);
  EXPECT_THAT(Error(b), HasSubstr("support_x: dtype Double does not match the parameters' Float"));
}

TEST_F(BadInputTest, WrongMetaParamsNameTheParameter) {
  TensorList wrong = theta_;
  wrong[2] = at::zeros({1, 5});
  auto s = learner_->ComputeMetaGradients(wrong, good_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("meta_params[2] (layers.2.weight): expected [1, 4], got [1, 5]"));
  wrong = theta_;
  wrong.pop_back();
  s = learner_->Evaluate(wrong, good_, 1).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("meta_params: expected 4 tensors, got 3"));
  s = learner_->Evaluate(theta_, good_, -1).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("steps must be >= 0"));
}

TEST(BadClassificationInputTest, LabelsOutOfRangeOrNotIntegers) {
  auto model = SharedModel(MlpSpec({4}, false), {2}, 3);
  auto learner = Learner("fomaml", model, LossKind::kCrossEntropy, 1, 0.1);
  Rng rng(1);
  TensorList theta = learner->InitialMetaParams(rng, at::kFloat);
  TaskBatch b = ClassificationBatch(1, 2, 3, 3, {2}, 3, at::kFloat);
  b.support_y[1][2].fill_(3);
  auto s = learner->ComputeMetaGradients(theta, b).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("support_y: labels must be in [0, 3) (got 3)"));
  b = ClassificationBatch(1, 2, 3, 3, {2}, 3, at::kFloat);
  b.query_y = b.query_y.to(at::kFloat);
  s = learner->ComputeMetaGradients(theta, b).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("query_y: labels must be int64"));
}

TEST(MakeMetaLearnerTest, RejectsUnknownAlgorithmAndBadInnerLoop) {
  auto model = SharedModel(MlpSpec({4}, false), {1}, 1);
  auto s = MakeMetaLearner(LearnerSpec("mamal", 1, 0.1), model, LossKind::kMse).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "algorithm: unknown 'mamal' (expected one of " + AlgorithmNames() + ")");
  s = MakeMetaLearner(LearnerSpec("maml", -1, 0.1), model, LossKind::kMse).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("inner.steps must be >= 0 (got -1)"));
  s = MakeMetaLearner(LearnerSpec("maml", 1, 0), model, LossKind::kMse).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("inner.lr must be"));
  s = MakeMetaLearner(LearnerSpec("maml", 1, 0.1), nullptr, LossKind::kMse).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  for (const std::string algorithm : {"maml", "fomaml", "reptile", "meta_sgd", "anil"}) {
    EXPECT_TRUE(MakeMetaLearner(LearnerSpec(algorithm, 1, 0.1), model, LossKind::kMse).ok())
        << algorithm;
  }
}

}  // namespace
}  // namespace metatrain::meta
