#include "common/meta/model.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/meta/batched_ops.h"
#include "common/meta/conv_net.h"
#include "common/meta/rng.h"
#include "tests/common/meta/meta_test_util.h"

namespace metatrain::meta {
namespace {

using testing::ConvSpec;
using ::testing::HasSubstr;
using testing::MlpSpec;
using testing::RandomNormal;

std::unique_ptr<Model> Make(const v1::ModelSpec& spec, std::vector<int64_t> input, int64_t out) {
  auto model = MakeModel(spec, input, out);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(model).value() : nullptr;
}

struct Expected {
  std::string name;
  std::vector<int64_t> shape;
  bool head;
};

void ExpectSpecs(const Model& model, const std::vector<Expected>& expected) {
  const auto& specs = model.param_specs();
  ASSERT_EQ(specs.size(), expected.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(specs[i].name, expected[i].name) << i;
    EXPECT_EQ(specs[i].shape, expected[i].shape) << specs[i].name;
    EXPECT_EQ(specs[i].head, expected[i].head) << specs[i].name;
  }
}

TEST(MlpTest, SinusoidNetMirrorsPyTorchSequential) {
  auto model = Make(MlpSpec({40, 40}, false), {1}, 1);
  ExpectSpecs(*model, {{"layers.0.weight", {40, 1}, false},
                       {"layers.0.bias", {40}, false},
                       {"layers.2.weight", {40, 40}, false},
                       {"layers.2.bias", {40}, false},
                       {"layers.4.weight", {1, 40}, true},
                       {"layers.4.bias", {1}, true}});
}

TEST(MlpTest, MamlFullyConnectedNetWithBatchNorm) {
  auto model = Make(MlpSpec({256, 128, 64, 64}, true), {1, 28, 28}, 5);
  ExpectSpecs(*model, {{"layers.0.weight", {256, 784}, false},
                       {"layers.0.bias", {256}, false},
                       {"layers.1.weight", {256}, false},
                       {"layers.1.bias", {256}, false},
                       {"layers.3.weight", {128, 256}, false},
                       {"layers.3.bias", {128}, false},
                       {"layers.4.weight", {128}, false},
                       {"layers.4.bias", {128}, false},
                       {"layers.6.weight", {64, 128}, false},
                       {"layers.6.bias", {64}, false},
                       {"layers.7.weight", {64}, false},
                       {"layers.7.bias", {64}, false},
                       {"layers.9.weight", {64, 64}, false},
                       {"layers.9.bias", {64}, false},
                       {"layers.10.weight", {64}, false},
                       {"layers.10.bias", {64}, false},
                       {"layers.12.weight", {5, 64}, true},
                       {"layers.12.bias", {5}, true}});
}

TEST(ConvNetTest, OmniglotShapes) {
  auto model = Make(ConvSpec(64), {1, 28, 28}, 5);
  std::vector<Expected> expected;
  for (int b = 0; b < 4; ++b) {
    const std::string p = "features." + std::to_string(b);
    expected.push_back({p + ".0.weight", {64, b == 0 ? 1 : 64, 3, 3}, false});
    expected.push_back({p + ".0.bias", {64}, false});
    expected.push_back({p + ".1.weight", {64}, false});
    expected.push_back({p + ".1.bias", {64}, false});
  }
  expected.push_back({"head.weight", {5, 64}, true});  // 28 -> 14 -> 7 -> 3 -> 1
  expected.push_back({"head.bias", {5}, true});
  ExpectSpecs(*model, expected);
}

TEST(ConvNetTest, MiniImageNetFeatureSize) {
  auto model = Make(ConvSpec(32), {3, 84, 84}, 5);
  const auto& specs = model->param_specs();
  EXPECT_EQ(specs[0].shape, (std::vector<int64_t>{32, 3, 3, 3}));
  EXPECT_EQ(specs[16].shape, (std::vector<int64_t>{5, 32 * 5 * 5}));  // 84 -> 42 -> 21 -> 10 -> 5
}

// Weights and biases of Linear/Conv2d layers are U(-1/sqrt(fan_in), 1/sqrt(fan_in))
// (PyTorch's defaults); batch-norm weights 1, biases 0. `fan_in_of_layer` lists the
// Linear/Conv2d layers' fan-ins in order.
void ExpectPyTorchDefaultInit(const Model& model, const std::vector<int64_t>& fan_in_of_layer) {
  Rng rng(7);
  TensorList params = model.Initialize(rng, at::kDouble);
  const auto& specs = model.param_specs();
  ASSERT_EQ(params.size(), specs.size());
  size_t layer = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    ASSERT_EQ(params[i].sizes(), at::IntArrayRef(specs[i].shape)) << specs[i].name;
    ASSERT_EQ(params[i].scalar_type(), at::kDouble);
    // Batch-norm weights are the only 1-D weights; their biases follow them.
    if (specs[i].shape.size() == 1 && specs[i].name.find(".weight") != std::string::npos) {
      EXPECT_TRUE(at::equal(params[i], at::ones_like(params[i]))) << specs[i].name;
      EXPECT_TRUE(at::equal(params[i + 1], at::zeros_like(params[i + 1]))) << specs[i + 1].name;
      ++i;
      continue;
    }
    ASSERT_LT(layer, fan_in_of_layer.size());
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in_of_layer[layer]));
    const double max_abs = params[i].abs().max().item<double>();
    EXPECT_LE(max_abs, bound) << specs[i].name;
    EXPECT_GT(max_abs, 0.0) << specs[i].name;
    if (params[i].numel() >= 1000) {
      // A uniform sample of this size fills its range and has std bound/sqrt(3).
      EXPECT_GT(max_abs, 0.99 * bound) << specs[i].name;
      EXPECT_NEAR(params[i].std().item<double>(), bound / std::sqrt(3.0), 0.05 * bound)
          << specs[i].name;
      EXPECT_NEAR(params[i].mean().item<double>(), 0.0, 0.05 * bound) << specs[i].name;
    }
    if (specs[i].name.find(".bias") != std::string::npos) ++layer;
  }
  EXPECT_EQ(layer, fan_in_of_layer.size());
}

