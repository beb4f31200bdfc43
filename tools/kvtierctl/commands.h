// kvtierctl subcommands. Each takes the positional arguments after its name and returns
// the process exit status (0 success, 1 failure, 2 usage error).
#ifndef KVTIER_TOOLS_KVTIERCTL_COMMANDS_H_
#define KVTIER_TOOLS_KVTIERCTL_COMMANDS_H_

#include <string>
#include <vector>

namespace kvtier::ctl {

int RunHealth(const std::vector<std::string>& args);
int RunSessions(const std::vector<std::string>& args);
int RunStats(const std::vector<std::string>& args);
int RunDemo(const std::vector<std::string>& args);
int RunRepairCase(const std::vector<std::string>& args);
int RunBench(const std::vector<std::string>& args);
int RunTierBench(const std::vector<std::string>& args);

}  // namespace kvtier::ctl

#endif  // KVTIER_TOOLS_KVTIERCTL_COMMANDS_H_
