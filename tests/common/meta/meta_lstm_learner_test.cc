// The Meta-LSTM meta-learner: its preprocessing and gate arithmetic against hand-written
// formulas, its meta-gradients against central finite differences (float64), and its
// initialisation and errors.

#include "common/meta/meta_lstm_learner.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "common/meta/inner_loop.h"
#include "common/meta/model.h"
#include "tests/common/meta/meta_test_util.h"

namespace metatrain::meta {
namespace {

using testing::ClassificationBatch;
using ::testing::HasSubstr;
using testing::MlpSpec;
using testing::RegressionBatch;
using testing::Slice;

std::shared_ptr<const Model> Make(const v1::ModelSpec& spec, std::vector<int64_t> input,
                                  int64_t out) {
  auto model = MakeModel(spec, std::move(input), out);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::shared_ptr<const Model>(std::move(model).value());
}

v1::JobSpec MetaLstmSpec(int steps, int hidden) {
  v1::JobSpec spec = testing::LearnerSpec("meta_lstm", steps, 0.1);
  spec.mutable_meta_lstm()->set_hidden_size(hidden);
  spec.mutable_meta_lstm()->set_preprocess_p(10);
  return spec;
}

std::unique_ptr<MetaLearner> Learner(const v1::JobSpec& spec, std::shared_ptr<const Model> model,
                                     LossKind loss) {
  auto learner = MakeMetaLearner(spec, std::move(model), loss);
  EXPECT_TRUE(learner.ok()) << learner.status();
  return std::move(learner).value();
}

// ---- Preprocessing ----

TEST(MetaLstmPreprocessTest, MatchesTheFormulaAtAndAroundTheThreshold) {
  const double p = 10;
  const double e = std::exp(-p);  // 4.54e-5
  const std::vector<double> xs = {0.0,
                                  e,
                                  -e,
                                  e * (1 + 1e-9),
                                  e * (1 - 1e-9),
                                  -e * (1 + 1e-9),
                                  -e * (1 - 1e-9),
                                  1e-6,
                                  -3e-7,
                                  1e-3,
                                  -2.5,
                                  1.0,
                                  1e3};
  at::Tensor x = at::tensor(xs, at::kDouble);
  at::Tensor out = internal::PreprocessMetaLstmInput(x, p);
  ASSERT_EQ(out.sizes(), at::IntArrayRef({static_cast<int64_t>(xs.size()), 2}));
  for (size_t k = 0; k < xs.size(); ++k) {
    SCOPED_TRACE(xs[k]);
    const double v = xs[k];
    double first, second;
    if (std::fabs(v) >= e) {
      first = std::log(std::fabs(v)) / p;
      second = v > 0 ? 1 : -1;
    } else {
      first = -1;
      second = std::exp(p) * v;
    }
    EXPECT_EQ(out[k][0].item<double>(), first);
    EXPECT_EQ(out[k][1].item<double>(), second);
  }
  // Values a user can check by eye: the branches meet at the threshold (-1, +-1), 0 maps to
  // (-1, 0), 1 to (0, 1), and below the threshold the second value is linear in x.
  EXPECT_NEAR(out[1][0].item<double>(), -1, 1e-15);
  EXPECT_EQ(out[1][1].item<double>(), 1);
  EXPECT_EQ(out[2][1].item<double>(), -1);
  EXPECT_NEAR(out[4][0].item<double>(), -1, 0);
  EXPECT_NEAR(out[4][1].item<double>(), 1, 1e-8);
  EXPECT_EQ(out[0][0].item<double>(), -1);
  EXPECT_EQ(out[0][1].item<double>(), 0);
  EXPECT_EQ(out[11][0].item<double>(), 0);
  EXPECT_EQ(out[11][1].item<double>(), 1);
  EXPECT_NEAR(out[7][1].item<double>(), 1e-6 * std::exp(10.0), 1e-12);
  EXPECT_NEAR(out[12][0].item<double>(), std::log(1e3) / 10, 1e-15);
  // p moves the threshold (e^-5 = 6.7e-3) and the scale.
  at::Tensor p5 = internal::PreprocessMetaLstmInput(at::tensor({1e-2, 1e-3}, at::kDouble), 5);
  EXPECT_NEAR(p5[0][0].item<double>(), std::log(1e-2) / 5, 1e-15);
  EXPECT_EQ(p5[1][0].item<double>(), -1);
  EXPECT_NEAR(p5[1][1].item<double>(), 1e-3 * std::exp(5.0), 1e-15);
}

TEST(MetaLstmPreprocessTest, PositionIndependentSigmoidAndTanhMatchTheFunctions) {
  at::Tensor x = at::linspace(-30, 30, 1001, at::kDouble);
  EXPECT_TRUE(at::allclose(internal::PositionIndependentSigmoid(x), at::sigmoid(x), 0, 1e-15));
  EXPECT_TRUE(at::allclose(internal::PositionIndependentTanh(x), at::tanh(x), 0, 1e-15));
  // Derivatives.
  at::Tensor leaf = x.clone().requires_grad_(true);
  auto g = torch::autograd::grad({internal::PositionIndependentSigmoid(leaf).sum()}, {leaf});
  at::Tensor s = at::sigmoid(x);
  EXPECT_TRUE(at::allclose(g[0], s * (1 - s), 0, 1e-15));
  g = torch::autograd::grad({internal::PositionIndependentTanh(leaf).sum()}, {leaf});
  EXPECT_TRUE(at::allclose(g[0], 1 - at::tanh(x).pow(2), 0, 1e-15));
}

// ---- Gate arithmetic ----

double Sigmoid(double v) { return 1 / (1 + std::exp(-v)); }

internal::MetaLstmWeights ZeroWeights(int64_t hidden, double bf, double bi) {
  auto o = at::TensorOptions().dtype(at::kDouble);
  return {at::zeros({1, 4 * hidden, 4}, o), at::zeros({1, 4 * hidden, hidden}, o),
          at::zeros({1, 4 * hidden}, o),    at::zeros({1, 4 * hidden}, o),
          at::zeros({1, hidden + 2, 1}, o), at::zeros({1, hidden + 2, 1}, o),
          at::full({1, 1, 1}, bf, o),       at::full({1, 1, 1}, bi, o)};
}

// With zero weights the gates are their biases: forget sigmoid(0) = 1/2, input
// sigmoid(log(1/3)) = 1/4, so c_1 = c_0 / 2 - g / 4, by hand:
// [2, -1] / 2 - [0.4, -0.8] / 4 = [0.9, -0.3].
TEST(MetaLstmStepTest, GatesAreTheBiasesWhenWeightsAreZero) {
  internal::MetaLstmState state;
  at::Tensor theta = at::tensor({2.0, -1.0}, at::kDouble).reshape({1, 2});
  at::Tensor grad = at::tensor({0.4, -0.8}, at::kDouble).reshape({1, 2});
  at::Tensor loss = at::tensor({0.7}, at::kDouble);
  at::Tensor next =
      internal::MetaLstmStep(ZeroWeights(3, 0.0, std::log(1.0 / 3)), 10, theta, grad, loss, &state);
  EXPECT_NEAR(next[0][0].item<double>(), 0.9, 1e-15);
  EXPECT_NEAR(next[0][1].item<double>(), -0.3, 1e-15);
}

// Every weight non-zero, two steps (so the carried state counts), against a scalar
// transcription of the equations in docs/core-models.md.
TEST(MetaLstmStepTest, TwoStepsMatchAScalarTranscriptionOfTheEquations) {
  const int64_t hidden = 2, n = 2;
  const double p = 10;
  auto o = at::TensorOptions().dtype(at::kDouble);
  // Deterministic, distinct weights.
  auto fill = [&](std::vector<int64_t> shape, double scale, double offset) {
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    return (at::arange(count, o) * scale + offset).sin().reshape(shape);
  };
  internal::MetaLstmWeights w{
      fill({1, 4 * hidden, 4}, 0.7, 0.1), fill({1, 4 * hidden, hidden}, 1.3, 0.2),
      fill({1, 4 * hidden}, 0.9, 0.3),    fill({1, 4 * hidden}, 1.1, 0.4),
      fill({1, hidden + 2, 1}, 0.5, 0.5), fill({1, hidden + 2, 1}, 0.6, 0.6),
      at::full({1, 1, 1}, 1.5, o),        at::full({1, 1, 1}, -2.0, o)};
  auto at2 = [](const at::Tensor& t, std::vector<int64_t> i) {
    at::Tensor v = t;
    for (int64_t k : i) v = v[k];
    return v.item<double>();
  };
  auto pre = [&](double v, int k) {
    if (std::fabs(v) >= std::exp(-p))
      return k == 0 ? std::log(std::fabs(v)) / p : (v > 0 ? 1.0 : -1.0);
    return k == 0 ? -1.0 : std::exp(p) * v;
  };
  const std::vector<std::vector<double>> grads = {{0.3, -2e-6}, {-0.05, 1.7}};
  const std::vector<double> losses = {1.2, 0.4};
  std::vector<double> theta = {0.5, -1.5};
  // Scalar state per coordinate.
  std::vector<std::vector<double>> h(n, std::vector<double>(hidden, 0)), c = h;
  std::vector<double> f_pre(n, 0), i_pre(n, 0);

  internal::MetaLstmState state;
  at::Tensor theta_t = at::tensor(theta, o).reshape({1, n});
  for (int step = 0; step < 2; ++step) {
    at::Tensor g_t = at::tensor(grads[step], o).reshape({1, n});
    theta_t = internal::MetaLstmStep(w, p, theta_t, g_t, at::tensor({losses[step]}, o), &state);
    std::vector<double> next(n);
    for (int64_t j = 0; j < n; ++j) {
      const double g = grads[step][j], l = losses[step];
      const double x[4] = {pre(l, 0), pre(l, 1), pre(g, 0), pre(g, 1)};
      std::vector<double> gate(4 * hidden);
      for (int64_t r = 0; r < 4 * hidden; ++r) {
        double s = at2(w.bias_ih, {0, r}) + at2(w.bias_hh, {0, r});
        for (int k = 0; k < 4; ++k) s += at2(w.weight_ih, {0, r, k}) * x[k];
        for (int64_t k = 0; k < hidden; ++k) s += at2(w.weight_hh, {0, r, k}) * h[j][k];
        gate[r] = s;
      }
      std::vector<double> h_new(hidden);
      for (int64_t u = 0; u < hidden; ++u) {
        const double ig = Sigmoid(gate[u]), fg = Sigmoid(gate[hidden + u]),
                     cg = std::tanh(gate[2 * hidden + u]), og = Sigmoid(gate[3 * hidden + u]);
        c[j][u] = fg * c[j][u] + ig * cg;
        h_new[u] = og * std::tanh(c[j][u]);
      }
      h[j] = h_new;
      double f = at2(w.bf, {0, 0, 0}), i = at2(w.bi, {0, 0, 0});
      for (int64_t u = 0; u < hidden; ++u) {
        f += at2(w.wf, {0, u, 0}) * h[j][u];
        i += at2(w.wi, {0, u, 0}) * h[j][u];
      }
      f += at2(w.wf, {0, hidden, 0}) * theta[j] + at2(w.wf, {0, hidden + 1, 0}) * f_pre[j];
      i += at2(w.wi, {0, hidden, 0}) * theta[j] + at2(w.wi, {0, hidden + 1, 0}) * i_pre[j];
      f_pre[j] = f;
      i_pre[j] = i;
      next[j] = Sigmoid(f) * theta[j] - Sigmoid(i) * g;
    }
    theta = next;
    for (int64_t j = 0; j < n; ++j) {
      EXPECT_NEAR(theta_t[0][j].item<double>(), theta[j], 1e-14) << "step " << step << " j " << j;
    }
  }
}

// ---- Meta-gradients against finite differences ----

// NOTE [The finite-difference reference of Meta-LSTM]
// With the paper's simplification the learner's loss L_s and gradient g_s that feed the
// meta-learner at step s are constants, so the analytic meta-gradient is not the gradient
// of the true query loss Q(P) (which would also move g_s with P). It is the gradient of
//   Q~(P) = query loss after unrolling the meta-learner from P with L_s, g_s frozen at
//           their values in the unperturbed run,
// because the backward pass reaches P only through the cell state and the gates. So the
// reference records (L_s, g_s) once at the unperturbed P, then differentiates Q~ by central
// differences, replaying the recorded inputs. Q~(P) and Q(P) agree at the unperturbed P
// (checked below too), so the forward is the learner's as well. The reference is written
// with plain ATen ops (matmul, sigmoid, tanh), independently of the learner's code.
struct Reference {
  const Model* model;
  LossKind loss;
  int steps;
  int64_t hidden;
  double p;

