// Prototypical networks (ProtoNetLearner) against independent computations: a hand-worked
// case, the formula written out element by element, central finite differences of the
// query loss (float64), the same bits alone and in a batch, the PyTorch module loading the
// checkpoint, and the errors users see.

#include "common/meta/protonet_learner.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/meta/checkpoint.h"
#include "common/meta/inner_loop.h"
#include "common/meta/model.h"
#include "tests/common/meta/meta_test_util.h"
#include "tests/common/meta/python_util.h"

namespace metatrain::meta {
namespace {

using testing::ConvSpec;
using ::testing::HasSubstr;
using testing::MlpSpec;
using testing::RandomNormal;

std::shared_ptr<const Model> Make(const v1::ModelSpec& spec, std::vector<int64_t> input,
                                  int64_t out) {
  auto model = MakeModel(spec, input, out);
  EXPECT_TRUE(model.ok()) << model.status();
  return std::shared_ptr<const Model>(std::move(model).value());
}

v1::JobSpec ProtoSpec() {
  v1::JobSpec spec;
  spec.set_algorithm("protonet");
  return spec;
}

std::unique_ptr<MetaLearner> Learner(std::shared_ptr<const Model> model) {
  auto learner = MakeMetaLearner(ProtoSpec(), std::move(model), LossKind::kCrossEntropy);
  EXPECT_TRUE(learner.ok()) << learner.status();
  return std::move(learner).value();
}

// `ways`-way tasks, `shots` support and `queries` query examples per class, labels in
// class order, inputs ~ N(0, 1) from our Rng.
TaskBatch Episodes(uint64_t seed, int64_t tasks, int64_t ways, int64_t shots, int64_t queries,
                   std::vector<int64_t> input, at::ScalarType dtype) {
  Rng rng(seed);
  auto shape = [&](int64_t n) {
    std::vector<int64_t> s = {tasks, n};
    s.insert(s.end(), input.begin(), input.end());
    return s;
  };
  auto labels = [&](int64_t n) {
    return at::arange(ways, at::kLong).repeat_interleave(n).repeat({tasks, 1});
  };
  TaskBatch b;
  b.support_x = RandomNormal(rng, shape(ways * shots), dtype);
  b.support_y = labels(shots);
  b.query_x = RandomNormal(rng, shape(ways * queries), dtype);
  b.query_y = labels(queries);
  return b;
}

TensorList Init(const MetaLearner& learner, uint64_t seed, at::ScalarType dtype) {
  Rng rng(seed);
  return learner.InitialMetaParams(rng, dtype);
}

TEST(ProtoNetTest, MetaParametersAreTheEmbeddingOnly) {
  auto conv = Make(ConvSpec(8), {1, 28, 28}, 5);
  auto learner = Learner(conv);
  const auto& specs = learner->meta_param_specs();
  ASSERT_EQ(specs.size(), 16u);  // 4 blocks x (conv weight, bias, bn weight, bias)
  for (const ParamSpec& s : specs) {
    EXPECT_FALSE(s.head) << s.name;
    EXPECT_EQ(s.name.rfind("features.", 0), 0u) << s.name;
  }
  EXPECT_EQ(conv->embedding_size(), 8);  // 28 -> 14 -> 7 -> 3 -> 1
  // Same draws as the model's init: the body equals a MAML job's with the same seed.
  Rng a(3), b(3);
  const TensorList body = learner->InitialMetaParams(a, at::kFloat);
  const TensorList all = conv->Initialize(b, at::kFloat);
  for (size_t i = 0; i < body.size(); ++i) EXPECT_TRUE(at::equal(body[i], all[i])) << i;

  auto mlp = Make(MlpSpec({6, 4}, true), {3}, 2);
  EXPECT_EQ(Learner(mlp)->meta_param_specs().size(), 8u);  // 2 x (linear, bn), no head
  EXPECT_EQ(mlp->embedding_size(), 4);
}

TEST(ProtoNetTest, ForwardIsTheHeadOverTheEmbeddingBitForBit) {
  for (auto model : {Make(ConvSpec(4), {1, 16, 16}, 3), Make(MlpSpec({5, 4}, true), {6}, 3)}) {
    Rng rng(5);
    TensorList params;
    for (const at::Tensor& p : model->Initialize(rng, at::kFloat)) params.push_back(p.unsqueeze(0));
    Rng data(6);
    std::vector<int64_t> shape = {1, 7};
    for (int64_t d : model->input_shape()) shape.push_back(d);
    const at::Tensor x = RandomNormal(data, shape, at::kFloat);
    const size_t n = params.size();
    const at::Tensor z = model->Embed(params, x);
    ASSERT_EQ(z.size(2), model->embedding_size());
    const at::Tensor head =
        at::matmul(z, params[n - 2][0].t()) + params[n - 1][0];  // plain nn.Linear
    EXPECT_TRUE(at::allclose(model->Forward(params, x), head, 1e-5, 1e-6));
    // Body parameters alone give the same embedding.
    const TensorList body(params.begin(), params.end() - 2);
    EXPECT_TRUE(at::equal(model->Embed(body, x), z));
  }
}

// An identity embedding on positive inputs (one 2-unit hidden layer, W = I, b = 0), so the
// prototypes and distances can be worked out by hand.
TEST(ProtoNetTest, HandWorkedDistancesAndLoss) {
  auto model = Make(MlpSpec({2}, false), {2}, 2);
  auto learner = Learner(model);
  const TensorList params = {at::eye(2, at::kDouble), at::zeros({2}, at::kDouble)};
  TaskBatch b;
  // Class 0: (0, 0) and (2, 0) -> prototype (1, 0). Class 1: (0, 3) -> (0, 3).
  b.support_x = at::tensor({0.0, 0.0, 2.0, 0.0, 0.0, 3.0}, at::kDouble).reshape({1, 3, 2});
  b.support_y = at::tensor(std::vector<int64_t>{0, 0, 1}, at::kLong).reshape({1, 3});
  // (1, 1): distances 1 and 5. (0, 2): 5 and 1. (3, 3): 13 and 9.
  b.query_x = at::tensor({1.0, 1.0, 0.0, 2.0, 3.0, 3.0}, at::kDouble).reshape({1, 3, 2});
  b.query_y = at::tensor(std::vector<int64_t>{0, 1, 0}, at::kLong).reshape({1, 3});
  auto logits = static_cast<const ProtoNetLearner&>(*learner).QueryLogits(params, b);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const at::Tensor want =
      -at::tensor({1.0, 5.0, 5.0, 1.0, 13.0, 9.0}, at::kDouble).reshape({1, 3, 2});
  EXPECT_TRUE(at::equal(*logits, want)) << *logits;
  // Cross-entropy: log(1 + e^-4) twice (right by a margin of 4), log(1 + e^4) once (wrong).
  const double loss = (2 * std::log1p(std::exp(-4.0)) + std::log1p(std::exp(4.0))) / 3;
  auto result = learner->Evaluate(params, b, 5);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NEAR(result->loss_after[0].item<double>(), loss, 1e-15);
  EXPECT_DOUBLE_EQ(result->accuracy_after[0].item<double>(), 2.0 / 3);
  // No inner loop: "before" is the same classifier.
  EXPECT_TRUE(at::equal(result->loss_before, result->loss_after));
  EXPECT_TRUE(at::equal(result->accuracy_before, result->accuracy_after));
  auto grads = learner->ComputeMetaGradients(params, b);
  ASSERT_TRUE(grads.ok()) << grads.status();
  EXPECT_NEAR(grads->query_loss[0].item<double>(), loss, 1e-15);
}

// The formula written out element by element over the embedding, for a random conv net.
TEST(ProtoNetTest, LossMatchesTheFormulaElementByElement) {
  auto model = Make(ConvSpec(3), {1, 16, 16}, 4);
  auto learner = Learner(model);
  const TensorList params = Init(*learner, 9, at::kDouble);
  const TaskBatch b = Episodes(10, 2, 4, 2, 3, {1, 16, 16}, at::kDouble);
  auto result = learner->Evaluate(params, b, 0);
  ASSERT_TRUE(result.ok()) << result.status();
  TensorList batched;
  for (const auto& p : params) batched.push_back(p.unsqueeze(0));
  for (int64_t t = 0; t < 2; ++t) {
    // Support and query embedded together (shared batch statistics).
    const at::Tensor x = at::cat({b.support_x[t], b.query_x[t]}, 0).unsqueeze(0);
    const at::Tensor z = model->Embed(batched, x)[0];
    const int64_t s = b.support_x.size(1), q = b.query_x.size(1), d = z.size(1), w = 4;
    std::vector<std::vector<double>> proto(w, std::vector<double>(d, 0.0));
    std::vector<int> count(w, 0);
    for (int64_t i = 0; i < s; ++i) {
      const int64_t k = b.support_y[t][i].item<int64_t>();
      ++count[k];
      for (int64_t j = 0; j < d; ++j) proto[k][j] += z[i][j].item<double>();
    }
    double loss = 0, correct = 0;
    for (int64_t i = 0; i < q; ++i) {
      std::vector<double> logit(w);
      for (int64_t k = 0; k < w; ++k) {
        double dist = 0;
        for (int64_t j = 0; j < d; ++j) {
          const double diff = z[s + i][j].item<double>() - proto[k][j] / count[k];
          dist += diff * diff;
        }
        logit[k] = -dist;
      }
      double m = logit[0];
      int64_t best = 0;
      for (int64_t k = 1; k < w; ++k) {
        if (logit[k] > m) m = logit[k], best = k;
      }
      double sum = 0;
      for (double l : logit) sum += std::exp(l - m);
      const int64_t y = b.query_y[t][i].item<int64_t>();
      loss += -(logit[y] - m - std::log(sum));
      correct += best == y;
    }
    EXPECT_NEAR(result->loss_after[t].item<double>(), loss / q, 1e-12) << "task " << t;
    EXPECT_DOUBLE_EQ(result->accuracy_after[t].item<double>(), correct / q) << "task " << t;
  }
}

// Central differences of each task's query loss, float64, every element of every
// embedding parameter (batch norm included).
void CheckFiniteDifferences(std::shared_ptr<const Model> model, const TaskBatch& b) {
  auto learner = Learner(model);
  const TensorList params = Init(*learner, 21, at::kDouble);
  auto grads = learner->ComputeMetaGradients(params, b);
  ASSERT_TRUE(grads.ok()) << grads.status();
  const double eps = 1e-6;
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(grads->per_task[i].size(0), b.size());
    const at::Tensor flat = params[i].reshape({-1});
    for (int64_t e = 0; e < flat.numel(); ++e) {
      auto loss_at = [&](double delta) {
        TensorList moved = params;
        moved[i] = params[i].clone();
        moved[i].view({-1})[e] += delta;
        return learner->Evaluate(moved, b, 0)->loss_after;
      };
      const at::Tensor fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
      for (int64_t t = 0; t < b.size(); ++t) {
        const double g = grads->per_task[i][t].reshape({-1})[e].item<double>();
        const double want = fd[t].item<double>();
        EXPECT_NEAR(g, want, 1e-6 * std::max(1.0, std::abs(want)))
            << learner->meta_param_specs()[i].name << "[" << e << "], task " << t;
      }
    }
  }
}

TEST(ProtoNetGradientTest, MlpWithBatchNormMatchesFiniteDifferences) {
  CheckFiniteDifferences(Make(MlpSpec({4, 3}, true), {5}, 3),
                         Episodes(31, 2, 3, 2, 2, {5}, at::kDouble));
}

TEST(ProtoNetGradientTest, ConvNetMatchesFiniteDifferences) {
  CheckFiniteDifferences(Make(ConvSpec(2), {1, 16, 16}, 3),
                         Episodes(32, 2, 3, 1, 2, {1, 16, 16}, at::kDouble));
}

TEST(ProtoNetTest, TaskResultsAreTheSameBitsAloneAndInABatch) {
  auto model = Make(ConvSpec(8), {1, 28, 28}, 5);
  auto learner = Learner(model);
  const TensorList params = Init(*learner, 41, at::kFloat);
  const TaskBatch b = Episodes(42, 3, 5, 1, 3, {1, 28, 28}, at::kFloat);
  auto batch = learner->ComputeMetaGradients(params, b);
  ASSERT_TRUE(batch.ok()) << batch.status();
  auto batch_eval = learner->Evaluate(params, b, 0);
  ASSERT_TRUE(batch_eval.ok());
  for (int64_t t = 0; t < 3; ++t) {
    auto alone = learner->ComputeMetaGradients(params, testing::Slice(b, t));
    ASSERT_TRUE(alone.ok()) << alone.status();
    for (size_t i = 0; i < params.size(); ++i) {
      EXPECT_TRUE(at::equal(alone->per_task[i][0], batch->per_task[i][t])) << i << ", task " << t;
    }
    EXPECT_TRUE(at::equal(alone->query_loss[0], batch->query_loss[t]));
    auto eval = learner->Evaluate(params, testing::Slice(b, t), 0);
    ASSERT_TRUE(eval.ok());
    EXPECT_TRUE(at::equal(eval->loss_after[0], batch_eval->loss_after[t]));
    // Training and evaluation compute the same loss.
    EXPECT_TRUE(at::equal(eval->loss_after[0], alone->query_loss[0]));
  }
}

// Workers may run with different intra-op thread counts; the bits must not care. Wide
// episodes (30-way, 15 queries per class, 64-dim embedding) make the distance tensor large
// enough for LibTorch to split its kernels across threads.
TEST(ProtoNetTest, ResultsDoNotDependOnIntraOpThreads) {
  auto learner = Learner(Make(MlpSpec({64}, true), {20}, 5));
  const TensorList params = Init(*learner, 45, at::kFloat);
  const TaskBatch b = Episodes(46, 2, 30, 1, 15, {20}, at::kFloat);
  const int threads_before = at::get_num_threads();
  at::set_num_threads(1);
  auto one = learner->ComputeMetaGradients(params, b);
  at::set_num_threads(4);
  auto four = learner->ComputeMetaGradients(params, b);
  at::set_num_threads(threads_before);
  ASSERT_TRUE(one.ok() && four.ok());
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::equal(one->per_task[i], four->per_task[i])) << i;
  }
  EXPECT_TRUE(at::equal(one->query_loss, four->query_loss));
}

