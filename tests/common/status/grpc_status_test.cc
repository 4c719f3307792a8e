// The converters at the RPC edge: every canonical code maps to its namesake, both ways, and
// the message survives. The expected pairs are spelled out rather than cast, so a converter
// that casts between mismatched enums, or overwrites the code (as a later copy of
// TensorFlow's did), fails here.

#include "common/status/grpc_status.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace metatrain {
namespace {

struct CodePair {
  absl::StatusCode absl_code;
  grpc::StatusCode grpc_code;
};

const std::vector<CodePair>& ErrorCodes() {
  static const std::vector<CodePair> pairs = {
      {absl::StatusCode::kCancelled, grpc::StatusCode::CANCELLED},
      {absl::StatusCode::kUnknown, grpc::StatusCode::UNKNOWN},
      {absl::StatusCode::kInvalidArgument, grpc::StatusCode::INVALID_ARGUMENT},
      {absl::StatusCode::kDeadlineExceeded, grpc::StatusCode::DEADLINE_EXCEEDED},
      {absl::StatusCode::kNotFound, grpc::StatusCode::NOT_FOUND},
      {absl::StatusCode::kAlreadyExists, grpc::StatusCode::ALREADY_EXISTS},
      {absl::StatusCode::kPermissionDenied, grpc::StatusCode::PERMISSION_DENIED},
      {absl::StatusCode::kResourceExhausted, grpc::StatusCode::RESOURCE_EXHAUSTED},
      {absl::StatusCode::kFailedPrecondition, grpc::StatusCode::FAILED_PRECONDITION},
      {absl::StatusCode::kAborted, grpc::StatusCode::ABORTED},
      {absl::StatusCode::kOutOfRange, grpc::StatusCode::OUT_OF_RANGE},
      {absl::StatusCode::kUnimplemented, grpc::StatusCode::UNIMPLEMENTED},
      {absl::StatusCode::kInternal, grpc::StatusCode::INTERNAL},
      {absl::StatusCode::kUnavailable, grpc::StatusCode::UNAVAILABLE},
      {absl::StatusCode::kDataLoss, grpc::StatusCode::DATA_LOSS},
      {absl::StatusCode::kUnauthenticated, grpc::StatusCode::UNAUTHENTICATED},
  };
  return pairs;
}

TEST(GrpcStatusTest, TheTableCoversEveryCanonicalErrorCode) {
  // absl and gRPC both have the 16 canonical error codes, 1 to 16, besides OK.
  ASSERT_EQ(ErrorCodes().size(), 16u);
  std::vector<bool> seen(17, false);
  for (const CodePair& pair : ErrorCodes()) {
    const int code = static_cast<int>(pair.absl_code);
    ASSERT_GE(code, 1);
    ASSERT_LE(code, 16);
    EXPECT_FALSE(seen[code]) << absl::StatusCodeToString(pair.absl_code) << " twice";
    seen[code] = true;
  }
}

TEST(GrpcStatusTest, EveryErrorCodeAndItsMessageGoToGrpc) {
  for (const CodePair& pair : ErrorCodes()) {
    const std::string name = absl::StatusCodeToString(pair.absl_code);
    const std::string message = "tasks.shots must be > 0 (got -1) [" + name + "]";
    const grpc::Status converted = ToGrpcStatus(absl::Status(pair.absl_code, message));
    EXPECT_FALSE(converted.ok()) << name;
    EXPECT_EQ(converted.error_code(), pair.grpc_code) << name;
    EXPECT_EQ(converted.error_message(), message) << name;
  }
}

TEST(GrpcStatusTest, EveryErrorCodeAndItsMessageComeFromGrpc) {
  for (const CodePair& pair : ErrorCodes()) {
    const std::string name = absl::StatusCodeToString(pair.absl_code);
    const std::string message = "worker-3 left during assignment 17 [" + name + "]";
    const absl::Status converted = FromGrpcStatus(grpc::Status(pair.grpc_code, message));
    EXPECT_FALSE(converted.ok()) << name;
    EXPECT_EQ(converted.code(), pair.absl_code) << name;
    EXPECT_EQ(converted.message(), message) << name;
  }
}

TEST(GrpcStatusTest, RoundTripsKeepCodeAndMessageExactly) {
  // Bytes a message may carry unchanged: a path, non-ASCII text, an embedded NUL.
  static constexpr char kBytes[] = "no Omniglot in /data/\xc3\xa9t\xc3\xa9 \0 end";
  const std::string message(kBytes, sizeof(kBytes) - 1);
  for (const CodePair& pair : ErrorCodes()) {
    const absl::Status original(pair.absl_code, message);
    EXPECT_EQ(FromGrpcStatus(ToGrpcStatus(original)), original)
        << absl::StatusCodeToString(pair.absl_code);
    const grpc::Status wire(pair.grpc_code, message);
    const grpc::Status back = ToGrpcStatus(FromGrpcStatus(wire));
    EXPECT_EQ(back.error_code(), wire.error_code()) << absl::StatusCodeToString(pair.absl_code);
    EXPECT_EQ(back.error_message(), wire.error_message())
        << absl::StatusCodeToString(pair.absl_code);
  }
}

TEST(GrpcStatusTest, OkIsOkBothWays) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(ToGrpcStatus(absl::OkStatus()).error_code(), grpc::StatusCode::OK);
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).error_message().empty());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
  EXPECT_EQ(FromGrpcStatus(grpc::Status::OK), absl::OkStatus());
  // An empty message is still an error.
  const absl::Status bare = FromGrpcStatus(grpc::Status(grpc::StatusCode::ABORTED, ""));
  EXPECT_EQ(bare.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ToGrpcStatus(absl::AbortedError("")).error_code(), grpc::StatusCode::ABORTED);
}

}  // namespace
}  // namespace metatrain
