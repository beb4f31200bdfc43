// kvtierctl: operator CLI for kvtierd. `kvtierctl <command> [flags] [args]`.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/kvtierctl/commands.h"

namespace {

constexpr char kUsage[] =
    "kvtierctl <command> [--server=ADDR] [flags] [args]\n"
    "commands:\n"
    "  health                 grpc.health.v1 check\n"
    "  sessions               list sessions (--tenant)\n"
    "  stats                  tier occupancy and counters\n"
    "  demo                   agent pause end to end: offload, repair, check the needle\n"
    "                         (--rows, --seed, --tokens, --layers_per_call)\n"
    "  repair-case CASE_DIR   play one golden case; prints {\"chosen\": [...], ...}\n"
    "  bench                  repair latency through gRPC (--rows, --budgets, --runs,\n"
    "                         --tokens, --modes, --csv)\n"
    "  tier-bench             offload, promote and BeginPause timings of the tiers\n"
    "                         (--rows, --runs, --seed, --csv); one Markdown table row\n"
    "ADDR: unix:///abs/path.sock, unix://rel/path.sock or host:port "
    "(default unix://kvtier-data/kvtierd.sock)\n"
    "Every flag: kvtierctl --helpfull";

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string command = positional[1];
  const std::vector<std::string> args(positional.begin() + 2, positional.end());
  if (command == "health") return kvtier::ctl::RunHealth(args);
  if (command == "sessions") return kvtier::ctl::RunSessions(args);
  if (command == "stats") return kvtier::ctl::RunStats(args);
  if (command == "demo") return kvtier::ctl::RunDemo(args);
  if (command == "repair-case") return kvtier::ctl::RunRepairCase(args);
  if (command == "bench") return kvtier::ctl::RunBench(args);
  if (command == "tier-bench") return kvtier::ctl::RunTierBench(args);
  std::fprintf(stderr, "kvtierctl: unknown command \"%s\"\n%s\n", command.c_str(), kUsage);
  return 2;
}