TEST(ProtoNetTest, SameParametersTrainWideAndEvaluateNarrowEpisodes) {
  // Higher-way training: the number of classes comes from the batch, not the model's head.
  auto model = Make(ConvSpec(4), {1, 16, 16}, 5);
  auto learner = Learner(model);
  const TensorList params = Init(*learner, 51, at::kFloat);
  auto wide =
      learner->ComputeMetaGradients(params, Episodes(52, 2, 12, 1, 2, {1, 16, 16}, at::kFloat));
  ASSERT_TRUE(wide.ok()) << wide.status();
  auto narrow = learner->Evaluate(params, Episodes(53, 2, 3, 1, 2, {1, 16, 16}, at::kFloat), 0);
  ASSERT_TRUE(narrow.ok()) << narrow.status();
  EXPECT_EQ(narrow->accuracy_after.size(0), 2);
}

TEST(ProtoNetTest, BadInputsAreInvalidArgumentNamingTheProblem) {
  auto model = Make(MlpSpec({4}, false), {3}, 3);
  auto learner = Learner(model);
  const TensorList params = Init(*learner, 61, at::kFloat);
  TaskBatch b = Episodes(62, 2, 3, 1, 2, {3}, at::kFloat);

  TaskBatch missing = b;
  missing.support_y = b.support_y.clone();
  missing.support_y[1][1] = 0;  // task 1 has no class 1 (but class 2 exists)
  auto status = learner->ComputeMetaGradients(params, missing).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("task 1 has no support example of class 1"));

  TaskBatch high = b;
  high.support_y = b.support_y.clone();
  high.support_y[0][0] = 7;
  status = learner->Evaluate(params, high, 0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("support_y"));

  TaskBatch query = b;
  query.query_y = b.query_y.clone();
  query.query_y[0][0] = 3;
  status = learner->Evaluate(params, query, 0).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("query_y: labels must be in [0, 3)"));

  TaskBatch shape = b;
  shape.query_x = at::zeros({2, 6, 4});
  status = learner->Evaluate(params, shape, 0).status();
  EXPECT_THAT(std::string(status.message()), HasSubstr("query_x: expected [T, n, 3]"));

  EXPECT_THAT(std::string(learner->Evaluate({params[0]}, b, 0).status().message()),
              HasSubstr("meta_params: expected 2 tensors"));

  auto regression = MakeMetaLearner(ProtoSpec(), model, LossKind::kMse);
  EXPECT_EQ(regression.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(regression.status().message()), HasSubstr("tasks.family"));
  auto headless =
      MakeMetaLearner(ProtoSpec(), Make(MlpSpec({}, false), {3}, 3), LossKind::kCrossEntropy);
  EXPECT_THAT(std::string(headless.status().message()), HasSubstr("model.hidden_sizes"));
}

