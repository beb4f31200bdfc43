// The /statusz page of kvtierd's metrics port: what an operator wants to see at a glance
// (version, uptime, scorer, tiers, sessions by tenant, recent repairs, storage settings),
// rendered as one self-contained HTML document: inline CSS, no scripts, no external assets.
#ifndef KVTIER_SERVER_STATUSZ_H_
#define KVTIER_SERVER_STATUSZ_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "server/repair_log.h"
#include "server/session_registry.h"
#include "storage/tier_manager.h"

namespace kvtier::server {

// Everything the page shows, gathered at one moment. Plain data: RenderStatusz needs
// nothing else, so tests build snapshots by hand.
struct StatusSnapshot {
  struct Tier {
    std::string name;
    uint64_t bytes = 0;
    uint64_t capacity_bytes = 0;  // 0: the tier is absent (hbm without a GPU)
    int64_t segments = 0;
  };
  struct Session {
    std::string id;
    std::string tenant;
    int64_t rows = 0;  // rows stored
    uint64_t bytes = 0;
    int64_t segments = 0;
    int64_t segments_on_disk = 0;
    int64_t expires_unix_ms = 0;
  };
  // Sessions of one tenant, summed.
  struct Tenant {
    std::string tenant;  // empty: the default tenant
    int64_t sessions = 0;
    int64_t rows = 0;
    uint64_t bytes = 0;
  };

  std::string version;
  std::string scorer;
  absl::Time now;
  double uptime_seconds = 0;
  std::string durability;
  std::string placement_policy;
  std::string cold_format;
  double high_watermark = 0;
  double low_watermark = 0;
  std::vector<Tier> tiers;
  std::vector<Tenant> tenants;          // sorted by tenant
  std::vector<Session> sessions;        // sorted by (tenant, id); at most kMaxSessionsShown
  int64_t total_sessions = 0;           // all open sessions, shown or not
  std::vector<RepairLogEntry> repairs;  // newest first
  size_t repair_log_capacity = 0;
};

// Sessions listed one by one on the page; tenants' sums always cover every session.
inline constexpr size_t kMaxSessionsShown = 200;

// `text` with &, <, >, " and ' replaced by character references: safe inside HTML text and
// quoted attribute values.
std::string HtmlEscape(absl::string_view text);

// The q-quantile (0 <= q <= 1) of `values` by the nearest-rank method: the smallest value
// with at least ceil(q * n) values at or below it (the minimum for q = 0). 0 when empty.
double NearestRankPercentile(std::vector<double> values, double q);

// `bytes` in binary units with three significant digits: "0 B", "512 B", "1.50 KiB",
// "8.00 GiB". The value is rounded before the unit is chosen: 1048575 is "1.00 MiB".
std::string FormatBytes(uint64_t bytes);

// Whether `stage` ("score", "select", "gather", "send" or "total") ran in the repair of
// `entry`, as far as its timing means anything: no stage of a replay (the selection was
// remembered), no score or select for the oldest and random selectors, no gather or send for
// positions-only returns. /statusz leaves the others out of each stage's percentiles.
bool RepairStageRan(const RepairLogEntry& entry, absl::string_view stage);

// The page for `snapshot`. Every string from a request or a session (ids, tenants) is
// escaped. `refresh_seconds` > 0 adds a <meta http-equiv="refresh">.
std::string RenderStatusz(const StatusSnapshot& snapshot, int refresh_seconds = 0);

// Gathers snapshots from the live daemon. Thread-safe as long as the borrowed objects
// are (they are: the registry, tier manager and repair log lock internally). Every pointer
// must outlive the page.
class StatusPage {
 public:
  struct Sources {
    const SessionRegistry* registry = nullptr;
    storage::TierManager* tiers = nullptr;
    const RepairLog* repair_log = nullptr;
    std::string version;
    std::string scorer;
    absl::Time started;  // when the process started: the uptime includes recovery
  };

  explicit StatusPage(Sources sources);

  StatusSnapshot Snapshot() const;
  // RenderStatusz(Snapshot(), 10).
  std::string Render() const;

 private:
  const Sources sources_;
};

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_STATUSZ_H_
