#include "server/repair_pipeline.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "gtest/gtest.h"

namespace kvtier::server {
namespace {

// A float32 store of `rows` consecutive positions with random keys and values, plus one
// needle span whose keys point along +e0 with a large norm.
struct Fixture {
  storage::Geometry geometry;
  storage::TierBudget budget{"host", 1u << 30};
  std::unique_ptr<storage::RowStore> store;
  std::vector<float> keys, values;  // [layer][row][kv][d]
  int rows = 0;

  Fixture(int rows_in, int needle_begin, int needle_len) : rows(rows_in) {
    geometry.num_layers = 3;
    geometry.num_q_heads = 4;
    geometry.num_kv_heads = 2;
    geometry.head_dim = 8;
    geometry.dtype = storage::DType::kFloat32;
    EXPECT_TRUE(storage::ValidateAndNormalizeGeometry(geometry).ok());
    store = storage::RowStore::Create(geometry, &budget, 32);
    const size_t per_layer = static_cast<size_t>(rows) * 2 * 8;
    keys.resize(3 * per_layer);
    values.resize(3 * per_layer);
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.f, 0.3f);
    for (auto& k : keys) k = normal(rng);
    for (auto& v : values) v = normal(rng);
    for (int l = 0; l < 3; ++l) {
      for (int r = needle_begin; r < needle_begin + needle_len; ++r) {
        for (int kv = 0; kv < 2; ++kv) keys[l * per_layer + (r * 2 + kv) * 8] = 6.f;
      }
    }
    std::vector<int64_t> positions(rows);
    for (int r = 0; r < rows; ++r) positions[r] = 1000 + r;
    storage::OffloadChunk chunk;
    chunk.positions = positions;
    chunk.layer_begin = 0;
    chunk.layer_end = 3;
    chunk.keys =
        absl::MakeConstSpan(reinterpret_cast<const std::byte*>(keys.data()), keys.size() * 4);
    chunk.values =
        absl::MakeConstSpan(reinterpret_cast<const std::byte*>(values.data()), values.size() * 4);
    EXPECT_TRUE(store->Offload(chunk).ok());
  }
};

TEST(RepairPipeline, FindsThePlantedNeedle) {
  Fixture f(300, 120, 6);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(2);
  RepairPipeline pipeline(cpu.get());
  DecodedSignal signal;
  signal.num_tokens = 2;
  signal.queries.assign(3 * 4 * 2 * 8, 0.f);
  for (size_t i = 0; i < signal.queries.size(); i += 8) signal.queries[i] = 3.f;  // along +e0
  RepairParams params;
  params.pack.budget = 10;
  params.pack.burst_left = 0;
  params.pack.burst_right = 0;
  absl::StatusOr<SelectionOutcome> out =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->candidates, 300);
  ASSERT_EQ(out->chosen.size(), 10u);
  ASSERT_EQ(out->scores.size(), 10u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_GE(out->chosen[i], 1120);
    EXPECT_LT(out->chosen[i], 1126);
  }
  for (size_t i = 1; i < out->scores.size(); ++i) EXPECT_GE(out->scores[i - 1], out->scores[i]);
}

DecodedSignal AlongE0(int tokens) {
  DecodedSignal signal;
  signal.num_tokens = tokens;
  signal.queries.assign(static_cast<size_t>(3) * 4 * tokens * 8, 0.f);
  for (size_t i = 0; i < signal.queries.size(); i += 8) signal.queries[i] = 3.f;  // along +e0
  return signal;
}