// The checkpoint (embedding only) loads into the PyTorch module of conv_net.h with
// strict=False, and PyTorch's prototypes classify exactly as ours do.
TEST(ProtoNetTest, PythonLoadsTheCheckpointAndComputesTheSameLogits) {
  if (!metatrain::testing::PythonHasTorch()) {
    GTEST_SKIP() << "/usr/bin/python3 has no torch (install python3-torch)";
  }
  auto model = Make(ConvSpec(8), {1, 28, 28}, 5);
  auto learner = Learner(model);
  const TensorList params = Init(*learner, 71, at::kFloat);
  const TaskBatch b = Episodes(72, 1, 5, 1, 2, {1, 28, 28}, at::kFloat);
  auto logits = static_cast<const ProtoNetLearner&>(*learner).QueryLogits(params, b);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const std::string dir = metatrain::testing::TempDir();
  const std::string checkpoint = dir + "/protonet.pt", data = dir + "/episode.pt";
  ASSERT_TRUE(SaveStateDict(checkpoint, ToStateDict(learner->meta_param_specs(), params)).ok());
  StateDict episode = {{"support_x", b.support_x[0]},
                       {"support_y", b.support_y[0]},
                       {"query_x", b.query_x[0]},
                       {"logits", (*logits)[0]}};
  ASSERT_TRUE(SaveStateDict(data, episode).ok());
  int rc = 0;
  const std::string out = metatrain::testing::RunPython(
      absl::StrCat(
          "import torch\n"
          "from torch import nn\n"
          "def block(cin, cout):\n"
          "    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1),\n"
          "        nn.BatchNorm2d(cout, track_running_stats=False), nn.ReLU(), nn.MaxPool2d(2))\n"
          "class ConvNet(nn.Module):\n"
          "    def __init__(self):\n"
          "        super().__init__()\n"
          "        self.features = nn.Sequential(block(1, 8), block(8, 8), block(8, 8), block(8, "
          "8))\n"
          "        self.head = nn.Linear(8, 5)\n"
          "net = ConvNet()\n"
          "state = torch.load('",
          checkpoint,
          "')\n"
          "assert all(k.startswith('features.') for k in state), list(state)\n"
          "missing, unexpected = net.load_state_dict(state, strict=False)\n"
          "assert sorted(missing) == ['head.bias', 'head.weight'] and not unexpected, missing\n"
          "e = torch.load('",
          data,
          "')\n"
          "z = net.features(torch.cat([e['support_x'], e['query_x']])).flatten(1)\n"
          "s = e['support_x'].shape[0]\n"
          "protos = torch.stack([z[:s][e['support_y'] == k].mean(0) for k in range(5)])\n"
          "logits = -torch.cdist(z[s:], protos) ** 2\n"
          "err = (logits - e['logits']).abs().max().item()\n"
          "print('max abs diff', err)\n"
          "assert err < 1e-3 * max(1.0, e['logits'].abs().max().item()), err\n"
          "assert torch.equal(logits.argmax(1), e['logits'].argmax(1))\n"),
      &rc);
  EXPECT_EQ(rc, 0) << out;
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace metatrain::meta
