// The one place where gRPC statuses become absl::Status.
#ifndef KVTIER_CLIENT_SRC_STATUS_CONVERT_H_
#define KVTIER_CLIENT_SRC_STATUS_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace kvtier::client_internal {

// Same code (the numeric values of grpc::StatusCode and absl::StatusCode agree) and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace kvtier::client_internal

#endif  // KVTIER_CLIENT_SRC_STATUS_CONVERT_H_
