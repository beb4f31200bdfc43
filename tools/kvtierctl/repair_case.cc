// kvtierctl repair-case CASE_DIR: plays one golden case through the daemon and prints
// {"chosen": [...], "sorted": [...]} on one line.
#include <cstdio>

#include "tools/case_player/case_player.h"
#include "tools/golden/golden_case.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"

namespace kvtier::ctl {

int RunRepairCase(const std::vector<std::string>& args) {
  if (args.size() != 1) {
    std::fprintf(stderr, "usage: kvtierctl repair-case [--server=ADDR] CASE_DIR\n");
    return 2;
  }
  absl::StatusOr<golden::Case> golden_case = golden::LoadCase(args[0]);
  if (!golden_case.ok()) {
    std::fprintf(stderr, "kvtierctl repair-case: cannot load %s: %s\n", args[0].c_str(),
                 golden_case.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags();
  if (!client.ok()) {
    std::fprintf(stderr, "kvtierctl repair-case: %s\n", client.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<case_player::CaseOutcome> outcome = case_player::PlayCase(**client, *golden_case);
  if (!outcome.ok()) {
    std::fprintf(stderr, "kvtierctl repair-case: %s: %s\n", args[0].c_str(),
                 outcome.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", case_player::OutcomeJson(*outcome).c_str());
  return 0;
}

}  // namespace kvtier::ctl
