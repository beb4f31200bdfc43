// kvtierctl stats: server-wide occupancy and counters.
#include <cstdio>

#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"

namespace kvtier::ctl {

int RunStats(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "kvtierctl stats: takes no arguments\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags();
  if (!client.ok()) {
    std::fprintf(stderr, "kvtierctl stats: %s\n", client.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<v1::StatsResponse> stats = (*client)->Stats();
  if (!stats.ok()) {
    std::fprintf(stderr, "kvtierctl stats: %s\n", stats.status().ToString().c_str());
    return 1;
  }
  std::printf("version         %s\n", stats->version().c_str());
  std::printf("scorer          %s\n", stats->scorer().c_str());
  std::printf("uptime          %.1f s\n", stats->uptime_seconds());
  std::printf("sessions        %lld\n", static_cast<long long>(stats->sessions()));
  std::printf("rows            %lld\n", static_cast<long long>(stats->rows()));
  std::printf("repairs         %llu\n", static_cast<unsigned long long>(stats->repairs()));
  std::printf("offloaded rows  %llu\n", static_cast<unsigned long long>(stats->offloaded_rows()));
  std::printf("%-8s %16s %16s %6s %10s\n", "TIER", "BYTES", "CAPACITY", "USED", "SEGMENTS");
  for (const v1::TierStats& t : stats->tiers()) {
    const double used = t.capacity_bytes() > 0 ? 100.0 * static_cast<double>(t.bytes()) /
                                                     static_cast<double>(t.capacity_bytes())
                                               : 0.0;
    std::printf("%-8s %16llu %16llu %5.1f%% %10lld\n", t.name().c_str(),
                static_cast<unsigned long long>(t.bytes()),
                static_cast<unsigned long long>(t.capacity_bytes()), used,
                static_cast<long long>(t.segments()));
  }
  return 0;
}

}  // namespace kvtier::ctl
