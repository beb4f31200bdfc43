// kvtier-replay: replays a page-access trace through a four-tier cost model with a chosen
// placement policy and prints the metrics (docs/REPLAY.md).
//
//   kvtier-replay --trace FILE --scenario NAME --policy NAME [--format json|csv]
//                 [--events FILE] [--policy_params k=v,...] [--tiers SPEC | --tiers_file F]
//                 [--prefetch auto|on|off]
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_join.h"
#include "storage/policy/placement_policy.h"
#include "tools/replay/replay_tool.h"

ABSL_FLAG(std::string, trace, "", "Trace file (JSON: workload, quant, pages, accesses).");
ABSL_FLAG(std::string, scenario, "",
          "Built-in scenario: small_fp16_prefetch, small_fp16_no_prefetch, "
          "small_int4_no_prefetch, base_fp8_prefetch, constrained_fp16_prefetch, "
          "ablation_medium_fp16_no_prefetch, ablation_constrained_fp16_no_prefetch.");
ABSL_FLAG(std::string, policy, "",
          "Placement policy: lru, windowed_recency, heavy_hitter, cost_aware, predictive, "
          "regret_aware.");
ABSL_FLAG(std::string, format, "json", "Output format: json or csv.");
ABSL_FLAG(std::string, events, "", "If set, write the per-event log (JSON lines) here.");
ABSL_FLAG(std::string, policy_params, "",
          "Policy parameter overrides, e.g. regret_horizon=8,regret_weight=12.");
ABSL_FLAG(std::string, tiers, "",
          "Custom tiers, fastest first: name:capacity_bytes:read_ms:write_ms:bandwidth,...");
ABSL_FLAG(std::string, tiers_file, "",
          "Custom tiers from a JSON file: [[name, capacity_bytes, read_ms, write_ms, "
          "bandwidth_bytes_per_ms], ...].");
ABSL_FLAG(std::string, prefetch, "auto", "Prefetching: auto (the scenario's), on or off.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "replays a KV page-access trace through a four-tier cost model.\n"
      "  kvtier-replay --trace FILE --scenario NAME --policy NAME [--format json|csv] "
      "[--events FILE]");
  const std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::cerr << "kvtier-replay: unexpected argument '" << positional[1] << "'\n";
    return 2;
  }
  kvtier::replay::ReplayRequest request;
  request.trace_path = absl::GetFlag(FLAGS_trace);
  request.scenario = absl::GetFlag(FLAGS_scenario);
  request.policy = absl::GetFlag(FLAGS_policy);
  request.policy_params = absl::GetFlag(FLAGS_policy_params);
  request.tiers = absl::GetFlag(FLAGS_tiers);
  request.tiers_file = absl::GetFlag(FLAGS_tiers_file);
  request.prefetch = absl::GetFlag(FLAGS_prefetch);
  request.format = absl::GetFlag(FLAGS_format);
  const std::string events_path = absl::GetFlag(FLAGS_events);
  request.want_events = !events_path.empty();

  absl::StatusOr<kvtier::replay::ReplayOutput> out = kvtier::replay::RunReplayRequest(request);
  if (!out.ok()) {
    std::cerr << "kvtier-replay: " << out.status().message() << "\n";
    return 2;
  }
  if (request.want_events) {
    std::ofstream file(events_path, std::ios::binary | std::ios::trunc);
    file << out->events;
    file.close();
    if (!file) {
      std::cerr << "kvtier-replay: cannot write events to " << events_path << "\n";
      return 1;
    }
  }
  std::cout << out->report;
  std::cout.flush();
  return std::cout ? 0 : 1;
}
