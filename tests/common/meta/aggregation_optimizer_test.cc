#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "common/meta/aggregation.h"
#include "common/meta/optimizer.h"
#include "tests/common/meta/python_util.h"

namespace metatrain::meta {
namespace {

using ::testing::HasSubstr;

std::vector<ParamSpec> Specs() { return {{"w", {2, 3}, false}, {"b", {3}, true}}; }

TensorList Grad(double scale) {
  auto opts = at::TensorOptions().dtype(at::kDouble);
  return {at::arange(6, opts).reshape({2, 3}).mul(scale).sin(), at::full({3}, scale, opts)};
}

TEST(AggregationTest, MeanIsTaskOrderSumIndependentOfArrivalOrder) {
  const int64_t n = 5;
  TaskOrderAggregator forward(Specs(), n), backward(Specs(), n);
  for (int64_t t = 0; t < n; ++t) ASSERT_TRUE(forward.Add(t, Grad(0.1 + t)).ok());
  for (int64_t t = n - 1; t >= 0; --t) {
    EXPECT_FALSE(backward.complete());
    ASSERT_TRUE(backward.Add(t, Grad(0.1 + t)).ok());
  }
  ASSERT_TRUE(backward.complete());
  auto a = forward.Mean();
  auto b = backward.Mean();
  ASSERT_TRUE(a.ok() && b.ok());
  at::Tensor expected = Grad(0.1)[0].clone();
  for (int64_t t = 1; t < n; ++t) expected.add_(Grad(0.1 + t)[0]);
  expected.div_(n);
  EXPECT_TRUE(at::equal((*a)[0], expected));
  EXPECT_TRUE(at::equal((*a)[0], (*b)[0]));
  EXPECT_TRUE(at::equal((*a)[1], (*b)[1]));
  EXPECT_NEAR((*a)[1][0].item<double>(), 2.1, 1e-12);
}

TEST(AggregationTest, RejectsBadInput) {
  TaskOrderAggregator agg(Specs(), 2);
  EXPECT_EQ(agg.Add(2, Grad(1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(agg.Add(-1, Grad(1)).code(), absl::StatusCode::kInvalidArgument);
  TensorList wrong = Grad(1);
  wrong[0] = wrong[0].reshape({3, 2});
  absl::Status s = agg.Add(0, wrong);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("gradient of w has shape [3, 2], expected [2, 3]"));
  EXPECT_EQ(agg.Add(0, {Grad(1)[0]}).code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(agg.Add(0, Grad(1)).ok());
  EXPECT_EQ(agg.Add(0, Grad(2)).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(agg.Mean().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(agg.received(), 1);
}

// JobSpec.gradient_group_size: 5 tasks in groups of 2 are summed ((g0 + g1) + (g2 + g3)) + g4,
// then divided by 5; groups of one are the plain task-order sum.
TEST(AggregationTest, GroupSumsAddInGroupOrderAndDivideByTheTaskCount) {
  const int64_t n = 5;
  std::vector<TensorList> per_task;
  for (int64_t t = 0; t < n; ++t) per_task.push_back(Grad(0.37 + 1.3 * t));
  EXPECT_EQ(NumGroups(n, 2), 3);
  EXPECT_EQ(GroupTasks(2, 2, n), 1);
  EXPECT_EQ(GroupTasks(3, 2, n), 0);
  EXPECT_EQ(NumGroups(n, 1), n);

  std::vector<TensorList> groups = SumGroups(per_task, 2);
  ASSERT_EQ(groups.size(), 3u);
  TaskOrderAggregator grouped(Specs(), 3, n);
  for (int64_t g = 2; g >= 0; --g) ASSERT_TRUE(grouped.Add(g, groups[g]).ok());
  auto mean = grouped.Mean();
  ASSERT_TRUE(mean.ok()) << mean.status();
  for (size_t i = 0; i < 2; ++i) {
    at::Tensor g01 = per_task[0][i].clone().add_(per_task[1][i]);
    at::Tensor g23 = per_task[2][i].clone().add_(per_task[3][i]);
    at::Tensor expected = g01.add_(g23).add_(per_task[4][i]).div_(static_cast<double>(n));
    EXPECT_TRUE(at::equal((*mean)[i], expected)) << i;
  }

  TaskOrderAggregator single(Specs(), n);
  for (int64_t t = 0; t < n; ++t) ASSERT_TRUE(single.Add(t, SumGroups(per_task, 1)[t]).ok());
  auto plain = single.Mean();
  ASSERT_TRUE(plain.ok());
  at::Tensor expected = per_task[0][0].clone();
  for (int64_t t = 1; t < n; ++t) expected.add_(per_task[t][0]);
  EXPECT_TRUE(at::equal((*plain)[0], expected.div_(static_cast<double>(n))));
}

// A NaN or an infinity in any gradient makes the mean fail, naming the parameter.
TEST(AggregationTest, NonFiniteGradientFailsTheMean) {
  for (double bad : {static_cast<double>(NAN), static_cast<double>(INFINITY)}) {
    for (int64_t where = 0; where < 3; ++where) {
      TaskOrderAggregator agg(Specs(), 3);
      for (int64_t t = 0; t < 3; ++t) {
        TensorList g = Grad(1 + t);
        if (t == where) g[1][2] = bad;
        ASSERT_TRUE(agg.Add(t, g).ok());
      }
      auto mean = agg.Mean();
      EXPECT_EQ(mean.status().code(), absl::StatusCode::kInvalidArgument) << bad << " " << where;
      EXPECT_THAT(std::string(mean.status().message()),
                  HasSubstr("meta-gradient of b has non-finite values"));
    }
  }
}

TEST(AggregationTest, SplitPerTaskGivesViews) {
  TensorList per_task = {at::arange(12.).reshape({3, 4}), at::arange(3.)};
  auto split = SplitPerTask(per_task);
  ASSERT_EQ(split.size(), 3u);
  EXPECT_TRUE(at::equal(split[2][0], at::arange(8., 12.)));
  EXPECT_EQ(split[1][1].item<double>(), 1.0);
}

// SplitPerTask builds its rows without the dispatcher: each must be select(0, t) exactly
// (sizes, strides, offset into the same storage, contiguity), for any layout, and tensors
// in autograd still go through select.
TEST(AggregationTest, SplitPerTaskRowsAreWhatSelectGives) {
  const at::Tensor base = at::arange(2 * 3 * 5, at::kFloat).reshape({2, 3, 5});
  const TensorList per_task = {base, base.transpose(1, 2), base.narrow(2, 1, 3),
                               base.permute({1, 0, 2}), at::arange(4, at::kDouble)};
  for (const at::Tensor& p : per_task) {
    auto split = SplitPerTask({p});
    ASSERT_EQ(static_cast<int64_t>(split.size()), p.size(0));
    for (int64_t t = 0; t < p.size(0); ++t) {
      const at::Tensor row = split[t][0], want = p.select(0, t);
      EXPECT_EQ(row.sizes(), want.sizes());
      EXPECT_EQ(row.strides(), want.strides());
      EXPECT_EQ(row.data_ptr(), want.data_ptr());
      EXPECT_EQ(row.is_contiguous(), want.is_contiguous());
      EXPECT_EQ(row.scalar_type(), want.scalar_type());
      EXPECT_TRUE(at::equal(row, want));
      EXPECT_TRUE(at::equal(row.contiguous(), want.contiguous()));
    }
  }
  // A row shares its tensor's storage, which it keeps alive.
  at::Tensor row;
  {
    const at::Tensor p = at::arange(6.).reshape({2, 3});
    row = SplitPerTask({p})[1][0];
  }
  EXPECT_TRUE(at::equal(row, at::arange(3., 6.)));
  const at::Tensor leaf = at::ones({2, 2}).requires_grad_(true);
  EXPECT_TRUE(SplitPerTask({leaf})[0][0].requires_grad());
}

// SumInOrder adds contiguous float tensors in a loop of its own: the bits must be those of
// one at::add_ per addend, left to right, which it still uses for other layouts.
TEST(AggregationTest, SumInOrderHasTheBitsOfAddingLeftToRight) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    // Magnitudes 1e-6 to 1e6, so every addition rounds and any reordering shows; 5001
    // elements leave vector tails.
    at::manual_seed(11);
    const at::Tensor stacked =
        (at::randn({7, 5001}, at::kDouble) * at::pow(10.0, at::randint(-6, 7, {7, 5001})))
            .to(dtype);
    std::vector<TensorList> contiguous, strided;
    for (int64_t t = 0; t < 7; ++t) {
      contiguous.push_back({stacked[t]});
      strided.push_back({stacked.t().contiguous().t()[t]});  // a column: stride 7
    }
    at::Tensor expected = stacked[2].clone();
    for (int64_t t = 3; t < 6; ++t) expected.add_(stacked[t]);
    SCOPED_TRACE(c10::toString(dtype));
    EXPECT_TRUE(at::equal(SumInOrder(contiguous, 2, 6)[0], expected));
    EXPECT_TRUE(at::equal(SumInOrder(strided, 2, 6)[0], expected));
    EXPECT_TRUE(at::equal(SumInOrder(contiguous, 4, 5)[0], stacked[4]));
    EXPECT_FALSE(at::equal(SumInOrder(contiguous, 0, 7)[0],
                           SumInOrder({contiguous.rbegin(), contiguous.rend()}, 0, 7)[0]));
  }
}

// Runs `steps` updates with the given optimizer on fixed numbers, in C++ and in Python's
// torch.optim, and compares.
void CompareWithTorch(const std::string& cpp_kind, const std::string& python_ctor,
                      double momentum) {
  if (!metatrain::testing::PythonHasTorch()) {
    GTEST_SKIP() << "/usr/bin/python3 has no torch (install python3-torch) -- cannot compare";
  }
  v1::OptimizerSpec spec;
  spec.set_kind(cpp_kind);
  spec.set_lr(0.05);
  spec.set_beta1(0.9);
  spec.set_beta2(0.999);
  spec.set_epsilon(1e-8);
  spec.set_momentum(momentum);
  auto opt = MakeOuterOptimizer(spec, Specs());
  ASSERT_TRUE(opt.ok()) << opt.status();
  auto opts = at::TensorOptions().dtype(at::kDouble);
  TensorList params = {at::linspace(-1, 1, 6, opts).reshape({2, 3}), at::ones({3}, opts)};
  for (int step = 0; step < 4; ++step) (*opt)->Step(params, Grad(0.3 + step));

  std::ostringstream script;
  script << "import torch\n"
         << "torch.set_printoptions(precision=17)\n"
         << "w = torch.nn.Parameter(torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(2, 3))\n"
         << "b = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))\n"
         << "opt = " << python_ctor << "\n"
         << "for step in range(4):\n"
         << "    s = 0.3 + step\n"
         << "    w.grad = (torch.arange(6, dtype=torch.float64).reshape(2, 3) * s).sin()\n"
         << "    b.grad = torch.full((3,), s, dtype=torch.float64)\n"
         << "    opt.step()\n"
         << "print(' '.join(repr(v) for v in torch.cat([w.detach().flatten(), "
            "b.detach()]).tolist()))\n";
  int rc = 0;
  const std::string out = metatrain::testing::RunPython(script.str(), &rc);
  ASSERT_EQ(rc, 0) << out;
  std::istringstream in(out);
  const at::Tensor ours = at::cat({params[0].flatten(), params[1]});
  for (int64_t i = 0; i < ours.numel(); ++i) {
    double expected;
    ASSERT_TRUE(in >> expected) << out;
    EXPECT_NEAR(ours[i].item<double>(), expected, 1e-12) << "element " << i;
  }
}

TEST(OptimizerTest, AdamMatchesTorchOptim) {
  CompareWithTorch("adam", "torch.optim.Adam([w, b], lr=0.05, betas=(0.9, 0.999), eps=1e-8)", 0);
}

// Contiguous float tensors take Adam's one-pass loop; anything else (here gradients that
// are transposed views) ATen's operators. Both are the same update, to float rounding.
TEST(OptimizerTest, AdamsLoopAndItsOperatorPathAgree) {
  v1::OptimizerSpec spec;
  spec.set_kind("adam");
  spec.set_lr(0.05);
  spec.set_beta1(0.9);
  spec.set_beta2(0.999);
  spec.set_epsilon(1e-8);
  const std::vector<ParamSpec> specs = {{"w", {5, 3}, false}};
  auto loop = MakeOuterOptimizer(spec, specs), ops = MakeOuterOptimizer(spec, specs);
  ASSERT_TRUE(loop.ok() && ops.ok());
  TensorList a = {at::linspace(-1, 1, 15, at::kFloat).reshape({5, 3})};
  TensorList b = {a[0].clone()};
  for (int step = 0; step < 5; ++step) {
    const at::Tensor g = at::arange(15, at::kFloat).reshape({3, 5}).mul(0.3 + step).sin();
    (*loop)->Step(a, {g.t().contiguous()});
    (*ops)->Step(b, {g.t()});  // not contiguous
  }
  EXPECT_FALSE(at::equal(a[0], at::linspace(-1, 1, 15, at::kFloat).reshape({5, 3})));
  EXPECT_TRUE(at::allclose(a[0], b[0], 1e-6, 1e-6));
}

TEST(OptimizerTest, SgdMomentumMatchesTorchOptim) {
  CompareWithTorch("sgd", "torch.optim.SGD([w, b], lr=0.05, momentum=0.9)", 0.9);
}

TEST(OptimizerTest, PlainSgdIsGradientStep) {
  v1::OptimizerSpec spec;
  spec.set_kind("sgd");
  spec.set_lr(0.5);
  auto opt = MakeOuterOptimizer(spec, Specs());
  ASSERT_TRUE(opt.ok());
  TensorList params = {at::zeros({2, 3}, at::kDouble), at::zeros({3}, at::kDouble)};
  (*opt)->Step(params, Grad(2));
  EXPECT_TRUE(at::allclose(params[1], at::full({3}, -1.0, at::kDouble)));
}

TEST(OptimizerTest, AdamStateRoundTripContinuesIdentically) {
  v1::OptimizerSpec spec;
  spec.set_kind("adam");
  spec.set_lr(0.01);
  spec.set_beta1(0.9);
  spec.set_beta2(0.999);
  spec.set_epsilon(1e-8);
  auto a = MakeOuterOptimizer(spec, Specs());
  auto b = MakeOuterOptimizer(spec, Specs());
  TensorList pa = {at::ones({2, 3}, at::kDouble), at::ones({3}, at::kDouble)};
  for (int i = 0; i < 3; ++i) (*a)->Step(pa, Grad(i + 1.0));
  ASSERT_TRUE((*b)->LoadState((*a)->State()).ok());
  TensorList pb = {pa[0].clone(), pa[1].clone()};
  (*a)->Step(pa, Grad(7));
  (*b)->Step(pb, Grad(7));
  EXPECT_TRUE(at::equal(pa[0], pb[0]));
  EXPECT_TRUE(at::equal(pa[1], pb[1]));
  auto state = (*a)->State();
  state["adam.exp_avg.w"] = at::zeros({5});
  absl::Status s = (*b)->LoadState(state);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("adam.exp_avg.w"));
}

TEST(OptimizerTest, ClipGradNormMatchesDefinition) {
  TensorList grads = {at::full({2, 2}, 3.0, at::kDouble), at::full({1}, 4.0, at::kDouble)};
  // ||g|| = sqrt(4 * 9 + 16) = sqrt(52)
  const double norm = ClipGradNorm(grads, 1.0);
  EXPECT_NEAR(norm, std::sqrt(52.0), 1e-12);
  const double coef = 1.0 / (std::sqrt(52.0) + 1e-6);
  EXPECT_NEAR(grads[0][0][0].item<double>(), 3.0 * coef, 1e-12);
  EXPECT_NEAR(grads[1][0].item<double>(), 4.0 * coef, 1e-12);
  TensorList small = {at::full({1}, 0.5, at::kDouble)};
  ClipGradNorm(small, 1.0);
  EXPECT_EQ(small[0].item<double>(), 0.5);
}

TEST(ScheduleTest, PlateauReducesAfterPatienceLikeReduceLROnPlateau) {
  PlateauSchedule plateau(0.5, 2, 0.01);
  double lr = 0.1;
  lr = plateau.Observe(1.0, lr);  // best
  EXPECT_EQ(lr, 0.1);
  lr = plateau.Observe(0.99995, lr);  // not better by 1e-4 relative: bad 1
  lr = plateau.Observe(1.0, lr);      // bad 2
  EXPECT_EQ(lr, 0.1);
  lr = plateau.Observe(1.0, lr);  // bad 3 > patience: reduce
  EXPECT_DOUBLE_EQ(lr, 0.05);
  lr = plateau.Observe(0.5, lr);  // improvement resets
  for (int i = 0; i < 3; ++i) lr = plateau.Observe(0.6, lr);
  EXPECT_DOUBLE_EQ(lr, 0.025);
  for (int i = 0; i < 12; ++i) lr = plateau.Observe(0.6, lr);
  EXPECT_DOUBLE_EQ(lr, 0.01);  // floored at min_lr
}

TEST(ScheduleTest, EarlyStoppingCountsEvaluationsWithoutImprovement) {
  EarlyStopping stop(2);
  EXPECT_TRUE(stop.Observe(3.0));
  EXPECT_TRUE(stop.Observe(2.0));
  EXPECT_FALSE(stop.Observe(2.5));
  EXPECT_FALSE(stop.should_stop());
  EXPECT_FALSE(stop.Observe(2.0));
  EXPECT_TRUE(stop.should_stop());
  EXPECT_EQ(stop.best(), 2.0);
  EarlyStopping never(0);
  for (int i = 0; i < 10; ++i) never.Observe(5.0);
  EXPECT_FALSE(never.should_stop());
}

}  // namespace
}  // namespace metatrain::meta