TEST(InitTest, MlpUsesPyTorchDefaults) {
  auto model = Make(MlpSpec({256, 64}, true), {1, 28, 28}, 5);
  ExpectPyTorchDefaultInit(*model, {784, 256, 64});
}

TEST(InitTest, ConvNetUsesPyTorchDefaults) {
  auto model = Make(ConvSpec(32), {3, 28, 28}, 5);
  ExpectPyTorchDefaultInit(*model, {27, 288, 288, 288, 32});
}

TEST(InitTest, SameSeedSameTensorsAcrossCallsAndDtypes) {
  auto model = Make(ConvSpec(8), {1, 28, 28}, 5);
  Rng a(42), b(42), c(43), d(42);
  TensorList pa = model->Initialize(a, at::kFloat);
  TensorList pb = model->Initialize(b, at::kFloat);
  TensorList pc = model->Initialize(c, at::kFloat);
  TensorList pd = model->Initialize(d, at::kDouble);
  bool any_differs = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(at::equal(pa[i], pb[i])) << model->param_specs()[i].name;
    // float32 values are the float64 draws rounded once.
    EXPECT_TRUE(at::equal(pa[i], pd[i].to(at::kFloat))) << model->param_specs()[i].name;
    EXPECT_EQ(pa[i].scalar_type(), at::kFloat);
    if (!at::equal(pa[i], pc[i])) any_differs = true;
  }
  EXPECT_TRUE(any_differs);
}

// The batched forward pass equals, task by task, the plain PyTorch layers applied with
// that task's parameters (what the equivalent nn.Module computes in training mode).
TEST(ForwardTest, MlpMatchesUnbatchedPyTorchLayers) {
  auto model = Make(MlpSpec({6, 5}, true), {2, 3}, 4);
  Rng rng(1);
  const int64_t t = 3, n = 7;
  TensorList params;
  for (const auto& spec : model->param_specs()) {
    std::vector<int64_t> shape = {t};
    shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
    params.push_back(RandomNormal(rng, shape, at::kDouble));
  }
  at::Tensor x = RandomNormal(rng, {t, n, 2, 3}, at::kDouble);
  at::Tensor out = model->Forward(params, x);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{t, n, 4}));
  for (int64_t k = 0; k < t; ++k) {
    auto p = [&](int i) { return params[i][k]; };
    at::Tensor h = x[k].flatten(1);
    h = at::relu(
        at::batch_norm(at::linear(h, p(0), p(1)), p(2), p(3), {}, {}, true, 0.1, 1e-5, false));
    h = at::relu(
        at::batch_norm(at::linear(h, p(4), p(5)), p(6), p(7), {}, {}, true, 0.1, 1e-5, false));
    h = at::linear(h, p(8), p(9));
    EXPECT_TRUE(at::allclose(out[k], h, 1e-12, 1e-12)) << "task " << k;
  }
}

