// Prometheus metrics of kvtierd (DESIGN.md §5). docs/METRICS.md documents every family; a test
// (tests/ops) checks that the document and a running daemon's /metrics agree.
#ifndef KVTIER_SERVER_METRICS_H_
#define KVTIER_SERVER_METRICS_H_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "storage/tier_manager.h"

namespace kvtier::server {

// Thread-safe: prometheus-cpp metrics are atomic; the label-to-child caches are locked.
class Metrics {
 public:
  // Registers every family. kvtier_scorer_info{scorer} is set from `scorer_name`, and
  // kvtier_start_time_seconds to `started`: the time the process started (kvtierd takes it
  // first thing in main and gives the same time to Stats and /statusz).
  Metrics(absl::string_view scorer_name, absl::Time started);

  // Sets kvtier_build_info{version} to 1. Call once, before the first scrape.
  void SetBuildInfo(absl::string_view version);

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  // kvtier_rpc_duration_seconds{method, code}.
  void ObserveRpc(absl::string_view method, absl::string_view code, double seconds);
  // kvtier_repair_stage_duration_seconds{stage}: score, select, gather, send, total.
  void ObserveRepairStage(absl::string_view stage, double seconds);

  prometheus::Counter& offloaded_rows() { return *offloaded_rows_; }
  prometheus::Counter& offloaded_bytes() { return *offloaded_bytes_; }
  prometheus::Counter& repairs() { return *repairs_; }
  prometheus::Counter& promoted_rows() { return *promoted_rows_; }
  // K and V payload bytes streamed back by Repair and Promote, added as each chunk is written.
  prometheus::Counter& promoted_bytes() { return *promoted_bytes_; }
  prometheus::Counter& released_rows() { return *released_rows_; }
  // Bytes freed by Release (whole sessions included).
  prometheus::Counter& released_bytes() { return *released_bytes_; }
  prometheus::Counter& expired_sessions() { return *expired_sessions_; }
  prometheus::Gauge& sessions() { return *sessions_; }

  // kvtier_tier_bytes{tier}, kvtier_tier_capacity_bytes{tier}, kvtier_tier_segments{tier}.
  void SetTier(absl::string_view tier, double bytes, double capacity_bytes, double segments);

  // Adds what the tier manager's counters gained since the last call to the tier
  // counters (moves, moved bytes, policy hits and misses, rejections, data loss).
  void SyncTierStats(const storage::TierStats& stats) ABSL_LOCKS_EXCLUDED(mu_);

  // kvtier_rocksdb_op_duration_seconds{op}: "read" or "write".
  void ObserveDbOp(const char* op, double seconds);

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>* rpc_duration_;
  prometheus::Family<prometheus::Histogram>* stage_duration_;
  prometheus::Family<prometheus::Gauge>* tier_bytes_;
  prometheus::Family<prometheus::Gauge>* tier_capacity_;
  prometheus::Counter* offloaded_rows_;
  prometheus::Counter* offloaded_bytes_;
  prometheus::Counter* repairs_;
  prometheus::Counter* promoted_rows_;
  prometheus::Counter* promoted_bytes_;
  prometheus::Counter* released_rows_;
  prometheus::Counter* released_bytes_;
  prometheus::Family<prometheus::Gauge>* build_info_;
  prometheus::Counter* expired_sessions_;
  prometheus::Gauge* sessions_;
  prometheus::Family<prometheus::Gauge>* tier_segments_;
  prometheus::Family<prometheus::Counter>* moves_;
  prometheus::Family<prometheus::Counter>* moved_bytes_;
  prometheus::Family<prometheus::Counter>* policy_accesses_;
  prometheus::Counter* quota_rejections_;
  prometheus::Counter* capacity_rejections_;
  prometheus::Counter* data_loss_;
  prometheus::Counter* demote_failures_;
  prometheus::Histogram* db_read_;
  prometheus::Histogram* db_write_;
  // Values of the tier manager's counters at the last SyncTierStats.
  absl::flat_hash_map<prometheus::Counter*, uint64_t> synced_ ABSL_GUARDED_BY(mu_);

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Histogram*> rpc_children_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, prometheus::Histogram*> stage_children_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_METRICS_H_
