#include "tools/kvtierctl/output.h"

#include <cstdio>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"

namespace kvtier::ctl {

std::string ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.always_print_enums_as_ints = false;
  std::string out;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

void PrintJson(const google::protobuf::Message& message) {
  std::printf("%s\n", ToJson(message).c_str());
}

int RpcFailure(const std::string& command, const absl::Status& status) {
  std::fprintf(stderr, "kvtierctl %s: %s: %s\n", command.c_str(),
               absl::StatusCodeToString(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

int UsageFailure(const std::string& command, const std::string& problem, const std::string& usage) {
  std::fprintf(stderr, "kvtierctl %s: %s\nusage: %s\n", command.c_str(), problem.c_str(),
               usage.c_str());
  return 2;
}

std::string HumanBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes) / 1024.0;
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string GeometrySummary(const v1::Geometry& g) {
  const char* dtype = g.dtype() == v1::DTYPE_FLOAT16    ? "f16"
                      : g.dtype() == v1::DTYPE_BFLOAT16 ? "bf16"
                      : g.dtype() == v1::DTYPE_FLOAT32  ? "f32"
                                                        : "?";
  return absl::StrCat(g.num_layers(), "L ", g.num_q_heads(), "Q ", g.num_kv_heads(), "KV d",
                      g.head_dim(), " ", dtype, g.index_only() ? " index-only" : "");
}

TierReport TierUseOf(const v1::StatsResponse& stats) {
  TierReport report;
  for (const v1::TierStats& t : stats.tiers()) {
    TierUse* use = report.add_tiers();
    use->set_name(t.name());
    use->set_bytes(t.bytes());
    use->set_capacity_bytes(t.capacity_bytes());
    use->set_used_percent(t.capacity_bytes() > 0 ? 100.0 * static_cast<double>(t.bytes()) /
                                                       static_cast<double>(t.capacity_bytes())
                                                 : 0.0);
    use->set_segments(t.segments());
  }
  return report;
}

std::string TierTable(const google::protobuf::RepeatedPtrField<TierUse>& tiers) {
  std::string out =
      absl::StrFormat("%-6s %12s %12s %7s %10s\n", "TIER", "BYTES", "CAPACITY", "USED", "SEGMENTS");
  for (const TierUse& t : tiers) {
    // A tier of capacity 0 (hbm without a GPU) has no use to show.
    const std::string used =
        t.capacity_bytes() > 0 ? absl::StrFormat("%.1f%%", t.used_percent()) : "-";
    absl::StrAppendFormat(&out, "%-6s %12s %12s %7s %10d\n", t.name(), HumanBytes(t.bytes()),
                          HumanBytes(t.capacity_bytes()), used, t.segments());
  }
  return out;
}

std::string LocalTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixMillis(unix_ms),
                          absl::LocalTimeZone());
}

std::string SessionTable(absl::Span<const v1::SessionInfo> sessions, int64_t limit) {
  std::string out = absl::StrFormat("%-36s %-12s %-22s %10s %10s %10s %10s %10s %s\n", "SESSION",
                                    "TENANT", "GEOMETRY", "STORED", "COMPLETE", "CANDIDATE",
                                    "PROMOTED", "BYTES", "EXPIRES");
  int64_t shown = 0;
  for (const v1::SessionInfo& s : sessions) {
    if (limit >= 0 && shown == limit) break;
    absl::StrAppendFormat(&out, "%-36s %-12s %-22s %10d %10d %10d %10d %10s %s\n", s.session_id(),
                          s.tenant(), GeometrySummary(s.geometry()), s.rows_stored(),
                          s.rows_complete(), s.rows_candidate(), s.rows_promoted(),
                          HumanBytes(s.bytes()), LocalTime(s.expires_unix_ms()));
    ++shown;
  }
  if (shown < static_cast<int64_t>(sessions.size())) {
    absl::StrAppend(&out, "... ", sessions.size() - static_cast<size_t>(shown), " more\n");
  }
  return out;
}

}  // namespace kvtier::ctl
