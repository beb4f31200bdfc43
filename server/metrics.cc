#include "server/metrics.h"

#include "absl/strings/str_cat.h"

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

Metrics::Metrics(absl::string_view scorer_name)
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
  released_rows_ = &prometheus::BuildCounter()
                        .Name("kvtier_released_rows_total")
                        .Help("Rows dropped by Release (whole sessions included)")
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

void Metrics::SetTier(absl::string_view tier, double bytes, double capacity_bytes) {
  // Family::Add returns the existing child for known labels.
  tier_bytes_->Add({{"tier", std::string(tier)}}).Set(bytes);
  tier_capacity_->Add({{"tier", std::string(tier)}}).Set(capacity_bytes);
}

}  // namespace kvtier::server
