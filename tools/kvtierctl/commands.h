// kvtierctl subcommands. Each takes the positional arguments after its name and returns
// the process exit status (0 success, 1 failure: an RPC error or a failed check, 2 usage
// error). docs/KVTIERCTL.md describes each.
#ifndef KVTIER_TOOLS_KVTIERCTL_COMMANDS_H_
#define KVTIER_TOOLS_KVTIERCTL_COMMANDS_H_

#include <string>
#include <vector>

namespace kvtier::ctl {

int RunHealth(const std::vector<std::string>& args);
int RunSessions(const std::vector<std::string>& args);
int RunTiers(const std::vector<std::string>& args);
int RunStats(const std::vector<std::string>& args);
int RunWatch(const std::vector<std::string>& args);
int RunDemo(const std::vector<std::string>& args);
int RunRepairCase(const std::vector<std::string>& args);
int RunBench(const std::vector<std::string>& args);
int RunTierBench(const std::vector<std::string>& args);

}  // namespace kvtier::ctl

#endif  // KVTIER_TOOLS_KVTIERCTL_COMMANDS_H_
