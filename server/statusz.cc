#include "server/statusz.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kvtier/v1/kvtier.pb.h"
#include "storage/quant/codec.h"

namespace kvtier::server {
namespace {

// Inline so that the page needs nothing but itself (no external assets, no scripts).
constexpr char kStyle[] = R"css(
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       margin: 0; color: #1d2330; background: #f4f6f9; }
header { background: #1d2b45; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; font-weight: 600; }
header p { margin: 2px 0 0; color: #b8c4da; font-size: 13px; }
main { padding: 8px 24px 24px; }
section { background: #fff; border: 1px solid #dde2ea; border-radius: 6px;
          margin: 14px 0; padding: 10px 16px 14px; }
.row { display: flex; flex-wrap: wrap; gap: 0 14px; align-items: flex-start; }
.row > section { flex: 0 1 auto; }
.row > div { margin-right: 24px; }
h3 { font-size: 13px; margin: 2px 0 6px; color: #5a6478; font-weight: 600; }
h2 { font-size: 15px; margin: 4px 0 10px; color: #1d2b45; }
table { border-collapse: collapse; }
th, td { padding: 4px 8px; border-bottom: 1px solid #e8ebf0; text-align: left;
         white-space: nowrap; }
thead th { background: #eef1f6; font-weight: 600; font-size: 13px; }
table.kv th { font-weight: 500; color: #5a6478; width: 170px; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
.bar { display: inline-block; width: 120px; height: 10px; background: #e3e7ee;
       border-radius: 5px; vertical-align: middle; margin-right: 8px; overflow: hidden; }
.bar span { display: block; height: 100%; background: #3b7dd8; }
.bar span.warn { background: #d98c1f; }
.bar span.full { background: #c8423b; }
.muted { color: #7b8496; }
p.summary { margin: 0 0 8px; }
)css";

std::string Millis(double seconds) { return absl::StrFormat("%.2f", seconds * 1e3); }

std::string FormatDuration(double seconds) {
  if (seconds < 0) seconds = 0;
  int64_t s = static_cast<int64_t>(seconds);
  const int64_t days = s / 86400;
  s %= 86400;
  const int64_t hours = s / 3600;
  s %= 3600;
  const int64_t minutes = s / 60;
  s %= 60;
  if (days > 0) return absl::StrFormat("%dd %dh %dm %ds", days, hours, minutes, s);
  if (hours > 0) return absl::StrFormat("%dh %dm %ds", hours, minutes, s);
  if (minutes > 0) return absl::StrFormat("%dm %ds", minutes, s);
  return absl::StrFormat("%ds", s);
}

std::string TenantCell(const std::string& tenant) {
  if (tenant.empty()) return "<span class=\"muted\">(default)</span>";
  return HtmlEscape(tenant);
}

void AppendOverview(const StatusSnapshot& s, std::string* out) {
  absl::StrAppend(out, "<section id=\"overview\"><h2>Server</h2><table class=\"kv\">");
  auto row = [out](absl::string_view id, absl::string_view label, absl::string_view value) {
    absl::StrAppend(out, "<tr><th>", label, "</th><td id=\"", id, "\">", value, "</td></tr>");
  };
  row("version", "Version", HtmlEscape(s.version));
  row("uptime", "Uptime", FormatDuration(s.uptime_seconds));
  row("scorer", "Scorer backend", HtmlEscape(s.scorer));
  row("durability", "Durability", HtmlEscape(s.durability));
  row("policy", "Placement policy", HtmlEscape(s.placement_policy));
  row("cold-format", "Cold format", HtmlEscape(s.cold_format));
  row("watermarks", "Host watermarks",
      absl::StrFormat("high %.0f%%, low %.0f%%", s.high_watermark * 100, s.low_watermark * 100));
  absl::StrAppend(out, "</table></section>");
}

void AppendTiers(const StatusSnapshot& s, std::string* out) {
  absl::StrAppend(out,
                  "<section id=\"tiers\"><h2>Tiers</h2><table><thead><tr><th>Tier</th>"
                  "<th class=\"num\">Used</th><th class=\"num\">Capacity</th><th>Use</th>"
                  "<th class=\"num\">Segments</th></tr></thead><tbody>");
  for (const StatusSnapshot::Tier& t : s.tiers) {
    std::string use = "<span class=\"muted\">not configured</span>";
    if (t.capacity_bytes > 0) {
      const double percent =
          100.0 * static_cast<double>(t.bytes) / static_cast<double>(t.capacity_bytes);
      const char* level = percent >= 95   ? " class=\"full\""
                          : percent >= 80 ? " class=\"warn\""
                                          : "";
      use = absl::StrFormat(
          "<span class=\"bar\"><span%s style=\"width:%.1f%%\"></span></span>"
          "<span class=\"percent\">%.1f%%</span>",
          level, std::min(percent, 100.0), percent);
    }
    absl::StrAppend(out, "<tr data-tier=\"", HtmlEscape(t.name), "\"><td>", HtmlEscape(t.name),
                    "</td><td class=\"num\" data-bytes=\"", t.bytes, "\">", FormatBytes(t.bytes),
                    "</td><td class=\"num capacity\" data-bytes=\"", t.capacity_bytes, "\">",
                    t.capacity_bytes > 0 ? FormatBytes(t.capacity_bytes) : "&mdash;", "</td><td>",
                    use, "</td><td class=\"num\">", t.segments, "</td></tr>");
  }
  absl::StrAppend(out, "</tbody></table></section>");
}

void AppendSessions(const StatusSnapshot& s, std::string* out) {
  absl::StrAppend(out, "<section id=\"sessions\"><h2>Sessions by tenant</h2>");
  if (s.total_sessions == 0) {
    absl::StrAppend(out, "<p class=\"empty muted\">No open sessions.</p></section>");
    return;
  }
  absl::StrAppend(out, "<p class=\"summary\">", s.total_sessions, " open session",
                  s.total_sessions == 1 ? "" : "s", " of ", s.tenants.size(), " tenant",
                  s.tenants.size() == 1 ? "" : "s", ".</p>");
  absl::StrAppend(out,
                  "<div class=\"row\"><div><h3>By tenant</h3>"
                  "<table id=\"tenant-table\"><thead><tr><th>Tenant</th>"
                  "<th class=\"num\">Sessions</th><th class=\"num\">Rows</th>"
                  "<th class=\"num\">Bytes</th></tr></thead><tbody>");
  for (const StatusSnapshot::Tenant& t : s.tenants) {
    absl::StrAppend(out, "<tr data-tenant=\"", HtmlEscape(t.tenant), "\"><td>",
                    TenantCell(t.tenant), "</td><td class=\"num\">", t.sessions,
                    "</td><td class=\"num\">", t.rows, "</td><td class=\"num\" data-bytes=\"",
                    t.bytes, "\">", FormatBytes(t.bytes), "</td></tr>");
  }
  absl::StrAppend(out, "</tbody></table></div>");
  absl::StrAppend(out,
                  "<div><h3>Sessions</h3><table id=\"session-table\"><thead><tr><th>Tenant</th>"
                  "<th>Session</th><th class=\"num\">Rows</th><th class=\"num\">Bytes</th>"
                  "<th class=\"num\">Segments</th><th class=\"num\">On disk</th>"
                  "<th>Expires in</th></tr></thead><tbody>");
  const int64_t now_ms = absl::ToUnixMillis(s.now);
  for (const StatusSnapshot::Session& session : s.sessions) {
    absl::StrAppend(out, "<tr data-tenant=\"", HtmlEscape(session.tenant), "\" data-session=\"",
                    HtmlEscape(session.id), "\"><td>", TenantCell(session.tenant),
                    "</td><td class=\"id\">", HtmlEscape(session.id), "</td><td class=\"num\">",
                    session.rows, "</td><td class=\"num\" data-bytes=\"", session.bytes, "\">",
                    FormatBytes(session.bytes), "</td><td class=\"num\">", session.segments,
                    "</td><td class=\"num\">", session.segments_on_disk, "</td><td>",
                    FormatDuration(static_cast<double>(session.expires_unix_ms - now_ms) / 1e3),
                    "</td></tr>");
  }
  absl::StrAppend(out, "</tbody></table></div></div>");
  if (static_cast<int64_t>(s.sessions.size()) < s.total_sessions) {
    absl::StrAppend(out, "<p class=\"muted\">Showing the first ", s.sessions.size(), " of ",
                    s.total_sessions, " sessions.</p>");
  }
  absl::StrAppend(out, "</section>");
}

void AppendRepairs(const StatusSnapshot& s, std::string* out) {
  absl::StrAppend(out, "<section id=\"repairs\"><h2>Recent repairs</h2>");
  if (s.repairs.empty()) {
    absl::StrAppend(out, "<p class=\"empty muted\">No repairs yet.</p></section>");
    return;
  }
  struct Stage {
    const char* name;
    double RepairLogEntry::*seconds;
  };
  const Stage stages[] = {{"score", &RepairLogEntry::score_seconds},
                          {"select", &RepairLogEntry::select_seconds},
                          {"gather", &RepairLogEntry::gather_seconds},
                          {"send", &RepairLogEntry::send_seconds},
                          {"total", &RepairLogEntry::total_seconds}};
  // Each stage's percentiles are over the repairs in which it ran.
  std::vector<std::vector<double>> ran(std::size(stages));
  for (const RepairLogEntry& r : s.repairs) {
    for (size_t i = 0; i < std::size(stages); ++i) {
      if (RepairStageRan(r, stages[i].name)) ran[i].push_back(r.*(stages[i].seconds));
    }
  }
  const bool counts_differ = std::any_of(ran.begin(), ran.end(), [&](const auto& values) {
    return values.size() != s.repairs.size();
  });
  absl::StrAppend(out, "<p class=\"summary\">The last ", s.repairs.size(), " repair",
                  s.repairs.size() == 1 ? "" : "s", " (up to ", s.repair_log_capacity,
                  " are kept), newest first; times in milliseconds, finish times in UTC. ",
                  counts_differ
                      ? "Each stage's percentiles are over the repairs in which it ran (not "
                        "replays; score and select not for oldest or random; gather and send "
                        "not for positions-only returns): the last row counts them."
                      : "Percentiles are over these repairs.",
                  "</p>");
  absl::StrAppend(out, "<table id=\"repair-percentiles\"><thead><tr><th></th>");
  for (const Stage& stage : stages) {
    absl::StrAppend(out, "<th class=\"num\">", stage.name, "</th>");
  }
  absl::StrAppend(out, "</tr></thead><tbody>");
  for (const auto& [label, q] : {std::pair<const char*, double>{"p50", 0.5}, {"p95", 0.95}}) {
    absl::StrAppend(out, "<tr data-quantile=\"", label, "\"><th>", label, "</th>");
    for (size_t i = 0; i < std::size(stages); ++i) {
      absl::StrAppend(out, "<td class=\"num\" data-stage=\"", stages[i].name, "\">",
                      ran[i].empty() ? "&mdash;" : Millis(NearestRankPercentile(ran[i], q)),
                      "</td>");
    }
    absl::StrAppend(out, "</tr>");
  }
  if (counts_differ) {
    absl::StrAppend(out, "<tr class=\"count\"><th>over</th>");
    for (size_t i = 0; i < std::size(stages); ++i) {
      absl::StrAppend(out, "<td class=\"num\" data-stage=\"", stages[i].name, "\">", ran[i].size(),
                      " repair", ran[i].size() == 1 ? "" : "s", "</td>");
    }
    absl::StrAppend(out, "</tr>");
  }
  absl::StrAppend(out, "</tbody></table><br>");
  absl::StrAppend(out,
                  "<table id=\"repair-table\"><thead><tr><th>Finished</th><th>Tenant</th>"
                  "<th>Session</th><th>Mode</th><th class=\"num\">Budget K</th>"
                  "<th class=\"num\">Chosen</th><th class=\"num\">Candidates</th>");
  for (const Stage& stage : stages) {
    absl::StrAppend(out, "<th class=\"num\">", stage.name, "</th>");
  }
  absl::StrAppend(out, "</tr></thead><tbody>");
  for (const RepairLogEntry& r : s.repairs) {
    absl::StrAppend(out, "<tr class=\"repair\" data-session=\"", HtmlEscape(r.session_id),
                    "\"><td title=\"", absl::FormatTime("%Y-%m-%d", r.time, absl::UTCTimeZone()),
                    "\">", absl::FormatTime("%H:%M:%E3S", r.time, absl::UTCTimeZone()), "</td><td>",
                    TenantCell(r.tenant), "</td><td class=\"id\">", HtmlEscape(r.session_id),
                    "</td><td>", HtmlEscape(r.mode), r.positions_only ? ", positions" : "",
                    "</td><td class=\"num\">", r.budget, "</td><td class=\"num\">", r.chosen,
                    "</td><td class=\"num\">", r.candidates, "</td>");
    for (const Stage& stage : stages) {
      absl::StrAppend(out, "<td class=\"num\" data-stage=\"", stage.name, "\">",
                      Millis(r.*(stage.seconds)), "</td>");
    }
    absl::StrAppend(out, "</tr>");
  }
  absl::StrAppend(out, "</tbody></table></section>");
}

}  // namespace

std::string HtmlEscape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

double NearestRankPercentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size()));
  const size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return values[std::min(index, values.size() - 1)];
}

bool RepairStageRan(const RepairLogEntry& entry, absl::string_view stage) {
  if (entry.mode == "replay") return false;
  if (stage == "score" || stage == "select") return entry.mode == "exact" || entry.mode == "fast";
  if (stage == "gather" || stage == "send") return !entry.positions_only;
  return true;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  // Rounded first, then the unit and the digits chosen for the rounded value: 1048575 bytes
  // (1023.999 KiB) rounds to 1024 KiB, which is "1.00 MiB".
  for (;;) {
    const int decimals = std::round(value * 100) / 100 < 10  ? 2
                         : std::round(value * 10) / 10 < 100 ? 1
                                                             : 0;
    const double scale = decimals == 2 ? 100 : decimals == 1 ? 10 : 1;
    if (std::round(value * scale) / scale >= 1024 && unit + 1 < std::size(kUnits)) {
      value /= 1024;
      ++unit;
      continue;
    }
    return absl::StrFormat("%.*f %s", decimals, value, kUnits[unit]);
  }
}

std::string RenderStatusz(const StatusSnapshot& snapshot, int refresh_seconds) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">";
  if (refresh_seconds > 0) {
    absl::StrAppend(&out, "<meta http-equiv=\"refresh\" content=\"", refresh_seconds, "\">");
  }
  absl::StrAppend(&out, "<title>kvtierd status</title><style>", kStyle,
                  "</style></head><body><header><h1>kvtierd ", HtmlEscape(snapshot.version),
                  "</h1><p>Status at ",
                  absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", snapshot.now, absl::UTCTimeZone()),
                  refresh_seconds > 0 ? absl::StrCat(", refreshed every ", refresh_seconds, " s")
                                      : std::string(),
                  ". Metrics for Prometheus: <a style=\"color:#b8c4da\" href=\"/metrics\">"
                  "/metrics</a>.</p></header><main>");
  absl::StrAppend(&out, "<div class=\"row\">");
  AppendOverview(snapshot, &out);
  AppendTiers(snapshot, &out);
  absl::StrAppend(&out, "</div>");
  AppendSessions(snapshot, &out);
  AppendRepairs(snapshot, &out);
  absl::StrAppend(&out, "</main></body></html>\n");
  return out;
}

StatusPage::StatusPage(Sources sources) : sources_(std::move(sources)) {}

StatusSnapshot StatusPage::Snapshot() const {
  StatusSnapshot s;
  s.version = sources_.version;
  s.scorer = sources_.scorer;
  s.now = absl::Now();
  s.uptime_seconds = absl::ToDoubleSeconds(s.now - sources_.started);
  storage::TierManager& tiers = *sources_.tiers;
  const storage::TierManagerOptions& options = tiers.options();
  s.durability = std::string(storage::DurabilityName(
      tiers.db() == nullptr ? storage::Durability::kNone : tiers.db()->durability()));
  s.placement_policy = options.policy;
  s.cold_format = std::string(storage::quant::FormatName(options.cold_format));
  s.high_watermark = options.high_watermark;
  s.low_watermark = options.low_watermark;
  for (storage::TierBudget* tier : {&tiers.hbm(), &tiers.host(), &tiers.disk()}) {
    s.tiers.push_back({tier->name(), tier->used_bytes(), tier->capacity_bytes(), tier->segments()});
  }

  std::map<std::string, StatusSnapshot::Tenant> tenants;
  std::vector<StatusSnapshot::Session> sessions;
  v1::SessionInfo info;
  for (const std::shared_ptr<Session>& session : sources_.registry->List("")) {
    if (session->ExpiredAt(s.now)) continue;
    info.Clear();
    session->FillInfo(&info);
    StatusSnapshot::Tenant& tenant = tenants[info.tenant()];
    tenant.tenant = info.tenant();
    ++tenant.sessions;
    tenant.rows += info.rows_stored();
    tenant.bytes += info.bytes();
    sessions.push_back({info.session_id(), info.tenant(), info.rows_stored(), info.bytes(),
                        info.segments(), info.segments_on_disk(), info.expires_unix_ms()});
  }
  s.total_sessions = static_cast<int64_t>(sessions.size());
  for (auto& [name, tenant] : tenants) s.tenants.push_back(std::move(tenant));
  std::sort(sessions.begin(), sessions.end(), [](const auto& a, const auto& b) {
    return std::tie(a.tenant, a.id) < std::tie(b.tenant, b.id);
  });
  if (sessions.size() > kMaxSessionsShown) sessions.resize(kMaxSessionsShown);
  s.sessions = std::move(sessions);

  if (sources_.repair_log != nullptr) {
    s.repairs = sources_.repair_log->Recent();
    s.repair_log_capacity = sources_.repair_log->capacity();
  }
  return s;
}

std::string StatusPage::Render() const { return RenderStatusz(Snapshot(), 10); }

}  // namespace kvtier::server
