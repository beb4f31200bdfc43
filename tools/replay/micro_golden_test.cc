// Replays every case of the reference micro_golden.json and checks its metrics and its
// event list exactly.
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/policy/placement_policy.h"
#include "tools/replay/json.h"
#include "tools/replay/reference_dir.h"
#include "tools/replay/replay_engine.h"
#include "tools/replay/report.h"

namespace kvtier::replay {
namespace {

using google::protobuf::Value;

const Value& Get(const Value& object, const std::string& key) {
  static const Value kNull;
  const auto& fields = object.struct_value().fields();
  const auto it = fields.find(key);
  return it == fields.end() ? kNull : it->second;
}

int64_t Int(const Value& v) {
  int64_t out = -1;
  EXPECT_TRUE(JsonInteger(v, INT64_MIN / 2, INT64_MAX / 2, out)) << v.DebugString();
  return out;
}

std::map<std::string, double> NumberMap(const Value& v) {
  std::map<std::string, double> out;
  for (const auto& [key, value] : v.struct_value().fields()) out[key] = value.number_value();
  return out;
}

struct CaseRun {
  std::vector<TierSpec> tiers;
  std::vector<ReplayPage> pages;
  ReplayResult result;
};

// Builds and replays one case; fails the test on malformed input.
CaseRun RunCase(const Value& c) {
  CaseRun run;
  for (const Value& t : Get(c, "tiers").list_value().values()) {
    const auto& f = t.list_value().values();
    run.tiers.push_back(TierSpec{f[0].string_value(), Int(f[1]), f[2].number_value(),
                                 f[3].number_value(), f[4].number_value()});
  }
  std::vector<std::string> names;
  for (const auto& [name, spec] : Get(c, "pages").struct_value().fields()) names.push_back(name);
  std::sort(names.begin(), names.end());
  std::map<std::string, uint32_t> index;
  for (const std::string& name : names) {
    const auto& spec = Get(Get(c, "pages"), name).list_value().values();
    absl::StatusOr<double> penalty = DecodePenaltyMs(spec[1].string_value());
    EXPECT_TRUE(penalty.ok()) << penalty.status();
    index[name] = static_cast<uint32_t>(run.pages.size());
    run.pages.push_back(ReplayPage{name, Int(spec[0]), penalty.value_or(0.0)});
  }
  std::vector<uint32_t> accesses;
  for (const Value& a : Get(c, "trace").list_value().values()) {
    EXPECT_TRUE(index.contains(a.string_value())) << a.string_value();
    accesses.push_back(index[a.string_value()]);
  }
  policy::PolicyParams params;
  for (const auto& [key, value] : Get(c, "policy_params").struct_value().fields()) {
    params.emplace_back(key, value.number_value());
  }
  absl::StatusOr<std::unique_ptr<policy::PlacementPolicy>> policy =
      policy::MakePlacementPolicy(Get(c, "policy").string_value(), params);
  EXPECT_TRUE(policy.ok()) << policy.status();
  if (!policy.ok()) return run;
  ReplayOptions options;
  options.prefetch_enabled = Get(c, "prefetch_enabled").bool_value();
  options.record_events = true;
  absl::StatusOr<ReplayResult> result = Replay(run.tiers, run.pages, accesses, **policy, options);
  EXPECT_TRUE(result.ok()) << result.status();
  if (result.ok()) run.result = *std::move(result);
  return run;
}

TEST(MicroGoldenTest, EveryCaseMatchesMetricsAndEventsExactly) {
  const std::string path = TierReferenceDir() + "/micro_golden.json";
  absl::StatusOr<std::string> text = ReadTextFile(path);
  ASSERT_TRUE(text.ok()) << text.status() << " (set KVTIER_TIER_REFERENCE_DIR)";
  absl::StatusOr<Value> doc = ParseJson(*text, path);
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_EQ(doc->kind_case(), Value::kListValue);
  ASSERT_EQ(doc->list_value().values_size(), 9) << "the reference has 9 micro cases";

  for (const Value& c : doc->list_value().values()) {
    SCOPED_TRACE(Get(c, "name").string_value());
    const CaseRun run = RunCase(c);
    const ReplayMetrics& m = run.result.metrics;
    const Value& want = Get(c, "metrics");
    EXPECT_EQ(m.accesses, Int(Get(want, "accesses")));
    EXPECT_EQ(m.miss_count, Int(Get(want, "miss_count")));
    EXPECT_EQ(m.eviction_count, Int(Get(want, "eviction_count")));
    EXPECT_EQ(m.avg_latency_ms(), Get(want, "avg_latency_ms").number_value());
    EXPECT_EQ(m.overall_hit_rate(), Get(want, "overall_hit_rate").number_value());
    EXPECT_EQ(m.bytes_moved(), Int(Get(want, "bytes_moved")));
    EXPECT_EQ(m.demand_bytes_moved, Int(Get(want, "demand_bytes_moved")));
    EXPECT_EQ(m.prefetch_bytes_moved, Int(Get(want, "prefetch_bytes_moved")));
    EXPECT_EQ(m.prefetch_requests, Int(Get(want, "prefetch_requests")));
    EXPECT_EQ(m.useful_prefetches, Int(Get(want, "useful_prefetches")));
    EXPECT_EQ(m.wasted_prefetches, Int(Get(want, "wasted_prefetches")));
    EXPECT_EQ(m.prefetch_usefulness(), Get(want, "prefetch_usefulness").number_value());
    std::map<std::string, double> hit_rate;
    for (const auto& [tier, hits] : m.tier_hits) {
      hit_rate[run.tiers[static_cast<size_t>(tier)].name] =
          static_cast<double>(hits) / static_cast<double>(m.accesses);
    }
    EXPECT_EQ(hit_rate, NumberMap(Get(want, "tier_hit_rate")));
    std::map<std::string, double> peak;
    for (size_t i = 0; i < run.tiers.size(); ++i) {
      peak[run.tiers[i].name] = static_cast<double>(m.peak_footprint_bytes[i]);
    }
    EXPECT_EQ(peak, NumberMap(Get(want, "peak_footprint_bytes")));

    const auto& want_events = Get(c, "events").list_value().values();
    ASSERT_EQ(run.result.events.size(), static_cast<size_t>(want_events.size()));
    for (int i = 0; i < want_events.size(); ++i) {
      SCOPED_TRACE(absl::StrCat("event ", i));
      const ReplayEvent& e = run.result.events[static_cast<size_t>(i)];
      const auto& w = want_events[i].list_value().values();
      EXPECT_EQ(e.step, Int(w[0]));
      EXPECT_EQ(EventTypeName(e.type), w[1].string_value());
      EXPECT_EQ(run.pages[e.page].id, w[2].string_value());
      EXPECT_EQ(run.tiers[static_cast<size_t>(e.src_tier)].name, w[3].string_value());
      if (e.dst_tier == policy::kNoTier) {
        EXPECT_EQ(w[4].kind_case(), Value::kNullValue);
      } else {
        EXPECT_EQ(run.tiers[static_cast<size_t>(e.dst_tier)].name, w[4].string_value());
      }
      EXPECT_EQ(RoundLatencyForLog(e.latency_ms), w[5].number_value());
      EXPECT_EQ(e.bytes, Int(w[6]));
    }
  }
}

}  // namespace
}  // namespace kvtier::replay
