// The conv net's two departures from the obvious code, both for speed, both bit for bit:
// it pools before its ReLU (NOTE [Pool before ReLU], common/meta/conv_net.cc), and it
// pools with its own kernel (NOTE [A max-pool kernel of our own], max_pool.h).

#include "common/meta/conv_net.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/meta/batched_ops.h"
#include "common/meta/learner.h"
#include "common/meta/max_pool.h"
#include "tests/common/meta/meta_test_util.h"

namespace metatrain::meta {
namespace {

using testing::ClassificationBatch;
using testing::LearnerSpec;

// The paper's block order, written out: conv, batch norm, ReLU, max-pool.
class ReluFirstConvNet : public ConvNet {
 public:
  using ConvNet::ConvNet;

  at::Tensor Embed(const TensorList& params, const at::Tensor& x) const override {
    std::vector<at::Tensor> features;
    for (int64_t task = 0; task < x.size(0); ++task) {
      at::Tensor h = x[task];
      for (int block = 0; block < kBlocks; ++block) {
        auto p = [&](int i) { return params[4 * block + i][task]; };
        h = at::conv2d(h, p(0), p(1), {1, 1}, {1, 1});
        h = at::batch_norm(h, p(2), p(3), {}, {}, /*training=*/true, 0.1, internal::kBatchNormEps,
                           /*cudnn_enabled=*/true);
        h = at::max_pool2d(at::relu(h), {2, 2}, {2, 2});
      }
      features.push_back(h.reshape({x.size(1), feature_size()}));
    }
    return at::stack(features);
  }
};

void ExpectSameBits(const TensorList& got, const TensorList& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_TRUE(at::equal(got[i], want[i]))
        << what << " " << i << ": max diff " << (got[i] - want[i]).abs().max().item<double>();
  }
}

TEST(ConvNetTest, PoolingBeforeReluGivesTheBitsOfReluFirst) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    SCOPED_TRACE(c10::toString(dtype));
    // 20x20 images pool to 10, 5, 2 (an odd size floors) and 1.
    auto ours = std::make_shared<const ConvNet>(std::vector<int64_t>{1, 20, 20}, 6, 5);
    auto reference =
        std::make_shared<const ReluFirstConvNet>(std::vector<int64_t>{1, 20, 20}, 6, 5);
    const TaskBatch tasks = ClassificationBatch(41, 3, 5, 10, {1, 20, 20}, 5, dtype);
    Rng rng(12);
    TensorList theta = ours->Initialize(rng, dtype);
    // Negative biases leave whole windows <= 0, where the two orders route gradients
    // differently (both send zero), and make ties at zero common after ReLU.
    for (int block = 0; block < ConvNet::kBlocks; ++block) theta[4 * block + 3] -= 0.3;

    for (const char* algorithm : {"maml", "fomaml", "meta_sgd", "anil", "reptile"}) {
      SCOPED_TRACE(algorithm);
      v1::JobSpec spec = LearnerSpec(algorithm, 2, 0.4);
      auto fast = MakeMetaLearner(spec, ours, LossKind::kCrossEntropy);
      auto slow = MakeMetaLearner(spec, reference, LossKind::kCrossEntropy);
      ASSERT_TRUE(fast.ok() && slow.ok());
      Rng init(13);
      TensorList meta = (*fast)->InitialMetaParams(init, dtype);
      for (size_t i = 0; i < theta.size(); ++i) meta[i] = theta[i];
      auto got = (*fast)->ComputeMetaGradients(meta, tasks);
      auto want = (*slow)->ComputeMetaGradients(meta, tasks);
      ASSERT_TRUE(got.ok()) << got.status();
      ASSERT_TRUE(want.ok()) << want.status();
      ExpectSameBits(got->per_task, want->per_task, "meta-gradient");
      EXPECT_TRUE(at::equal(got->query_loss, want->query_loss));
      auto got_eval = (*fast)->Evaluate(meta, tasks, 3);
      auto want_eval = (*slow)->Evaluate(meta, tasks, 3);
      ASSERT_TRUE(got_eval.ok() && want_eval.ok());
      EXPECT_TRUE(at::equal(got_eval->loss_after, want_eval->loss_after));
    }
  }
}

// Values, indices (through the gradient's routing), first and second derivatives equal
// at::max_pool2d's bit for bit, on the inputs where ATen's rules show: ties (a window's
// first maximum wins), NaN (the last NaN of a window wins), -infinity, odd sizes.
TEST(MaxPool2x2Test, HasATensBitsValuesGradientsAndSecondOrder) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    for (auto size : std::vector<std::pair<int64_t, int64_t>>{{6, 8}, {7, 5}, {2, 2}, {3, 9}}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + " " + std::to_string(size.first) + "x" +
                   std::to_string(size.second));
      at::manual_seed(5);
      at::Tensor x = at::randn({2, 3, size.first, size.second}, at::TensorOptions().dtype(dtype));
      // Ties: a coarse grid of values, so many windows hold equal maxima.
      x = (x * 2).round() / 2;
      auto flat = x.view({-1});
      flat[1] = std::numeric_limits<double>::quiet_NaN();
      flat[7] = std::numeric_limits<double>::quiet_NaN();
      flat[size.second] = -std::numeric_limits<double>::infinity();
      flat[size.second + 1] = -std::numeric_limits<double>::infinity();
      flat[4] = std::numeric_limits<double>::infinity();

      at::Tensor a = x.clone().requires_grad_(true), b = x.clone().requires_grad_(true);
      at::Tensor ours = internal::MaxPool2x2(a);
      at::Tensor theirs = at::max_pool2d(b, {2, 2}, {2, 2});
      ASSERT_EQ(ours.sizes(), theirs.sizes());
      EXPECT_TRUE(at::equal(ours.isnan(), theirs.isnan()));
      EXPECT_TRUE(at::equal(ours.nan_to_num(0, 0, 0), theirs.nan_to_num(0, 0, 0)));

      // Distinct output gradients tell which input element each one reached.
      at::Tensor g =
          at::arange(1, ours.numel() + 1, x.options()).view(ours.sizes()).set_requires_grad(true);
      at::Tensor ga = torch::autograd::grad({ours}, {a}, {g}, true, true)[0];
      at::Tensor gb = torch::autograd::grad({theirs}, {b}, {g}, true, true)[0];
      EXPECT_TRUE(at::equal(ga, gb));
      // Second order: differentiate the gradient wrt the output gradient.
      at::Tensor w = at::randn(x.sizes(), x.options());
      at::Tensor gga = torch::autograd::grad({(ga * w).sum()}, {g}, {}, true)[0];
      at::Tensor ggb = torch::autograd::grad({(gb * w).sum()}, {g})[0];
      EXPECT_TRUE(at::equal(gga, ggb));
    }
  }
}

}  // namespace
}  // namespace metatrain::meta
