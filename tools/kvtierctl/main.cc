// kvtierctl: operator CLI for kvtierd. `kvtierctl <command> [flags] [args]`.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"

namespace {

constexpr char kUsage[] =
    "kvtierctl <command> [--server=ADDR] [flags] [args]\n"
    "commands:\n"
    "  health                 grpc.health.v1 check\n"
    "  sessions [list]        list sessions (--tenant)\n"
    "  sessions show ID       one session in full\n"
    "  sessions drop ID       release a whole session (asks nothing); prints what was freed\n"
    "  tiers                  each tier: bytes, capacity, use, segments\n"
    "  stats                  every field of the daemon's Stats\n"
    "  watch                  live view of tiers, sessions, repairs/s and offload rows/s\n"
    "                         (--interval, --count, --tenant, --top)\n"
    "  health, sessions, tiers, stats and watch take --json: protobuf JSON, one object a line\n"
    "  demo                   agent pause end to end: offload, repair, check the needle\n"
    "                         (--rows, --seed, --tokens, --layers_per_call)\n"
    "  repair-case CASE_DIR   play one golden case; prints {\"chosen\": [...], ...}\n"
    "  bench                  repair latency through gRPC (--rows, --budgets, --runs,\n"
    "                         --tokens, --modes, --csv)\n"
    "  tier-bench             offload, promote and BeginPause timings of the tiers\n"
    "                         (--rows, --runs, --seed, --csv); one Markdown table row\n"
    "ADDR: unix:///abs/path.sock, unix://rel/path.sock or host:port "
    "(default unix://kvtier-data/kvtierd.sock)\n"
    "Exit status: 0 ok, 1 RPC error (code and message on stderr) or failed check, 2 usage error\n"
    "  (an unknown flag or bad value inside a --flagfile exits 1)\n"
    "Every flag: kvtierctl --helpfull";

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  // absl::ParseCommandLine exits 1 on a bad flag; a usage error exits 2 here.
  if (absl::Status flags = kvtier::ctl::CheckCommandLine(argc, argv); !flags.ok()) {
    std::fprintf(stderr, "kvtierctl: %s (kvtierctl --help lists the commands and flags)\n",
                 std::string(flags.message()).c_str());
    return 2;
  }
  std::vector<char*> positional = absl::ParseCommandLine(argc, argv);
  if (absl::Status values = kvtier::ctl::CheckFlagValues(); !values.ok()) {
    std::fprintf(stderr, "kvtierctl: %s\n", std::string(values.message()).c_str());
    return 2;
  }
  if (positional.size() < 2) {
    std::fprintf(stderr, "%s\n", kUsage);
    return 2;
  }
  const std::string command = positional[1];
  const std::vector<std::string> args(positional.begin() + 2, positional.end());
  if (command == "health") return kvtier::ctl::RunHealth(args);
  if (command == "sessions") return kvtier::ctl::RunSessions(args);
  if (command == "tiers") return kvtier::ctl::RunTiers(args);
  if (command == "stats") return kvtier::ctl::RunStats(args);
  if (command == "watch") return kvtier::ctl::RunWatch(args);
  if (command == "demo") return kvtier::ctl::RunDemo(args);
  if (command == "repair-case") return kvtier::ctl::RunRepairCase(args);
  if (command == "bench") return kvtier::ctl::RunBench(args);
  if (command == "tier-bench") return kvtier::ctl::RunTierBench(args);
  std::fprintf(stderr, "kvtierctl: unknown command \"%s\"\n%s\n", command.c_str(), kUsage);
  return 2;
}
