#ifndef METATRAIN_COMMON_STATUS_GRPC_STATUS_H_
#define METATRAIN_COMMON_STATUS_GRPC_STATUS_H_

// Converters between absl::Status and grpc::Status; the codes share numbering, and the
// message is carried unchanged. Used only at the RPC edge.

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace metatrain {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace metatrain

#endif  // METATRAIN_COMMON_STATUS_GRPC_STATUS_H_