TEST(RepairPipeline, FastModeFindsTheNeedleRescoringFewRows) {
  Fixture f(3000, 2100, 6);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(2);
  PipelineOptions options;
  options.fast_first_round = 64;
  options.fast_sample_rows = 64;
  RepairPipeline pipeline(cpu.get(), options);
  const DecodedSignal signal = AlongE0(2);
  RepairParams params;
  params.pack.budget = 40;  // bursts of 2 + 20: two anchors' worth
  params.scoring = ScoringMode::kFast;
  absl::StatusOr<SelectionOutcome> fast =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_TRUE(fast->fast);
  EXPECT_EQ(fast->candidates, 3000);
  EXPECT_EQ(fast->rescored, 64);
  EXPECT_GT(fast->first_pass_seconds, 0);
  ASSERT_EQ(fast->chosen.size(), 40u);
  for (int64_t p = 3100; p < 3106; ++p) {
    EXPECT_NE(std::find(fast->chosen.begin(), fast->chosen.end(), p), fast->chosen.end()) << p;
  }
  params.scoring = ScoringMode::kExact;
  absl::StatusOr<SelectionOutcome> exact =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(exact.ok());
  EXPECT_FALSE(exact->fast);
  EXPECT_EQ(exact->rescored, 3000);
  // The same rows, in the same order; burst rows that were not rescored have NaN scores,
  // and the rescored ones agree with the exact scores within the normalizer estimate.
  EXPECT_EQ(fast->chosen, exact->chosen);
  int rescored_rows = 0;
  for (size_t i = 0; i < fast->chosen.size(); ++i) {
    if (std::isnan(fast->scores[i])) continue;
    ++rescored_rows;
    EXPECT_NEAR(fast->scores[i], exact->scores[i], 0.05 * exact->scores[i]) << i;
  }
  EXPECT_GE(rescored_rows, 6);
}

// Bursts in the fast mode take their rows from the store's position map: promoted rows and
// released positions are skipped, windows cross segment boundaries (at 3112), and the
// needle's bursts are the exact mode's.
TEST(RepairPipeline, FastModeBurstsSkipHolesLikeTheExactMode) {
  Fixture f(3000, 2100, 6);  // needle at positions 3100..3105; segments of 32 rows
  ASSERT_TRUE(f.store->MarkPromoted(std::vector<int64_t>{3098, 3103, 3111, 3113}).ok());
  ASSERT_EQ(f.store->Release(std::vector<int64_t>{3107, 3115}).rows_released, 2);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(2);
  PipelineOptions options;
  options.fast_first_round = 64;
  options.fast_sample_rows = 64;
  RepairPipeline pipeline(cpu.get(), options);
  const DecodedSignal signal = AlongE0(2);
  RepairParams params;
  params.pack.budget = 60;
  params.scoring = ScoringMode::kFast;
  absl::StatusOr<SelectionOutcome> fast =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(fast.ok()) << fast.status();
  ASSERT_TRUE(fast->fast);
  EXPECT_EQ(fast->candidates, 2994);
  params.scoring = ScoringMode::kExact;
  absl::StatusOr<SelectionOutcome> exact =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(exact.ok());
  ASSERT_EQ(fast->chosen.size(), 60u);
  ASSERT_EQ(exact->chosen.size(), 60u);
  // The needle's bursts (3098..3125 less the holes) come first in both; the ordinary rows
  // after them may differ by the normalizer estimate (docs/FAST_MODE.md).
  const std::vector<int64_t> needle_bursts = {3099, 3100, 3101, 3102, 3104, 3105, 3106, 3108,
                                              3109, 3110, 3112, 3114, 3116, 3117, 3118, 3119,
                                              3120, 3121, 3122, 3123, 3124, 3125};
  EXPECT_EQ(std::vector<int64_t>(fast->chosen.begin(), fast->chosen.begin() + 22), needle_bursts);
  EXPECT_EQ(std::vector<int64_t>(exact->chosen.begin(), exact->chosen.begin() + 22), needle_bursts);
  for (int64_t hole : {3098, 3103, 3107, 3111, 3113, 3115}) {
    EXPECT_EQ(std::find(fast->chosen.begin(), fast->chosen.end(), hole), fast->chosen.end())
        << hole;
  }
}

TEST(RepairPipeline, FastModeRescoresMoreWhenThePackerRunsOutOfAnchors) {
  Fixture f(3000, 2100, 6);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(2);
  PipelineOptions options;
  options.fast_first_round = 16;
  options.fast_oversample = 1;
  options.fast_sample_rows = 16;
  RepairPipeline pipeline(cpu.get(), options);
  const DecodedSignal signal = AlongE0(1);
  RepairParams params;
  params.pack.budget = 100;  // no bursts: 100 anchors, more than the first 16 rescored
  params.pack.burst_left = 0;
  params.pack.burst_right = 0;
  params.scoring = ScoringMode::kFast;
  absl::StatusOr<SelectionOutcome> out =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->chosen.size(), 100u);
  EXPECT_GE(out->rescored, 100);
  for (size_t i = 1; i < out->scores.size(); ++i) EXPECT_GE(out->scores[i - 1], out->scores[i]);
  EXPECT_FALSE(std::isnan(out->scores.back()));  // no bursts: every row is a rescored anchor
}