// A linear layer computes at::linear task by task, with the same first- and second-order
// gradients, for small layers and for ones wider than a GEMM kernel's blocks.
TEST(BatchedLinearTest, MatchesLinearUpToSecondOrder) {
  for (const auto& [in, out] : {std::pair<int64_t, int64_t>{3, 4}, {70, 65}}) {
    SCOPED_TRACE(::testing::Message() << in << " -> " << out);
    Rng rng(3);
    const int64_t t = 3, n = 5;
    at::Tensor x = RandomNormal(rng, {t, n, in}, at::kDouble).requires_grad_(true);
    at::Tensor w = RandomNormal(rng, {t, out, in}, at::kDouble).requires_grad_(true);
    at::Tensor b = RandomNormal(rng, {t, out}, at::kDouble).requires_grad_(true);
    at::Tensor weights = RandomNormal(rng, {t, n, out}, at::kDouble);
    // A loss, its gradient's squared norm, and that one's gradient: what MAML differentiates.
    auto second_order = [&](const at::Tensor& y) {
      at::Tensor loss = (y * y * weights).sum();
      auto first = torch::autograd::grad({loss}, {x, w, b}, {}, true, true);
      at::Tensor norm = first[0].pow(2).sum() + first[1].pow(2).sum() + first[2].pow(2).sum();
      auto second = torch::autograd::grad({norm}, {x, w, b});
      TensorList all(first.begin(), first.end());
      all.insert(all.end(), second.begin(), second.end());
      all.insert(all.begin(), y.detach());
      return all;
    };
    TensorList batched = second_order(internal::BatchedLinear(x, w, b));
    std::vector<at::Tensor> per_task;
    for (int64_t k = 0; k < t; ++k) per_task.push_back(at::linear(x[k], w[k], b[k]));
    TensorList reference = second_order(at::stack(per_task));
    ASSERT_EQ(batched.size(), reference.size());
    for (size_t i = 0; i < batched.size(); ++i) {
      EXPECT_TRUE(at::allclose(batched[i], reference[i], 1e-10, 1e-10)) << "tensor " << i;
    }
  }
}

TEST(ForwardTest, ConvNetMatchesUnbatchedPyTorchLayers) {
  auto model = Make(ConvSpec(3), {2, 17, 16}, 4);
  Rng rng(2);
  const int64_t t = 3, n = 5;
  TensorList params;
  for (const auto& spec : model->param_specs()) {
    std::vector<int64_t> shape = {t};
    shape.insert(shape.end(), spec.shape.begin(), spec.shape.end());
    params.push_back(RandomNormal(rng, shape, at::kDouble));
  }
  at::Tensor x = RandomNormal(rng, {t, n, 2, 17, 16}, at::kDouble);
  at::Tensor out = model->Forward(params, x);
  ASSERT_EQ(out.sizes(), (at::IntArrayRef{t, n, 4}));
  for (int64_t k = 0; k < t; ++k) {
    at::Tensor h = x[k];
    for (int b = 0; b < 4; ++b) {
      auto p = [&](int i) { return params[4 * b + i][k]; };
      h = at::conv2d(h, p(0), p(1), 1, 1);
      h = at::batch_norm(h, p(2), p(3), {}, {}, true, 0.1, 1e-5, false);
      h = at::max_pool2d(at::relu(h), {2, 2});
    }
    h = at::linear(h.flatten(1), params[16][k], params[17][k]);
    EXPECT_TRUE(at::allclose(out[k], h, 1e-12, 1e-12)) << "task " << k;
  }
}

TEST(MakeModelTest, RejectsBadSpecsNamingTheField) {
  v1::ModelSpec unknown;
  unknown.set_kind("transformer");
  auto s = MakeModel(unknown, {1}, 1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("model.kind: unknown 'transformer' (expected one of mlp, conv)"));

  s = MakeModel(MlpSpec({40, 0}, false), {1}, 1).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.hidden_sizes[1] must be > 0 (got 0)"));

  s = MakeModel(ConvSpec(0), {1, 28, 28}, 5).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("model.filters must be > 0"));

  s = MakeModel(ConvSpec(8), {1}, 5).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("image inputs [C, H, W]"));

  s = MakeModel(ConvSpec(8), {1, 8, 8}, 5).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("at least 16x16"));

  s = MakeModel(MlpSpec({4}, false), {1}, 0).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("output size must be > 0"));
}

TEST(MakeModelTest, MlpWithoutHiddenLayersIsLinear) {
  auto model = Make(MlpSpec({}, false), {3}, 2);
  ExpectSpecs(*model, {{"layers.0.weight", {2, 3}, true}, {"layers.0.bias", {2}, true}});
}

}  // namespace
}  // namespace metatrain::meta
