#include "server/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace kvtier::server {
namespace {

// 100 us to ~52 s in factors of 2: repair spans sub-millisecond (positions of a small store)
// to tens of seconds (exact scoring of millions of rows).
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (double v = 1e-4; v < 60; v *= 2) b.push_back(v);
  return b;
}

}  // namespace

Metrics::Metrics(absl::string_view scorer_name, absl::Time started)
    : registry_(std::make_shared<prometheus::Registry>()) {
  rpc_duration_ = &prometheus::BuildHistogram()
                       .Name("kvtier_rpc_duration_seconds")
                       .Help("Duration of kvtier RPCs by method and status code")
                       .Register(*registry_);
  stage_duration_ = &prometheus::BuildHistogram()
                         .Name("kvtier_repair_stage_duration_seconds")
                         .Help("Duration of each Repair stage (score, select, gather, send, total)")
                         .Register(*registry_);
  tier_bytes_ = &prometheus::BuildGauge()
                     .Name("kvtier_tier_bytes")
                     .Help("Bytes held in each storage tier")
                     .Register(*registry_);
  tier_capacity_ = &prometheus::BuildGauge()
                        .Name("kvtier_tier_capacity_bytes")
                        .Help("Configured capacity of each storage tier")
                        .Register(*registry_);
  offloaded_rows_ = &prometheus::BuildCounter()
                         .Name("kvtier_offloaded_rows_total")
                         .Help("Rows received by Offload (one per position per chunk)")
                         .Register(*registry_)
                         .Add({});
  offloaded_bytes_ = &prometheus::BuildCounter()
                          .Name("kvtier_offloaded_bytes_total")
                          .Help("K and V payload bytes received by Offload")
                          .Register(*registry_)
                          .Add({});
  repairs_ = &prometheus::BuildCounter()
                  .Name("kvtier_repairs_total")
                  .Help("Repairs that returned a selection (replays included)")
                  .Register(*registry_)
                  .Add({});
  promoted_rows_ = &prometheus::BuildCounter()
                        .Name("kvtier_promoted_rows_total")
                        .Help("Rows promoted by Repair and Promote (replays not counted)")
                        .Register(*registry_)
                        .Add({});
  promoted_bytes_ = &prometheus::BuildCounter()
                         .Name("kvtier_promoted_bytes_total")
                         .Help(
                             "K and V payload bytes streamed back by Repair and Promote, counted "
                             "as each chunk is written (replays and positions-only returns not "
                             "counted)")
                         .Register(*registry_)
                         .Add({});
  released_rows_ = &prometheus::BuildCounter()
                        .Name("kvtier_released_rows_total")
                        .Help("Rows dropped by Release (whole sessions included)")
                        .Register(*registry_)
                        .Add({});
  released_bytes_ = &prometheus::BuildCounter()
                         .Name("kvtier_released_bytes_total")
                         .Help("Bytes freed by Release (whole sessions included)")
                         .Register(*registry_)
                         .Add({});
  expired_sessions_ = &prometheus::BuildCounter()
                           .Name("kvtier_expired_sessions_total")
                           .Help("Sessions dropped because their TTL passed")
                           .Register(*registry_)
                           .Add({});
  sessions_ = &prometheus::BuildGauge()
                   .Name("kvtier_sessions")
                   .Help("Open sessions")
                   .Register(*registry_)
                   .Add({});
  prometheus::BuildGauge()
      .Name("kvtier_scorer_info")
      .Help("Scorer implementation in use (value 1)")
      .Register(*registry_)
      .Add({{"scorer", std::string(scorer_name)}})
      .Set(1);
  build_info_ = &prometheus::BuildGauge()
                     .Name("kvtier_build_info")
                     .Help("kvtierd version (value 1)")
                     .Register(*registry_);
  prometheus::BuildGauge()
      .Name("kvtier_start_time_seconds")
      .Help("Unix time at which kvtierd started (before recovery)")
      .Register(*registry_)
      .Add({})
      .Set(absl::ToDoubleSeconds(started - absl::UnixEpoch()));
  tier_segments_ = &prometheus::BuildGauge()
                        .Name("kvtier_tier_segments")
                        .Help("Segments whose payload each tier holds")
                        .Register(*registry_);
  moves_ = &prometheus::BuildCounter()
                .Name("kvtier_tier_moves_total")
                .Help(
                    "Segment payload moves between tiers by direction (host_to_nvme: "
                    "demotion; nvme_to_host: promotion on access; nvme_to_host_prefetch: "
                    "BeginPause and policy prefetch; nvme_read_through: read without "
                    "staying in host RAM)")
                .Register(*registry_);
  moved_bytes_ = &prometheus::BuildCounter()
                      .Name("kvtier_tier_moved_bytes_total")
                      .Help("Bytes of segment payloads moved between tiers, by direction")
                      .Register(*registry_);
  policy_accesses_ = &prometheus::BuildCounter()
                          .Name("kvtier_policy_accesses_total")
                          .Help("Payload accesses found in host RAM (hit) or on disk (miss)")
                          .Register(*registry_);
  quota_rejections_ = &prometheus::BuildCounter()
                           .Name("kvtier_quota_rejections_total")
                           .Help("Offloads refused because the tenant's byte quota was reached")
                           .Register(*registry_)
                           .Add({});
  capacity_rejections_ = &prometheus::BuildCounter()
                              .Name("kvtier_capacity_rejections_total")
                              .Help("Offloads refused with RESOURCE_EXHAUSTED: no tier had room")
                              .Register(*registry_)
                              .Add({});
  data_loss_ = &prometheus::BuildCounter()
                    .Name("kvtier_data_loss_total")
                    .Help("Stored records that failed their CRC32C or format check")
                    .Register(*registry_)
                    .Add({});
  demote_failures_ = &prometheus::BuildCounter()
                          .Name("kvtier_demote_failures_total")
                          .Help("Demotions whose disk write failed (the payload stayed in RAM)")
                          .Register(*registry_)
                          .Add({});
  auto& db_ops = prometheus::BuildHistogram()
                     .Name("kvtier_rocksdb_op_duration_seconds")
                     .Help("Duration of RocksDB reads and writes (batches) of the nvme tier")
                     .Register(*registry_);
  prometheus::Histogram::BucketBoundaries db_buckets;
  for (double v = 1e-5; v < 10; v *= 2) db_buckets.push_back(v);
  db_read_ = &db_ops.Add({{"op", "read"}}, db_buckets);
  db_write_ = &db_ops.Add({{"op", "write"}}, db_buckets);
}