// fast_oversample sets how many rows the first round rescores per anchor that K needs.
TEST(RepairPipeline, FastOversampleScalesTheFirstRound) {
  Fixture f(3000, 2100, 6);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(2);
  const DecodedSignal signal = AlongE0(2);
  RepairParams params;
  params.pack.budget = 40;  // bursts of 2 + 20: 2 anchors
  params.scoring = ScoringMode::kFast;
  for (int64_t oversample : {1, 20}) {
    PipelineOptions options;
    options.fast_first_round = 8;
    options.fast_oversample = oversample;
    options.fast_sample_rows = 64;
    ASSERT_TRUE(CheckPipelineOptions(options).ok());
    RepairPipeline pipeline(cpu.get(), options);
    absl::StatusOr<SelectionOutcome> out =
        pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_TRUE(out->fast);
    EXPECT_EQ(out->rescored, std::max<int64_t>(8, 2 * oversample)) << oversample;
  }
}

TEST(RepairPipeline, CheckPipelineOptionsNamesTheFlag) {
  EXPECT_TRUE(CheckPipelineOptions(PipelineOptions()).ok());
  PipelineOptions options;
  options.fast_oversample = 0;
  absl::Status s = CheckPipelineOptions(options);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("--fast_oversample"), std::string::npos) << s;
  options = PipelineOptions();
  options.fast_sample_rows = int32_t{1} << 30;
  s = CheckPipelineOptions(options);
  EXPECT_NE(s.message().find("--fast_sample_rows"), std::string::npos) << s;
}

TEST(RepairPipeline, FastModeFallsBackToExactWhenKNeedsMostRows) {
  Fixture f(3000, 2100, 6);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(2);
  PipelineOptions options;
  options.fast_first_round = 64;
  RepairPipeline pipeline(cpu.get(), options);
  const DecodedSignal signal = AlongE0(1);
  RepairParams params;
  params.pack.budget = 1000;  // 1000 anchors: more than a quarter of the rows to rescore
  params.pack.burst_left = 0;
  params.pack.burst_right = 0;
  params.scoring = ScoringMode::kFast;
  absl::StatusOr<SelectionOutcome> fast =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_FALSE(fast->fast);
  EXPECT_EQ(fast->rescored, 3000);
  params.scoring = ScoringMode::kExact;
  absl::StatusOr<SelectionOutcome> exact =
      pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(fast->chosen, exact->chosen);
  EXPECT_EQ(fast->scores, exact->scores);
}

TEST(RepairPipeline, AutoScoresExactlyUpToTheThreshold) {
  Fixture f(300, 120, 6);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(1);
  const DecodedSignal signal = AlongE0(2);
  RepairParams params;
  params.pack.budget = 10;
  for (int64_t threshold : {300, 299}) {
    PipelineOptions options;
    options.fast_min_candidates = threshold;
    options.fast_first_round = 16;
    RepairPipeline pipeline(cpu.get(), options);
    absl::StatusOr<SelectionOutcome> out =
        pipeline.Select(*f.store, f.geometry, params, &signal, nullptr);
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->fast, threshold < 300) << threshold;
  }
}

TEST(RepairPipeline, StopsWhenTheDeadlinePasses) {
  Fixture f(100, 10, 2);
  std::unique_ptr<scorer::Scorer> cpu = scorer::MakeCpuScorer(1);
  RepairPipeline pipeline(cpu.get());
  DecodedSignal signal;
  signal.num_tokens = 1;
  signal.queries.assign(3 * 4 * 8, 0.1f);
  RepairParams params;
  params.pack.budget = 5;
  absl::StatusOr<SelectionOutcome> out =
      pipeline.Select(*f.store, f.geometry, params, &signal, [] { return true; });
  EXPECT_EQ(out.status().code(), absl::StatusCode::kDeadlineExceeded);
}

