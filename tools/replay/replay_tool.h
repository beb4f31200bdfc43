// kvtier-replay's work apart from flag parsing: resolve the scenario, tiers and policy,
// load the trace, replay it and format the outputs. Kept out of main.cc so that tests
// can check every error path in-process.
#ifndef KVTIER_TOOLS_REPLAY_REPLAY_TOOL_H_
#define KVTIER_TOOLS_REPLAY_REPLAY_TOOL_H_

#include <string>

#include "absl/status/statusor.h"
#include "storage/policy/placement_policy.h"

namespace kvtier::replay {

struct ReplayRequest {
  std::string trace_path;
  // A built-in scenario name; may be empty when `tiers` or `tiers_file` is given.
  std::string scenario;
  std::string policy;
  // "key=value[,key=value]" overrides of the policy's defaults.
  std::string policy_params;
  // Custom tiers "name:capacity:read_ms:write_ms:bandwidth[,...]" (fastest first), or a
  // JSON file holding [[name, capacity, read_ms, write_ms, bandwidth], ...]. Either
  // replaces the scenario's tiers.
  std::string tiers;
  std::string tiers_file;
  // "auto" (the scenario's setting; off for custom tiers without a scenario), "on", "off".
  std::string prefetch = "auto";
  // "json" or "csv".
  std::string format = "json";
  // Whether to produce the per-event log.
  bool want_events = false;
};

struct ReplayOutput {
  std::string report;  // the JSON object, or the CSV header and row; ends in '\n'
  std::string events;  // the JSON-lines event log when requested
};

// Parses "key=value,key=value" into policy parameters; INVALID_ARGUMENT when malformed.
absl::StatusOr<policy::PolicyParams> ParsePolicyParams(const std::string& text);

// Runs one replay. INVALID_ARGUMENT names the flag or trace field at fault (unknown
// policy, scenario, format or parameter; malformed trace or tiers); NOT_FOUND for a
// missing file; RESOURCE_EXHAUSTED when a page is larger than a tier.
absl::StatusOr<ReplayOutput> RunReplayRequest(const ReplayRequest& request);

}  // namespace kvtier::replay

#endif  // KVTIER_TOOLS_REPLAY_REPLAY_TOOL_H_