void Metrics::SetBuildInfo(absl::string_view version) {
  build_info_->Add({{"version", std::string(version)}}).Set(1);
}

void Metrics::ObserveDbOp(const char* op, double seconds) {
  (op[0] == 'r' ? db_read_ : db_write_)->Observe(seconds);
}

void Metrics::SyncTierStats(const storage::TierStats& stats) {
  auto moves = [&](const char* direction) -> prometheus::Counter& {
    return moves_->Add({{"direction", direction}});
  };
  auto bytes = [&](const char* direction) -> prometheus::Counter& {
    return moved_bytes_->Add({{"direction", direction}});
  };
  const std::pair<prometheus::Counter*, const std::atomic<uint64_t>*> pairs[] = {
      {&moves("host_to_nvme"), &stats.demotions},
      {&bytes("host_to_nvme"), &stats.demoted_bytes},
      {&moves("nvme_to_host"), &stats.promotions},
      {&moves("nvme_to_host_prefetch"), &stats.prefetches},
      {&bytes("nvme_to_host"), &stats.promoted_bytes},
      {&moves("nvme_read_through"), &stats.read_through},
      {&bytes("nvme_read_through"), &stats.read_through_bytes},
      {&policy_accesses_->Add({{"result", "hit"}}), &stats.policy_hits},
      {&policy_accesses_->Add({{"result", "miss"}}), &stats.policy_misses},
      {quota_rejections_, &stats.quota_rejections},
      {capacity_rejections_, &stats.capacity_rejections},
      {data_loss_, &stats.data_loss},
      {demote_failures_, &stats.demote_failures},
  };
  absl::MutexLock lock(&mu_);
  for (const auto& [counter, value] : pairs) {
    const uint64_t now = value->load(std::memory_order_relaxed);
    uint64_t& last = synced_[counter];
    if (now > last) counter->Increment(static_cast<double>(now - last));
    last = now;
  }
}

void Metrics::ObserveRpc(absl::string_view method, absl::string_view code, double seconds) {
  const std::string key = absl::StrCat(method, "/", code);
  prometheus::Histogram* h;
  {
    absl::MutexLock lock(&mu_);
    auto it = rpc_children_.find(key);
    if (it == rpc_children_.end()) {
      h = &rpc_duration_->Add({{"method", std::string(method)}, {"code", std::string(code)}},
                              LatencyBuckets());
      rpc_children_.emplace(key, h);
    } else {
      h = it->second;
    }
  }
  h->Observe(seconds);
}

void Metrics::ObserveRepairStage(absl::string_view stage, double seconds) {
  prometheus::Histogram* h;
  {
    absl::MutexLock lock(&mu_);
    auto it = stage_children_.find(std::string(stage));
    if (it == stage_children_.end()) {
      h = &stage_duration_->Add({{"stage", std::string(stage)}}, LatencyBuckets());
      stage_children_.emplace(std::string(stage), h);
    } else {
      h = it->second;
    }
  }
  h->Observe(seconds);
}

void Metrics::SetTier(absl::string_view tier, double bytes, double capacity_bytes,
                      double segments) {
  // Family::Add returns the existing child for known labels.
  tier_bytes_->Add({{"tier", std::string(tier)}}).Set(bytes);
  tier_capacity_->Add({{"tier", std::string(tier)}}).Set(capacity_bytes);
  tier_segments_->Add({{"tier", std::string(tier)}}).Set(segments);
}

}  // namespace kvtier::server
