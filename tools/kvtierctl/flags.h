// Flags shared by the kvtierctl subcommands, and the client they configure.
#ifndef KVTIER_TOOLS_KVTIERCTL_FLAGS_H_
#define KVTIER_TOOLS_KVTIERCTL_FLAGS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "kvtier/client.h"

ABSL_DECLARE_FLAG(std::string, server);
ABSL_DECLARE_FLAG(double, deadline_seconds);
ABSL_DECLARE_FLAG(std::string, tenant);
ABSL_DECLARE_FLAG(int64_t, rows);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(int32_t, tokens);
ABSL_DECLARE_FLAG(int32_t, layers_per_call);
ABSL_DECLARE_FLAG(int32_t, runs);
ABSL_DECLARE_FLAG(std::vector<std::string>, budgets);
ABSL_DECLARE_FLAG(std::vector<std::string>, modes);
ABSL_DECLARE_FLAG(std::string, csv);

namespace kvtier::ctl {

// A client for --server with --deadline_seconds as the default deadline.
absl::StatusOr<std::unique_ptr<Client>> ConnectFromFlags();

}  // namespace kvtier::ctl

#endif  // KVTIER_TOOLS_KVTIERCTL_FLAGS_H_
