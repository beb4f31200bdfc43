// The one place where absl::Status becomes grpc::Status (STYLE.md: errors).
#ifndef KVTIER_SERVER_STATUS_UTIL_H_
#define KVTIER_SERVER_STATUS_UTIL_H_

#include <grpcpp/support/status.h>

#include <string>

#include "absl/status/status.h"

namespace kvtier::server {

// Same code, same message.
inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// Canonical upper-case name of a gRPC code ("OK", "NOT_FOUND", ...), used as a metric label.
const char* StatusCodeName(grpc::StatusCode code);

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_STATUS_UTIL_H_
