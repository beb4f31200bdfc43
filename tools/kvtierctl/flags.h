// Flags shared by the kvtierctl subcommands, and the client they configure.
#ifndef KVTIER_TOOLS_KVTIERCTL_FLAGS_H_
#define KVTIER_TOOLS_KVTIERCTL_FLAGS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
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
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(double, interval);
ABSL_DECLARE_FLAG(int64_t, count);
ABSL_DECLARE_FLAG(int32_t, top);

namespace kvtier::ctl {

// Deadline of each RPC when --deadline_seconds is 0: the operator commands (health, sessions,
// tiers, stats, watch) fail fast, the workloads (demo, bench, ...) get long calls.
inline constexpr absl::Duration kOperatorDeadline = absl::Seconds(10);
inline constexpr absl::Duration kWorkloadDeadline = absl::Seconds(300);

// A client for --server with --deadline_seconds as the default deadline of its calls, or
// `default_deadline` when that flag is 0. With `retry` false each call is made once: for
// calls whose retry after a lost reply would report the wrong outcome (sessions drop).
absl::StatusOr<std::unique_ptr<Client>> ConnectFromFlags(
    absl::Duration default_deadline = kWorkloadDeadline, bool retry = true);

// Checks the flags of a command line before absl::ParseCommandLine sees it (which exits 1 on
// an unknown flag or a bad value, where kvtierctl exits 2 on usage errors). Returns
// INVALID_ARGUMENT naming the first unknown flag or the first value that does not parse.
// Stops at "--", as the parser does.
absl::Status CheckCommandLine(int argc, char** argv);

// Checks the values of the shared flags after parsing (so values from --flagfile too):
// INVALID_ARGUMENT when --deadline_seconds is negative or not finite.
absl::Status CheckFlagValues();

}  // namespace kvtier::ctl

#endif  // KVTIER_TOOLS_KVTIERCTL_FLAGS_H_
