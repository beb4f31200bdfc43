// kvtierctl health: exit 0 when the daemon reports SERVING.
#include <cstdio>

#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"

namespace kvtier::ctl {

int RunHealth(const std::vector<std::string>& args) {
  if (!args.empty()) {
    std::fprintf(stderr, "kvtierctl health: takes no arguments\n");
    return 2;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags();
  if (!client.ok()) {
    std::fprintf(stderr, "kvtierctl health: %s\n", client.status().ToString().c_str());
    return 1;
  }
  if (absl::Status status = (*client)->Health(); !status.ok()) {
    std::fprintf(stderr, "kvtierctl health: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("SERVING\n");
  return 0;
}

}  // namespace kvtier::ctl
