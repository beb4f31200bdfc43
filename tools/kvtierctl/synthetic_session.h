// What `demo` and `bench` share: re-offload of promoted synthetic rows,
// and small formatting helpers. Opening a synthetic session and offloading its rows live in
// tools/synthetic/synthetic_client.h.
#ifndef KVTIER_TOOLS_KVTIERCTL_SYNTHETIC_SESSION_H_
#define KVTIER_TOOLS_KVTIERCTL_SYNTHETIC_SESSION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "kvtier/client.h"
#include "tools/synthetic/synthetic_kv.h"

namespace kvtier::ctl {

// Offloads every layer of the rows at `positions` again (so promoted rows become repair
// candidates again). INVALID_ARGUMENT when a position is not one of kv's rows.
absl::Status ReoffloadPositions(Client& client, const std::string& session_id,
                                const RowGeometry& geometry, const synthetic::SyntheticKv& kv,
                                absl::Span<const int64_t> positions);

// True when `payload` (every layer of the rows it names) equals kv's rows byte for byte.
bool PayloadMatches(const synthetic::SyntheticKv& kv, const RowPayload& payload);

// "3-7, 12, 20-31" for ascending positions.
std::string CompactRanges(absl::Span<const int64_t> sorted);

// Nearest-rank percentile (p in [0, 100]) of `values`; 0 when empty.
double Percentile(std::vector<double> values, double p);

// "12.34 / 56.78": p50 / p95 of `seconds` in milliseconds, with `decimals` decimals.
std::string P50P95Ms(const std::vector<double>& seconds, int decimals = 2);

// Prints "kvtierctl COMMAND: WHAT: STATUS" on stderr and returns 1 (the exit status).
int ReportFailure(const char* command, const std::string& what, const absl::Status& status);

}  // namespace kvtier::ctl

#endif  // KVTIER_TOOLS_KVTIERCTL_SYNTHETIC_SESSION_H_
