#include "common/meta/params.h"

#include <gtest/gtest.h>

#include <limits>

namespace metatrain::meta {
namespace {

// Every position of a block matters: the check runs in blocks of 4096 elements.
TEST(AllFiniteTest, FindsEveryNonFiniteValueAnywhere) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kHalf}) {
    const at::Tensor clean = at::randn({3, 4099}).to(dtype);
    EXPECT_TRUE(AllFinite(clean)) << dtype;
    for (double bad :
         {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
          -std::numeric_limits<double>::infinity()}) {
      for (int64_t position : {int64_t{0}, int64_t{4095}, int64_t{4096}, int64_t{12296}}) {
        at::Tensor t = clean.clone();
        t.view({-1})[position] = bad;
        EXPECT_FALSE(AllFinite(t)) << dtype << " " << bad << " at " << position;
      }
    }
  }
}

TEST(AllFiniteTest, LargestFiniteValuesAreFinite) {
  at::Tensor f = at::full({5}, std::numeric_limits<float>::max(), at::kFloat);
  f[1] = -std::numeric_limits<float>::max();
  f[2] = std::numeric_limits<float>::denorm_min();
  EXPECT_TRUE(AllFinite(f));
  at::Tensor d = at::full({5}, std::numeric_limits<double>::max(), at::kDouble);
  d[3] = -0.0;
  EXPECT_TRUE(AllFinite(d));
}

TEST(AllFiniteTest, NonContiguousEmptyAndIntegerTensors) {
  at::Tensor t = at::randn({64, 64});
  t[5][7] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(AllFinite(t.t()));             // transposed view
  EXPECT_FALSE(AllFinite(t.slice(1, 7, 8)));  // strided column holding the inf
  EXPECT_TRUE(AllFinite(t.slice(1, 0, 7)));   // columns without it
  EXPECT_TRUE(AllFinite(at::empty({0}, at::kFloat)));
  EXPECT_TRUE(AllFinite(at::zeros({4}, at::kLong)));
}

}  // namespace
}  // namespace metatrain::meta
