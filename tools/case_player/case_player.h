// Plays one golden repair case (../shared/reference/repair/README.md) through a live
// kvtierd with the SDK: used by `kvtierctl repair-case` and by the integration tests.
#ifndef KVTIER_TOOLS_CASE_PLAYER_CASE_PLAYER_H_
#define KVTIER_TOOLS_CASE_PLAYER_CASE_PLAYER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kvtier/client.h"
#include "tools/golden/golden_case.h"

namespace kvtier::case_player {

struct CaseOutcome {
  std::vector<int64_t> chosen;  // RepairSummary.chosen
  std::vector<int64_t> sorted;  // RepairSummary.sorted
};

// Opens a float32 session with the case's geometry (every layer scoring), offloads its rows
// (keys transposed to [layer][row][kv_head][head_dim], values zero, importance if present),
// repairs with the case's signal, budget, burst and selector in RETURN_MODE_POSITIONS, and
// releases the session (also when a step failed). Returns the server's selection, or the
// first error with the step that failed named in its message.
absl::StatusOr<CaseOutcome> PlayCase(Client& client, const golden::Case& golden_case,
                                     const CallOptions& call = {});

// `{"chosen": [..], "sorted": [..]}` on one line, no trailing newline.
std::string OutcomeJson(const CaseOutcome& outcome);

}  // namespace kvtier::case_player

#endif  // KVTIER_TOOLS_CASE_PLAYER_CASE_PLAYER_H_
