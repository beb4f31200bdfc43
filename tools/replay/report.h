// Output formats of kvtier-replay: one result row as JSON or CSV (the columns of the
// reference default_sweep_results.csv) and the per-event log (JSON lines, as in the
// reference events/*.jsonl). Numbers are written like Python's json module writes them,
// so outputs can be diffed against the reference byte for byte.
#ifndef KVTIER_TOOLS_REPLAY_REPORT_H_
#define KVTIER_TOOLS_REPLAY_REPORT_H_

#include <string>
#include <vector>

#include "absl/types/span.h"
#include "tools/replay/cost_model.h"
#include "tools/replay/replay_engine.h"

namespace kvtier::replay {

// What was replayed, for the leading columns of a result row.
struct RunLabel {
  std::string scenario;
  std::string workload;
  std::string policy;
  std::string quantization_scheme;
  bool prefetch_enabled = false;
};

// The result columns, in order: scenario ... peak_footprint_bytes.
const std::vector<std::string>& ResultColumns();

// {"accesses": ..., ..., "peak_footprint_bytes": {...}}: the metrics alone (the
// reference's to_dict(), as in the first line of an event log).
std::string MetricsJson(const ReplayMetrics& metrics, absl::Span<const TierSpec> tiers);

// One JSON object whose keys are ResultColumns(); tier_hit_rate and peak_footprint_bytes
// are nested objects keyed by tier name.
std::string ResultJson(const RunLabel& label, const ReplayMetrics& metrics,
                       absl::Span<const TierSpec> tiers);

// The CSV header line and one data line (no trailing newline); dict-valued columns are
// JSON strings, booleans True/False, quoting as Python's csv module does.
std::string ResultCsvHeader();
std::string ResultCsvRow(const RunLabel& label, const ReplayMetrics& metrics,
                         absl::Span<const TierSpec> tiers);

// `latency_ms` as the reference event logs write it: rounded to 6 decimals (Python's
// round(x, 6)). The sums behind avg_latency_ms use the unrounded values.
double RoundLatencyForLog(double latency_ms);

// The event log: {"summary": metrics} then one event per line, each line ending in '\n'.
std::string EventLogJsonl(const ReplayResult& result, absl::Span<const TierSpec> tiers,
                          absl::Span<const ReplayPage> pages);

}  // namespace kvtier::replay

#endif  // KVTIER_TOOLS_REPLAY_REPORT_H_
