// CatchTorch at the LibTorch boundary: exceptions become statuses with the context first,
// and running out of memory is RESOURCE_EXHAUSTED whatever code the caller chose, so a
// job that runs out of memory says so instead of reporting an internal error.

#include "common/status/torch_status.h"

#include <c10/util/Exception.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <new>
#include <stdexcept>

namespace metatrain {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(CatchTorchTest, OutOfMemoryIsResourceExhausted) {
  absl::Status status = CatchTorch("step", []() -> absl::Status {
    TORCH_CHECK_WITH(OutOfMemoryError, false, "CUDA out of memory");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("step: CUDA out of memory"));
  EXPECT_THAT(status.message(), Not(HasSubstr("\n")));

  absl::StatusOr<int> value = CatchTorch(
      "alloc", []() -> int { throw std::bad_alloc(); }, absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(value.status().code(), absl::StatusCode::kResourceExhausted);

  absl::Status void_fn = CatchTorch("v", [] { throw std::bad_alloc(); });
  EXPECT_EQ(void_fn.code(), absl::StatusCode::kResourceExhausted);
}

TEST(CatchTorchTest, OtherExceptionsTakeTheGivenCode) {
  absl::Status status = CatchTorch(
      "load", []() -> absl::Status { TORCH_CHECK(false, "shape mismatch"); },
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("load: shape mismatch"));
  EXPECT_EQ(CatchTorch("x", []() -> absl::Status { throw std::runtime_error("boom"); }).code(),
            absl::StatusCode::kInternal);
  EXPECT_TRUE(CatchTorch("ok", [] { return absl::OkStatus(); }).ok());
}

}  // namespace
}  // namespace metatrain