  // `params` unreplicated, `task` one task. If `inputs` is empty it is filled with the
  // (loss, grad) of each step, else they are replayed.
  double QueryLoss(const TensorList& params, const TaskBatch& task,
                   std::vector<std::pair<at::Tensor, at::Tensor>>* inputs) const {
    const size_t m = model->param_specs().size();
    auto unflatten = [&](const at::Tensor& flat) {
      TensorList out;
      int64_t offset = 0;
      for (size_t i = 0; i < m; ++i) {
        const int64_t k = NumElements(model->param_specs()[i]);
        std::vector<int64_t> shape = {1};
        for (int64_t d : model->param_specs()[i].shape) shape.push_back(d);
        out.push_back(flat.narrow(0, offset, k).reshape(shape));
        offset += k;
      }
      return out;
    };
    TensorList flat;
    for (size_t i = 0; i < m; ++i) flat.push_back(params[i].reshape({-1}));
    at::Tensor theta = at::cat(flat);
    const int64_t n = theta.size(0);
    const at::Tensor &w_ih = params[m], &w_hh = params[m + 1], &b_ih = params[m + 2],
                     &b_hh = params[m + 3], &wf = params[m + 4], &wi = params[m + 5],
                     &bf = params[m + 6], &bi = params[m + 7];
    at::Tensor h = at::zeros({n, hidden}, theta.options()), c = h.clone();
    at::Tensor f_pre = at::zeros({n, 1}, theta.options()), i_pre = f_pre.clone();
    const bool record = inputs->empty();
    auto pre = [&](const at::Tensor& v) {
      at::Tensor big = v.abs() >= std::exp(-p);
      at::Tensor first = at::where(big, v.abs().log() / p, at::full_like(v, -1.0));
      at::Tensor second = at::where(big, v.sign(), v * std::exp(p));
      return at::stack({first, second}, -1);
    };
    for (int s = 0; s < steps; ++s) {
      if (record) {
        TensorList phi = unflatten(theta.detach());
        for (auto& t : phi) t = t.detach().requires_grad_(true);
        at::Tensor l =
            internal::PerTaskLoss(loss, model->Forward(phi, task.support_x), task.support_y)[0];
        auto g = torch::autograd::grad({l}, phi);
        TensorList gf;
        for (const auto& t : g) gf.push_back(t.reshape({-1}));
        inputs->push_back({l.detach(), at::cat(gf).detach()});
      }
      const at::Tensor& l = (*inputs)[s].first;
      const at::Tensor& g = (*inputs)[s].second;
      at::Tensor x = at::cat({pre(l.reshape({1})).expand({n, 2}), pre(g)}, 1);
      at::Tensor gates = x.matmul(w_ih.t()) + h.matmul(w_hh.t()) + b_ih + b_hh;
      auto q = gates.chunk(4, 1);
      c = at::sigmoid(q[1]) * c + at::sigmoid(q[0]) * at::tanh(q[2]);
      h = at::sigmoid(q[3]) * at::tanh(c);
      at::Tensor th = theta.reshape({n, 1});
      f_pre = at::cat({h, th, f_pre}, 1).matmul(wf) + bf;
      i_pre = at::cat({h, th, i_pre}, 1).matmul(wi) + bi;
      theta = (at::sigmoid(f_pre) * th - at::sigmoid(i_pre) * g.reshape({n, 1})).reshape({n});
    }
    at::Tensor out = model->Forward(unflatten(theta), task.query_x);
    return internal::PerTaskLoss(loss, out, task.query_y)[0].item<double>();
  }
};

void CheckAgainstFiniteDifferences(std::shared_ptr<const Model> model, LossKind loss,
                                   const TaskBatch& tasks, int steps, int64_t hidden,
                                   double input_bias) {
  v1::JobSpec spec = MetaLstmSpec(steps, hidden);
  // A larger input gate than the default so the updates move theta measurably and every
  // path of the meta-gradient carries weight.
  spec.mutable_meta_lstm()->set_input_bias_init(input_bias);
  auto learner = Learner(spec, model, loss);
  Rng rng(4);
  TensorList theta = learner->InitialMetaParams(rng, at::kDouble);
  // Larger meta-learner weights than the U(-0.01, 0.01) init, so their products matter.
  for (size_t i = model->param_specs().size(); i + 2 < theta.size(); ++i) theta[i] = theta[i] * 30;
  auto result = learner->ComputeMetaGradients(theta, tasks);
  ASSERT_TRUE(result.ok()) << result.status();
  const auto& specs = learner->meta_param_specs();
  Reference ref{model.get(), loss, steps, hidden, 10};
  const double eps = 1e-6;
  for (int64_t t = 0; t < tasks.size(); ++t) {
    const TaskBatch task = Slice(tasks, t);
    std::vector<std::pair<at::Tensor, at::Tensor>> inputs;
    const double q0 = ref.QueryLoss(theta, task, &inputs);
    EXPECT_NEAR(q0, result->query_loss[t].item<double>(), 1e-12) << "forward, task " << t;
    double max_error = 0, max_grad = 0;
    for (size_t i = 0; i < theta.size(); ++i) {
      at::Tensor flat = theta[i].reshape({-1});
      at::Tensor analytic = result->per_task[i][t].reshape({-1});
      for (int64_t k = 0; k < flat.numel(); ++k) {
        TensorList plus = theta, minus = theta;
        plus[i] = theta[i].clone();
        minus[i] = theta[i].clone();
        plus[i].view({-1})[k] += eps;
        minus[i].view({-1})[k] -= eps;
        const double fd =
            (ref.QueryLoss(plus, task, &inputs) - ref.QueryLoss(minus, task, &inputs)) / (2 * eps);
        const double a = analytic[k].item<double>();
        EXPECT_NEAR(a, fd, 1e-6 + 1e-5 * std::fabs(fd))
            << specs[i].name << "[" << k << "], task " << t;
        max_error = std::max(max_error, std::fabs(a - fd));
        max_grad = std::max(max_grad, std::fabs(fd));
      }
    }
    std::printf("task %ld: max |analytic - fd| %.3g, max |fd| %.3g\n", static_cast<long>(t),
                max_error, max_grad);
    // The check is not vacuous: the gradients are far from zero.
    EXPECT_GT(max_grad, 1e-2);
  }
  // The meta-learner's own parameters receive gradient (not only the initialisation).
  for (size_t i = model->param_specs().size(); i < theta.size(); ++i) {
    EXPECT_GT(result->per_task[i].abs().max().item<double>(), 0) << specs[i].name;
  }
}

TEST(MetaLstmGradientTest, RegressionMlpMatchesFiniteDifferences) {
  CheckAgainstFiniteDifferences(Make(MlpSpec({3}, false), {1}, 1), LossKind::kMse,
                                RegressionBatch(5, 2, 4, 3, {1}, 1, at::kDouble), 3, 2, -1.0);
}

TEST(MetaLstmGradientTest, BatchNormClassifierMatchesFiniteDifferences) {
  CheckAgainstFiniteDifferences(Make(MlpSpec({4}, true), {2}, 3), LossKind::kCrossEntropy,
                                ClassificationBatch(6, 2, 6, 4, {2}, 3, at::kDouble), 2, 3, -0.5);
}

// ---- Initialisation, evaluation, errors ----

TEST(MetaLstmLearnerTest, ParametersAreNamedAndInitialisedAsDocumented) {
  auto model = Make(MlpSpec({5}, false), {1}, 1);
  v1::JobSpec spec = MetaLstmSpec(2, 20);
  spec.mutable_meta_lstm()->set_forget_bias_init(4.5);
  spec.mutable_meta_lstm()->set_input_bias_init(-4.5);
  auto learner = Learner(spec, model, LossKind::kMse);
  const auto& specs = learner->meta_param_specs();
  const size_t m = model->param_specs().size();
  ASSERT_EQ(specs.size(), m + 8);
  const std::vector<std::string> names = {"metalstm.lstm.weight_ih", "metalstm.lstm.weight_hh",
                                          "metalstm.lstm.bias_ih",   "metalstm.lstm.bias_hh",
                                          "metalstm.cell.WF",        "metalstm.cell.WI",
                                          "metalstm.cell.bF",        "metalstm.cell.bI"};
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(specs[m + i].name, names[i]);
  EXPECT_EQ(specs[m].shape, (std::vector<int64_t>{80, 4}));
  EXPECT_EQ(specs[m + 1].shape, (std::vector<int64_t>{80, 20}));
  EXPECT_EQ(specs[m + 4].shape, (std::vector<int64_t>{22, 1}));

  Rng a(3), b(3);
  TensorList theta = learner->InitialMetaParams(a, at::kFloat);
  // The initialisation part is the model's own (the same draws as MAML's).
  TensorList model_init = model->Initialize(b, at::kFloat);
  for (size_t i = 0; i < m; ++i) EXPECT_TRUE(at::equal(theta[i], model_init[i]));
  for (size_t i = m; i < m + 6; ++i) {
    EXPECT_LE(theta[i].abs().max().item<double>(), 0.01) << specs[i].name;
    EXPECT_GT(theta[i].abs().max().item<double>(), 0) << specs[i].name;
  }
  EXPECT_EQ(theta[m + 6].item<double>(), 4.5);
  EXPECT_EQ(theta[m + 7].item<double>(), -4.5);
}

TEST(MetaLstmLearnerTest, ZeroStepsChangeNothingAndAdaptationLowersTheSupportLoss) {
  auto model = Make(MlpSpec({8}, false), {1}, 1);
  v1::JobSpec spec = MetaLstmSpec(3, 4);
  spec.mutable_meta_lstm()->set_input_bias_init(-3);
  auto learner = Learner(spec, model, LossKind::kMse);
  Rng rng(8);
  TensorList theta = learner->InitialMetaParams(rng, at::kDouble);
  TaskBatch tasks = RegressionBatch(9, 3, 10, 10, {1}, 1, at::kDouble);
  auto zero = learner->Evaluate(theta, tasks, 0);
  ASSERT_TRUE(zero.ok()) << zero.status();
  EXPECT_TRUE(at::equal(zero->loss_before, zero->loss_after));
  // Evaluated on the support set itself, the initial meta-learner (forget ~1, input
  // gate ~sigmoid(-3)) does gradient descent, so the loss goes down.
  TaskBatch on_support{tasks.support_x, tasks.support_y, tasks.support_x, tasks.support_y};
  auto ten = learner->Evaluate(theta, on_support, 10);
  ASSERT_TRUE(ten.ok());
  EXPECT_TRUE((ten->loss_after < ten->loss_before).all().item<bool>());
  auto* lstm = dynamic_cast<MetaLstmLearner*>(learner.get());
  ASSERT_NE(lstm, nullptr);
  auto adapted = lstm->AdaptedParams(theta, tasks, 3);
  ASSERT_TRUE(adapted.ok());
  ASSERT_EQ(adapted->size(), model->param_specs().size());
  EXPECT_EQ((*adapted)[0].size(0), 3);
  EXPECT_FALSE(at::equal((*adapted)[0][0], theta[0]));
}

TEST(MetaLstmLearnerTest, BadInputsAreInvalidArgument) {
  auto model = Make(MlpSpec({4}, false), {1}, 1);
  v1::JobSpec spec = MetaLstmSpec(2, 0);
  auto bad = MakeMetaLearner(spec, model, LossKind::kMse);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("meta_lstm.hidden_size"));
  spec = MetaLstmSpec(2, 4);
  spec.mutable_meta_lstm()->set_preprocess_p(-1);
  bad = MakeMetaLearner(spec, model, LossKind::kMse);
  EXPECT_THAT(bad.status().message(), HasSubstr("meta_lstm.preprocess_p"));

  auto learner = Learner(MetaLstmSpec(2, 4), model, LossKind::kMse);
  Rng rng(1);
  TensorList theta = learner->InitialMetaParams(rng, at::kFloat);
  TensorList short_list(theta.begin(), theta.end() - 1);
  TaskBatch tasks = RegressionBatch(2, 2, 5, 5, {1}, 1, at::kFloat);
  auto r = learner->ComputeMetaGradients(short_list, tasks);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  TaskBatch wrong = RegressionBatch(2, 2, 5, 5, {2}, 1, at::kFloat);
  r = learner->ComputeMetaGradients(theta, wrong);
  EXPECT_THAT(r.status().message(), HasSubstr("support_x"));
  EXPECT_FALSE(learner->Evaluate(theta, tasks, -1).ok());
}

}  // namespace
}  // namespace metatrain::meta