// Gathers every slice of the plan into one reused message, as the service streams them.
std::vector<v1::PayloadChunk> GatherAll(const Fixture& f, absl::Span<const int64_t> positions,
                                        size_t max_chunk_bytes) {
  std::vector<v1::PayloadChunk> chunks;
  v1::PayloadChunk reused;
  for (const PayloadSlice& slice : PlanPayload(positions.size(), f.geometry, max_chunk_bytes)) {
    EXPECT_TRUE(GatherSlice(*f.store, f.geometry, positions, slice, &reused).ok());
    EXPECT_EQ(reused.keys().size() + reused.values().size(), SliceBytes(slice, f.geometry));
    chunks.push_back(reused);
  }
  return chunks;
}

TEST(PayloadPlan, ChunksReassembleToTheOffloadedBytes) {
  Fixture f(200, 0, 1);
  std::vector<int64_t> wanted = {1199, 1000, 1050, 1051, 1100};
  const size_t layer_row = f.geometry.LayerRowBytes();  // 64 bytes
  // Two rows per chunk by size: 2 * (K+V of 3 layers) = 768 bytes; the last chunk is short,
  // so the reused message must shrink.
  std::vector<v1::PayloadChunk> chunks = GatherAll(f, wanted, 2 * 2 * 3 * layer_row);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[2].keys().size(), 3 * layer_row);
  size_t next = 0;
  for (const v1::PayloadChunk& c : chunks) {
    EXPECT_EQ(c.layer_begin(), 0);
    EXPECT_EQ(c.layer_end(), 3);
    const int n = c.positions_size();
    for (int i = 0; i < n; ++i, ++next) {
      ASSERT_EQ(c.positions(i), wanted[next]);
      const int row = static_cast<int>(wanted[next] - 1000);
      for (int l = 0; l < 3; ++l) {
        const float* src = f.keys.data() + (static_cast<size_t>(l) * 200 + row) * 16;
        const float* got = reinterpret_cast<const float*>(c.keys().data()) + (l * n + i) * 16;
        EXPECT_EQ(0, std::memcmp(src, got, 64));
        const float* vsrc = f.values.data() + (static_cast<size_t>(l) * 200 + row) * 16;
        const float* vgot = reinterpret_cast<const float*>(c.values().data()) + (l * n + i) * 16;
        EXPECT_EQ(0, std::memcmp(vsrc, vgot, 64));
      }
    }
  }
  EXPECT_EQ(next, wanted.size());
}

TEST(PayloadPlan, SplitsARowByLayersWhenItExceedsTheLimit) {
  Fixture f(20, 0, 1);
  std::vector<int64_t> wanted = {1003, 1007};
  const size_t layer_row = f.geometry.LayerRowBytes();
  // Room for one layer of K+V only: each row becomes 3 chunks.
  std::vector<v1::PayloadChunk> chunks = GatherAll(f, wanted, 2 * layer_row);
  ASSERT_EQ(chunks.size(), 6u);
  for (const v1::PayloadChunk& c : chunks) {
    EXPECT_EQ(c.positions_size(), 1);
    EXPECT_EQ(c.layer_end() - c.layer_begin(), 1);
    EXPECT_EQ(c.keys().size(), layer_row);
    const int row = static_cast<int>(c.positions(0) - 1000);
    const float* src = f.keys.data() + (static_cast<size_t>(c.layer_begin()) * 20 + row) * 16;
    EXPECT_EQ(0, std::memcmp(src, c.keys().data(), layer_row));
  }
}

TEST(PayloadPlan, LargeBudgetsStayWithinTheChunkLimit) {
  Fixture f(20, 0, 1);
  const std::vector<PayloadSlice> plan = PlanPayload(1000000, f.geometry);
  uint64_t total = 0;
  for (const PayloadSlice& slice : plan) {
    EXPECT_LE(SliceBytes(slice, f.geometry), kMaxPayloadChunkBytes);
    total += SliceBytes(slice, f.geometry);
  }
  EXPECT_EQ(total, 1000000ull * f.geometry.RowBytes());
}

TEST(PayloadPlan, ReleasedRowIsNotFound) {
  Fixture f(20, 0, 1);
  std::vector<int64_t> wanted = {1002, 5};
  v1::PayloadChunk chunk;
  const std::vector<PayloadSlice> plan = PlanPayload(wanted.size(), f.geometry);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(GatherSlice(*f.store, f.geometry, wanted, plan[0], &chunk).code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvtier::server
