// Unit tests of server/metrics.h: what each call does to the exported samples.
#include "server/metrics.h"

#include <gtest/gtest.h>
#include <prometheus/metric_family.h>

#include <map>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvtier::server {
namespace {

// The collected families by name.
std::map<std::string, prometheus::MetricFamily> Collect(const Metrics& metrics) {
  std::map<std::string, prometheus::MetricFamily> out;
  for (prometheus::MetricFamily& f : metrics.registry()->Collect()) out[f.name] = std::move(f);
  return out;
}

// The sample of `family` whose labels include `label` = `value` (any sample if `label` is
// empty); nullptr when there is none.
const prometheus::ClientMetric* Find(const std::map<std::string, prometheus::MetricFamily>& all,
                                     const std::string& family, const std::string& label = "",
                                     const std::string& value = "") {
  auto it = all.find(family);
  if (it == all.end()) return nullptr;
  for (const prometheus::ClientMetric& m : it->second.metric) {
    if (label.empty()) return &m;
    for (const prometheus::ClientMetric::Label& l : m.label) {
      if (l.name == label && l.value == value) return &m;
    }
  }
  return nullptr;
}

double CounterValue(const Metrics& metrics, const std::string& family, const std::string& label,
                    const std::string& value) {
  const auto all = Collect(metrics);
  const prometheus::ClientMetric* m = Find(all, family, label, value);
  return m == nullptr ? -1 : m->counter.value;
}

TEST(MetricsTest, InfoGaugesAndStartTime) {
  // The start time is the one given (main's, taken before recovery), not the construction's.
  const absl::Time started = absl::FromUnixMillis(1700000000250);
  Metrics metrics("cpu", started);
  metrics.SetBuildInfo("9.8.7");
  const auto all = Collect(metrics);

  const prometheus::ClientMetric* scorer = Find(all, "kvtier_scorer_info", "scorer", "cpu");
  ASSERT_NE(scorer, nullptr);
  EXPECT_EQ(scorer->gauge.value, 1);
  const prometheus::ClientMetric* build = Find(all, "kvtier_build_info", "version", "9.8.7");
  ASSERT_NE(build, nullptr);
  EXPECT_EQ(build->gauge.value, 1);
  const prometheus::ClientMetric* start = Find(all, "kvtier_start_time_seconds");
  ASSERT_NE(start, nullptr);
  EXPECT_NEAR(start->gauge.value, 1700000000.25, 1e-6);
}

TEST(MetricsTest, CountersStartAtZeroAndCount) {
  Metrics metrics("cpu", absl::Now());
  const auto fresh = Collect(metrics);
  for (const char* name :
       {"kvtier_offloaded_rows_total", "kvtier_offloaded_bytes_total", "kvtier_repairs_total",
        "kvtier_promoted_rows_total", "kvtier_promoted_bytes_total", "kvtier_released_rows_total",
        "kvtier_released_bytes_total", "kvtier_expired_sessions_total",
        "kvtier_quota_rejections_total", "kvtier_capacity_rejections_total",
        "kvtier_data_loss_total", "kvtier_demote_failures_total"}) {
    const prometheus::ClientMetric* m = Find(fresh, name);
    ASSERT_NE(m, nullptr) << name;
    EXPECT_EQ(m->counter.value, 0) << name;
    EXPECT_EQ(fresh.at(name).type, prometheus::MetricType::Counter) << name;
  }
  metrics.promoted_bytes().Increment(4096);
  metrics.released_bytes().Increment(100);
  metrics.released_bytes().Increment(28);
  EXPECT_EQ(CounterValue(metrics, "kvtier_promoted_bytes_total", "", ""), 4096);
  EXPECT_EQ(CounterValue(metrics, "kvtier_released_bytes_total", "", ""), 128);
}

TEST(MetricsTest, SyncTierStatsAddsOnlyWhatTheCountersGained) {
  Metrics metrics("cpu", absl::Now());
  storage::TierStats stats;
  stats.demotions = 3;
  stats.demoted_bytes = 3000;
  stats.policy_hits = 5;
  stats.data_loss = 1;
  metrics.SyncTierStats(stats);
  metrics.SyncTierStats(stats);  // nothing new: nothing added
  EXPECT_EQ(CounterValue(metrics, "kvtier_tier_moves_total", "direction", "host_to_nvme"), 3);
  EXPECT_EQ(CounterValue(metrics, "kvtier_tier_moved_bytes_total", "direction", "host_to_nvme"),
            3000);
  EXPECT_EQ(CounterValue(metrics, "kvtier_policy_accesses_total", "result", "hit"), 5);
  EXPECT_EQ(CounterValue(metrics, "kvtier_policy_accesses_total", "result", "miss"), 0);
  EXPECT_EQ(CounterValue(metrics, "kvtier_data_loss_total", "", ""), 1);

  stats.demotions = 7;
  stats.prefetches = 2;
  stats.capacity_rejections = 4;
  metrics.SyncTierStats(stats);
  EXPECT_EQ(CounterValue(metrics, "kvtier_tier_moves_total", "direction", "host_to_nvme"), 7);
  EXPECT_EQ(CounterValue(metrics, "kvtier_tier_moves_total", "direction", "nvme_to_host_prefetch"),
            2);
  EXPECT_EQ(CounterValue(metrics, "kvtier_capacity_rejections_total", "", ""), 4);
  // Every direction is exported once synced, so that rate() sees its zeros.
  for (const char* direction :
       {"host_to_nvme", "nvme_to_host", "nvme_to_host_prefetch", "nvme_read_through"}) {
    EXPECT_GE(CounterValue(metrics, "kvtier_tier_moves_total", "direction", direction), 0)
        << direction;
  }
}

TEST(MetricsTest, RpcAndStageHistogramsByLabel) {
  Metrics metrics("cpu", absl::Now());
  metrics.ObserveRpc("Repair", "OK", 0.002);
  metrics.ObserveRpc("Repair", "OK", 0.004);
  metrics.ObserveRpc("Repair", "DEADLINE_EXCEEDED", 1.5);
  metrics.ObserveRepairStage("total", 0.25);
  const auto all = Collect(metrics);
  ASSERT_EQ(all.at("kvtier_rpc_duration_seconds").type, prometheus::MetricType::Histogram);
  ASSERT_EQ(all.at("kvtier_rpc_duration_seconds").metric.size(), 2u);
  const prometheus::ClientMetric* ok = Find(all, "kvtier_rpc_duration_seconds", "code", "OK");
  ASSERT_NE(ok, nullptr);
  EXPECT_EQ(ok->histogram.sample_count, 2u);
  EXPECT_DOUBLE_EQ(ok->histogram.sample_sum, 0.006);
  const prometheus::ClientMetric* late =
      Find(all, "kvtier_rpc_duration_seconds", "code", "DEADLINE_EXCEEDED");
  ASSERT_NE(late, nullptr);
  EXPECT_EQ(late->histogram.sample_count, 1u);
  // 1.5 s is in no bucket bounded at or below 1 s.
  uint64_t at_or_below_1s = 0;
  for (const prometheus::ClientMetric::Bucket& b : late->histogram.bucket) {
    if (b.upper_bound <= 1.0) at_or_below_1s = b.cumulative_count;
  }
  EXPECT_EQ(at_or_below_1s, 0u);
  const prometheus::ClientMetric* total =
      Find(all, "kvtier_repair_stage_duration_seconds", "stage", "total");
  ASSERT_NE(total, nullptr);
  EXPECT_EQ(total->histogram.sample_count, 1u);
}

TEST(MetricsTest, SetTierSetsAllThreeGauges) {
  Metrics metrics("cpu", absl::Now());
  metrics.SetTier("host", 10, 100, 2);
  metrics.SetTier("host", 20, 100, 3);  // the same children, updated
  const auto all = Collect(metrics);
  ASSERT_EQ(all.at("kvtier_tier_bytes").metric.size(), 1u);
  EXPECT_EQ(Find(all, "kvtier_tier_bytes", "tier", "host")->gauge.value, 20);
  EXPECT_EQ(Find(all, "kvtier_tier_capacity_bytes", "tier", "host")->gauge.value, 100);
  EXPECT_EQ(Find(all, "kvtier_tier_segments", "tier", "host")->gauge.value, 3);
}

}  // namespace
}  // namespace kvtier::server
