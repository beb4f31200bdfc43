#include "tools/replay/report.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tools/replay/json.h"

namespace kvtier::replay {
namespace {

// The event log's summary lists tiers in the order they were first credited (the
// reference's to_dict()); the CSV row sorts them by name (its JSON columns are written
// with sorted keys).
std::string TierHitRateJson(const ReplayMetrics& m, absl::Span<const TierSpec> tiers,
                            bool sort_by_name) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& [tier, hits] : m.tier_hits) {
    items.emplace_back(QuoteJson(tiers[static_cast<size_t>(tier)].name),
                       FormatDouble(static_cast<double>(hits) / static_cast<double>(m.accesses)));
  }
  if (sort_by_name) std::sort(items.begin(), items.end());
  std::vector<std::string> joined;
  for (const auto& [name, value] : items) joined.push_back(absl::StrCat(name, ": ", value));
  return absl::StrCat("{", absl::StrJoin(joined, ", "), "}");
}

std::string PeakJson(const ReplayMetrics& m, absl::Span<const TierSpec> tiers) {
  std::vector<std::string> items;
  for (size_t i = 0; i < tiers.size(); ++i) {
    items.push_back(absl::StrCat(QuoteJson(tiers[i].name), ": ", m.peak_footprint_bytes[i]));
  }
  return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
}

// (column, JSON value) pairs of the metrics, in to_dict() order.
std::vector<std::pair<std::string, std::string>> MetricFields(const ReplayMetrics& m,
                                                              absl::Span<const TierSpec> tiers,
                                                              bool sort_tier_names) {
  return {
      {"accesses", absl::StrCat(m.accesses)},
      {"miss_count", absl::StrCat(m.miss_count)},
      {"eviction_count", absl::StrCat(m.eviction_count)},
      {"avg_latency_ms", FormatDouble(m.avg_latency_ms())},
      {"overall_hit_rate", FormatDouble(m.overall_hit_rate())},
      {"bytes_moved", absl::StrCat(m.bytes_moved())},
      {"demand_bytes_moved", absl::StrCat(m.demand_bytes_moved)},
      {"prefetch_bytes_moved", absl::StrCat(m.prefetch_bytes_moved)},
      {"prefetch_requests", absl::StrCat(m.prefetch_requests)},
      {"useful_prefetches", absl::StrCat(m.useful_prefetches)},
      {"wasted_prefetches", absl::StrCat(m.wasted_prefetches)},
      {"prefetch_usefulness", FormatDouble(m.prefetch_usefulness())},
      {"tier_hit_rate", TierHitRateJson(m, tiers, sort_tier_names)},
      {"peak_footprint_bytes", PeakJson(m, tiers)},
  };
}

std::string JoinObject(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::vector<std::string> items;
  for (const auto& [key, value] : fields)
    items.push_back(absl::StrCat(QuoteJson(key), ": ", value));
  return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
}

std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  return out + "\"";
}

}  // namespace

const std::vector<std::string>& ResultColumns() {
  static const auto* const kColumns = new std::vector<std::string>{"scenario",
                                                                   "workload",
                                                                   "policy",
                                                                   "quantization_scheme",
                                                                   "prefetch_enabled",
                                                                   "accesses",
                                                                   "miss_count",
                                                                   "eviction_count",
                                                                   "avg_latency_ms",
                                                                   "overall_hit_rate",
                                                                   "bytes_moved",
                                                                   "demand_bytes_moved",
                                                                   "prefetch_bytes_moved",
                                                                   "prefetch_requests",
                                                                   "useful_prefetches",
                                                                   "wasted_prefetches",
                                                                   "prefetch_usefulness",
                                                                   "tier_hit_rate",
                                                                   "peak_footprint_bytes"};
  return *kColumns;
}

std::string MetricsJson(const ReplayMetrics& metrics, absl::Span<const TierSpec> tiers) {
  return JoinObject(MetricFields(metrics, tiers, false));
}

std::string ResultJson(const RunLabel& label, const ReplayMetrics& metrics,
                       absl::Span<const TierSpec> tiers) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"scenario", QuoteJson(label.scenario)},
      {"workload", QuoteJson(label.workload)},
      {"policy", QuoteJson(label.policy)},
      {"quantization_scheme", QuoteJson(label.quantization_scheme)},
      {"prefetch_enabled", label.prefetch_enabled ? "true" : "false"},
  };
  for (auto& field : MetricFields(metrics, tiers, true)) fields.push_back(std::move(field));
  return JoinObject(fields);
}

std::string ResultCsvHeader() { return absl::StrJoin(ResultColumns(), ","); }

std::string ResultCsvRow(const RunLabel& label, const ReplayMetrics& metrics,
                         absl::Span<const TierSpec> tiers) {
  std::vector<std::string> cells = {label.scenario, label.workload, label.policy,
                                    label.quantization_scheme,
                                    label.prefetch_enabled ? "True" : "False"};
  for (const auto& [key, value] : MetricFields(metrics, tiers, true)) cells.push_back(value);
  std::vector<std::string> quoted;
  for (const std::string& cell : cells) quoted.push_back(CsvField(cell));
  return absl::StrJoin(quoted, ",");
}

double RoundLatencyForLog(double latency_ms) {
  // glibc's printf rounds the exact binary value correctly, as Python's round() does.
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6f", latency_ms);
  return std::strtod(buf, nullptr);
}

std::string EventLogJsonl(const ReplayResult& result, absl::Span<const TierSpec> tiers,
                          absl::Span<const ReplayPage> pages) {
  std::string out = absl::StrCat("{\"summary\": ", MetricsJson(result.metrics, tiers), "}\n");
  for (const ReplayEvent& e : result.events) {
    const std::string dst = e.dst_tier == policy::kNoTier
                                ? "null"
                                : QuoteJson(tiers[static_cast<size_t>(e.dst_tier)].name);
    absl::StrAppend(&out, "{\"step\": ", e.step, ", \"type\": \"", EventTypeName(e.type),
                    "\", \"page\": ", QuoteJson(pages[e.page].id),
                    ", \"src\": ", QuoteJson(tiers[static_cast<size_t>(e.src_tier)].name),
                    ", \"dst\": ", dst,
                    ", \"latency_ms\": ", FormatDouble(RoundLatencyForLog(e.latency_ms)),
                    ", \"bytes\": ", e.bytes, "}\n");
  }
  return out;
}

}  // namespace kvtier::replay
