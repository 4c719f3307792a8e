#include "common/meta/batched_matmul.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <array>
#include <functional>
#include <string>
#include <vector>

#include "common/meta/rng.h"
#include "tests/common/meta/meta_test_util.h"

namespace metatrain::meta::internal {
namespace {

using testing::RandomNormal;

// Operands in every layout the models hand over: contiguous, transposed views, a slice
// with a leading dimension larger than its width, a broadcast (stride 0) batch, and
// degenerate sizes.
struct Layout {
  std::string name;
  std::function<at::Tensor(const at::Tensor&)> make;  // from a contiguous [T, R, C]
};

std::vector<Layout> Layouts() {
  return {
      {"contiguous", [](const at::Tensor& x) { return x; }},
      {"transposed",
       [](const at::Tensor& x) { return x.transpose(1, 2).contiguous().transpose(1, 2); }},
      {"padded rows",
       [](const at::Tensor& x) {
         return at::cat({x, at::zeros_like(x)}, 2).narrow(2, 0, x.size(2));
       }},
      {"every other column",
       [](const at::Tensor& x) {
         return at::repeat_interleave(x, 2, 2).slice(2, 0, c10::nullopt, 2);
       }},
      {"one matrix broadcast", [](const at::Tensor& x) { return x[0].unsqueeze(0).expand_as(x); }},
  };
}

TEST(BatchedMatmulTest, EqualsBmmInEveryLayoutAndDtype) {
  Rng rng(5);
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    for (const auto& [t, m, k, n] : std::vector<std::array<int64_t, 4>>{
             {3, 7, 5, 4}, {2, 1, 6, 3}, {2, 5, 1, 4}, {2, 4, 6, 1}, {1, 10, 41, 40}}) {
      const at::Tensor a0 = RandomNormal(rng, {t, m, k}, dtype);
      const at::Tensor b0 = RandomNormal(rng, {t, k, n}, dtype);
      for (const Layout& la : Layouts()) {
        for (const Layout& lb : Layouts()) {
          const at::Tensor a = la.make(a0), b = lb.make(b0);
          SCOPED_TRACE(::testing::Message()
                       << c10::toString(dtype) << " [" << t << ", " << m << ", " << k << ", " << n
                       << "] a " << la.name << ", b " << lb.name);
          const at::Tensor out = BatchedMatmul(a, b);
          ASSERT_EQ(out.sizes(), (at::IntArrayRef{t, m, n}));
          const double tolerance = dtype == at::kFloat ? 1e-5 : 1e-12;
          EXPECT_TRUE(at::allclose(out, at::bmm(a, b), tolerance, tolerance));
        }
      }
    }
  }
}

TEST(BatchedMatmulTest, EmptyAndZeroInnerDimension) {
  EXPECT_EQ(BatchedMatmul(at::ones({0, 2, 3}), at::ones({0, 3, 4})).sizes(),
            (at::IntArrayRef{0, 2, 4}));
  const at::Tensor zero_k = BatchedMatmul(at::ones({2, 3, 0}), at::ones({2, 0, 4}));
  EXPECT_TRUE(at::equal(zero_k, at::zeros({2, 3, 4})));
}

TEST(BatchedMatmulTest, ShapeErrorsAndOtherDtypesGoToATen) {
  EXPECT_THROW(BatchedMatmul(at::ones({2, 3, 4}), at::ones({2, 5, 4})), c10::Error);
  const at::Tensor a = at::ones({2, 3, 4}, at::kLong), b = at::ones({2, 4, 5}, at::kLong);
  EXPECT_TRUE(at::equal(BatchedMatmul(a, b), at::bmm(a, b)));
}

// A task's product has the same bits alone as inside any batch (NOTE [Task independence
// is bitwise], batched_ops.h).
TEST(BatchedMatmulTest, TaskResultDoesNotDependOnTheBatch) {
  Rng rng(6);
  const at::Tensor a = RandomNormal(rng, {9, 13, 37}, at::kFloat);
  const at::Tensor b = RandomNormal(rng, {9, 37, 29}, at::kFloat);
  // b stored column-major, so the GEMMs take the transposed path; the same layout alone
  // and in the batch (the layout selects the BLAS kernel, and kernels differ in rounding).
  const at::Tensor b_columns = b.transpose(1, 2).contiguous().transpose(1, 2);
  const at::Tensor all = BatchedMatmul(a, b_columns);
  for (int64_t t = 0; t < 9; ++t) {
    const at::Tensor alone = BatchedMatmul(a.narrow(0, t, 1), b_columns.narrow(0, t, 1));
    EXPECT_TRUE(at::equal(alone[0], all[t])) << "task " << t;
  }
}

// What MAML needs: a loss, the squared norm of its gradient, and that one's gradient,
// equal to the same computed through at::bmm.
TEST(BatchedMatmulTest, FirstAndSecondOrderGradientsEqualBmms) {
  Rng rng(7);
  const at::Tensor weights = RandomNormal(rng, {3, 4, 6}, at::kDouble);
  auto run = [&](auto product) {
    Rng draw(8);
    at::Tensor a = RandomNormal(draw, {3, 4, 5}, at::kDouble).requires_grad_(true);
    at::Tensor b = RandomNormal(draw, {3, 6, 5}, at::kDouble).requires_grad_(true);
    at::Tensor y = product(a, b.transpose(1, 2));
    at::Tensor loss = (y * y * weights).sum();
    auto first = torch::autograd::grad({loss}, {a, b}, {}, true, true);
    at::Tensor norm = first[0].pow(2).sum() + first[1].pow(2).sum();
    auto second = torch::autograd::grad({norm}, {a, b});
    return std::vector<at::Tensor>{y.detach(), first[0].detach(), first[1].detach(), second[0],
                                   second[1]};
  };
  const auto ours =
      run([](const at::Tensor& a, const at::Tensor& b) { return BatchedMatmul(a, b); });
  const auto reference =
      run([](const at::Tensor& a, const at::Tensor& b) { return at::bmm(a, b); });
  for (size_t i = 0; i < ours.size(); ++i) {
    EXPECT_TRUE(at::allclose(ours[i], reference[i], 1e-12, 1e-12)) << "tensor " << i;
  }
}

}  // namespace
}  // namespace metatrain::meta::internal
