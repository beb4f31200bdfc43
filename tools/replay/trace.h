// Access traces for kvtier-replay, in the JSON format of
// ../shared/reference/tier_policies/traces/:
//   {"workload": str, "quant": str, "page_columns": [...],
//    "pages": [[index, layer, token_start, token_end, head_group, size_bytes], ...],
//    "accesses": [index, ...]}
// Page ids are "page-<index>"; the step of an access is its position in "accesses".
#ifndef KVTIER_TOOLS_REPLAY_TRACE_H_
#define KVTIER_TOOLS_REPLAY_TRACE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "tools/replay/cost_model.h"

namespace kvtier::replay {

struct Trace {
  std::string workload;
  std::string quantization_scheme;
  // Pages in file order; `accesses` holds positions in this vector.
  std::vector<ReplayPage> pages;
  std::vector<uint32_t> accesses;
};

// Parses a trace document. INVALID_ARGUMENT naming the field (and `what`, e.g. the file
// name) when the JSON is malformed, a field is missing or of the wrong type, a size is not
// a positive integer, a page index repeats, an access names an unknown page, or the
// quantization scheme is unknown.
absl::StatusOr<Trace> ParseTrace(std::string_view json, std::string_view what = "trace");

// Reads and parses a trace file; NOT_FOUND when it cannot be opened.
absl::StatusOr<Trace> LoadTraceFile(const std::string& path);

}  // namespace kvtier::replay

#endif  // KVTIER_TOOLS_REPLAY_TRACE_H_
