#include "tools/kvtierctl/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, server, "unix://kvtier-data/kvtierd.sock",
          "Daemon address: unix:///abs/path.sock, unix://rel/path.sock or host:port");
ABSL_FLAG(double, deadline_seconds, 300, "Deadline of each RPC in seconds");
ABSL_FLAG(std::string, tenant, "", "sessions: only this tenant's sessions");
ABSL_FLAG(int64_t, rows, 32768, "demo, bench, tier-bench: evicted rows to offload");
ABSL_FLAG(uint64_t, seed, 1,
          "demo, bench, tier-bench: seed of the synthetic rows, signal and bursts");
ABSL_FLAG(int32_t, tokens, 0, "demo, bench: signal tokens T (0: 16 for demo, 64 for bench)");
ABSL_FLAG(int32_t, layers_per_call, 4, "demo: layers per Offload call (as an engine saves them)");
ABSL_FLAG(int32_t, runs, 20,
          "bench: measured repairs per budget and return mode; tier-bench: promoted bursts before "
          "and after BeginPause");
ABSL_FLAG(std::vector<std::string>, budgets, std::vector<std::string>({"96", "5000"}),
          "bench: repair budgets K, comma-separated");
ABSL_FLAG(std::vector<std::string>, modes, std::vector<std::string>({"payload", "positions"}),
          "bench: return modes, comma-separated (payload, positions)");
ABSL_FLAG(std::string, csv, "",
          "bench: write one line per measured repair to this file; tier-bench: append one line per "
          "timed call");

namespace kvtier::ctl {

absl::StatusOr<std::unique_ptr<Client>> ConnectFromFlags() {
  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  options.default_deadline = absl::Seconds(absl::GetFlag(FLAGS_deadline_seconds));
  return Client::Connect(options);
}

}  // namespace kvtier::ctl
