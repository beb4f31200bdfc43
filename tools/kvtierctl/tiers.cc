// kvtierctl tiers: each tier's bytes, capacity, use and segments.
#include <cstdio>

#include "absl/flags/flag.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/output.h"

namespace kvtier::ctl {

int RunTiers(const std::vector<std::string>& args) {
  if (!args.empty()) return UsageFailure("tiers", "takes no arguments", "kvtierctl tiers [--json]");
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags(kOperatorDeadline);
  if (!client.ok()) return RpcFailure("tiers", client.status());
  absl::StatusOr<v1::StatsResponse> stats = (*client)->Stats();
  if (!stats.ok()) return RpcFailure("tiers", stats.status());
  const TierReport report = TierUseOf(*stats);
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(report);
  } else {
    std::printf("%s", TierTable(report.tiers()).c_str());
  }
  return 0;
}

}  // namespace kvtier::ctl
