// kvtier-bench select (recall.h): one host-RAM store of synthetic 7B-shaped rows, repaired
// by the exact and the fast mode through server::RepairPipeline, side by side.
#include "tools/kvtier_bench/recall.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gpu/scorer.h"
#include "gpu/sketch.h"
#include "server/repair_pipeline.h"
#include "storage/row_store.h"
#include "storage/tier.h"
#include "tools/kvtier_bench/bench_util.h"
#include "tools/synthetic/synthetic_kv.h"

namespace kvtier::bench {

int RunSelectBench(const SelectBenchOptions& options) {
  const synthetic::SyntheticKv kv(synthetic::SevenBClassOptions(options.rows, options.seed));
  const std::vector<int32_t> source = SourceLayers(options.layers);
  storage::Geometry geometry;
  geometry.num_layers = options.layers;  // only the scoring layers are stored (index-only-like)
  geometry.num_q_heads = kv.options().num_q_heads;
  geometry.num_kv_heads = kv.options().num_kv_heads;
  geometry.head_dim = kv.options().head_dim;
  geometry.dtype = storage::DType::kFloat16;
  if (absl::Status s = storage::ValidateAndNormalizeGeometry(geometry); !s.ok()) {
    std::fprintf(stderr, "geometry: %s\n", s.ToString().c_str());
    return 1;
  }
  storage::TierBudget budget("host", ~uint64_t{0} >> 1);
  std::unique_ptr<storage::RowStore> store = storage::RowStore::Create(geometry, &budget);

  // Offload in chunks of 1024 rows, one source layer at a time.
  const auto load_start = Clock::now();
  const size_t elems = kv.LayerRowElements();
  std::vector<uint16_t> keys, values, all_keys, all_values;
  for (size_t first = 0; first < static_cast<size_t>(options.rows); first += 1024) {
    const size_t n = std::min<size_t>(1024, static_cast<size_t>(options.rows) - first);
    std::vector<size_t> rows(n);
    std::iota(rows.begin(), rows.end(), first);
    all_keys.resize(source.size() * n * elems);
    all_values.resize(source.size() * n * elems);
    for (size_t i = 0; i < source.size(); ++i) {
      keys.resize(n * elems);
      values.resize(n * elems);
      kv.FillKeys(source[i], source[i] + 1, rows, absl::MakeSpan(keys));
      kv.FillValues(source[i], source[i] + 1, rows, absl::MakeSpan(values));
      std::copy(keys.begin(), keys.end(), all_keys.begin() + i * n * elems);
      std::copy(values.begin(), values.end(), all_values.begin() + i * n * elems);
    }
    storage::OffloadChunk chunk;
    chunk.positions = absl::MakeConstSpan(kv.positions()).subspan(first, n);
    chunk.layer_begin = 0;
    chunk.layer_end = options.layers;
    chunk.keys = absl::MakeConstSpan(reinterpret_cast<const std::byte*>(all_keys.data()),
                                     all_keys.size() * 2);
    chunk.values = absl::MakeConstSpan(reinterpret_cast<const std::byte*>(all_values.data()),
                                       all_values.size() * 2);
    if (absl::StatusOr<storage::OffloadResult> r = store->Offload(chunk); !r.ok()) {
      std::fprintf(stderr, "offload: %s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  const double load_seconds = SecondsSince(load_start);

  // The signal: T tokens for every scoring layer. "needle" aims every head at needle 0;
  // "mixed" aims (head, token) at needle (head * T + token) % needles, the hard case for a
  // first pass that summarizes a head's queries.
  const int32_t tokens = options.tokens;
  const int32_t heads = geometry.num_q_heads;
  const size_t dim = static_cast<size_t>(geometry.head_dim);
  const int32_t needles = static_cast<int32_t>(kv.needles().size());
  std::vector<std::vector<float>> per_needle;
  for (int32_t n = 0; n < (options.queries == "mixed" ? needles : 1); ++n) {
    per_needle.push_back(kv.Queries(n, tokens, 2.0f, 1.0f, options.seed + 1 + n));
  }
  server::DecodedSignal signal;
  signal.num_tokens = tokens;
  signal.queries.resize(source.size() * heads * tokens * dim);
  for (size_t i = 0; i < source.size(); ++i) {
    for (int32_t h = 0; h < heads; ++h) {
      for (int32_t t = 0; t < tokens; ++t) {
        const std::vector<float>& q = per_needle[(h * tokens + t) % per_needle.size()];
        const size_t src = ((static_cast<size_t>(source[i]) * heads + h) * tokens + t) * dim;
        const size_t dst = ((i * heads + h) * tokens + t) * dim;
        std::copy_n(q.begin() + static_cast<ptrdiff_t>(src), dim, signal.queries.begin() + dst);
      }
    }
  }
  absl::flat_hash_set<int64_t> needle_positions;
  for (size_t n = 0; n < per_needle.size(); ++n) {
    for (int64_t p : kv.needles()[n].positions) needle_positions.insert(p);
  }

  std::unique_ptr<scorer::Scorer> scorer = scorer::MakeCpuScorer();
  server::PipelineOptions pipeline_options;
  pipeline_options.fast_first_round = options.first_round;
  pipeline_options.fast_oversample = options.oversample;
  pipeline_options.fast_sample_rows = options.sample_rows;
  server::RepairPipeline pipeline(scorer.get(), pipeline_options);
  const double sketch_bytes = static_cast<double>(options.rows) *
                              (static_cast<double>(scorer::SketchCodeBytes(
                                   options.layers, geometry.num_kv_heads, geometry.head_dim, 1)) +
                               4.0 * options.layers * geometry.num_kv_heads);
  const double floor_seconds = StreamReadSeconds(static_cast<size_t>(sketch_bytes));

  int failed = 0;
  for (int64_t budget_k : options.budgets) {
    server::RepairParams params;
    params.pack.budget = budget_k;
    auto run = [&](server::ScoringMode mode) {
      params.scoring = mode;
      return pipeline.Select(*store, geometry, params, &signal, nullptr);
    };
    // Quality: exact scores of every candidate, then both selections.
    absl::StatusOr<server::SelectionOutcome> exact = run(server::ScoringMode::kExact);
    absl::StatusOr<server::SelectionOutcome> fast = run(server::ScoringMode::kFast);
    if (!exact.ok() || !fast.ok()) {
      std::fprintf(stderr, "select: %s %s\n", exact.status().ToString().c_str(),
                   fast.status().ToString().c_str());
      return 1;
    }
    // Exact a_i of every chosen row of either mode, from a full exact scoring.
    absl::flat_hash_map<int64_t, double> exact_score;
    {
      server::RepairParams all = params;
      all.pack.budget = std::min<int64_t>(options.rows, 1 << 20);
      all.pack.burst_left = all.pack.burst_right = 0;
      all.scoring = server::ScoringMode::kExact;
      absl::StatusOr<server::SelectionOutcome> every =
          pipeline.Select(*store, geometry, all, &signal, nullptr);
      if (!every.ok()) return 1;
      for (size_t i = 0; i < every->chosen.size(); ++i) {
        exact_score[every->chosen[i]] = every->scores[i];
      }
    }
    const absl::flat_hash_set<int64_t> exact_set(exact->chosen.begin(), exact->chosen.end());
    int64_t common = 0, fast_needles = 0, exact_needles = 0;
    double fast_mass = 0, exact_mass = 0;
    for (int64_t p : fast->chosen) {
      common += exact_set.contains(p);
      fast_needles += needle_positions.contains(p);
      fast_mass += exact_score[p];
    }
    for (int64_t p : exact->chosen) {
      exact_needles += needle_positions.contains(p);
      exact_mass += exact_score[p];
    }
    const double recall =
        exact->chosen.empty() ? 1.0 : static_cast<double>(common) / exact->chosen.size();
    const double mass_recall = exact_mass > 0 ? fast_mass / exact_mass : 1.0;

    // Timing: warm-up done above; `runs` fast and `exact_runs` exact selections.
    std::vector<double> fast_total, fast_first, fast_rescore, fast_select, exact_total;
    int64_t rescored = fast->rescored;
    for (int32_t i = 0; i < options.runs; ++i) {
      const auto start = Clock::now();
      absl::StatusOr<server::SelectionOutcome> o = run(server::ScoringMode::kFast);
      fast_total.push_back(SecondsSince(start));
      if (!o.ok()) return 1;
      fast_first.push_back(o->first_pass_seconds);
      fast_rescore.push_back(o->rescore_seconds);
      fast_select.push_back(o->select_seconds);
      rescored = o->rescored;
    }
    for (int32_t i = 0; i < options.exact_runs; ++i) {
      const auto start = Clock::now();
      if (!run(server::ScoringMode::kExact).ok()) return 1;
      exact_total.push_back(SecondsSince(start));
    }
    const double needle_total = static_cast<double>(needle_positions.size());
    std::printf(
        "{\"rows\": %lld, \"layers\": %d, \"tokens\": %d, \"queries\": \"%s\", \"K\": %lld, "
        "\"chosen_fast\": %zu, \"chosen_exact\": %zu, \"recall_at_k\": %.4f, "
        "\"score_mass_recall\": %.4f, \"needle_recall_fast\": %.4f, "
        "\"needle_recall_exact\": %.4f, \"rescored\": %lld, "
        "\"fast_p50_ms\": %.3f, \"fast_p95_ms\": %.3f, \"fast_p99_ms\": %.3f, "
        "\"first_pass_p50_ms\": %.3f, \"rescore_p50_ms\": %.3f, \"select_p50_ms\": %.3f, "
        "\"exact_p50_ms\": %.3f, \"sketch_mib\": %.1f, \"floor_ms\": %.3f, "
        "\"first_pass_over_floor\": %.2f, \"exact_over_fast\": %.1f, \"load_s\": %.1f}\n",
        static_cast<long long>(options.rows), options.layers, tokens, options.queries.c_str(),
        static_cast<long long>(budget_k), fast->chosen.size(), exact->chosen.size(), recall,
        mass_recall, needle_total > 0 ? fast_needles / needle_total : 1.0,
        needle_total > 0 ? exact_needles / needle_total : 1.0, static_cast<long long>(rescored),
        1e3 * Percentile(fast_total, 0.5), 1e3 * Percentile(fast_total, 0.95),
        1e3 * Percentile(fast_total, 0.99), 1e3 * Percentile(fast_first, 0.5),
        1e3 * Percentile(fast_rescore, 0.5), 1e3 * Percentile(fast_select, 0.5),
        1e3 * Percentile(exact_total, 0.5), sketch_bytes / (1 << 20), 1e3 * floor_seconds,
        floor_seconds > 0 ? Percentile(fast_first, 0.5) / floor_seconds : 0.0,
        exact_total.empty() ? 0.0 : Percentile(exact_total, 0.5) / Percentile(fast_total, 0.5),
        load_seconds);
    std::fflush(stdout);
    if (fast_needles < exact_needles) {
      std::fprintf(stderr, "guard: the fast mode missed a needle the exact mode found\n");
      failed = 1;
    }
    const double exact_over_fast =
        exact_total.empty() ? 0.0 : Percentile(exact_total, 0.5) / Percentile(fast_total, 0.5);
    if (options.min_exact_over_fast > 0 && exact_over_fast < options.min_exact_over_fast) {
      std::fprintf(stderr, "guard: exact / fast = %.2f, below %.2f\n", exact_over_fast,
                   options.min_exact_over_fast);
      failed = 1;
    }
    const double over_floor = Percentile(fast_first, 0.5) / floor_seconds;
    if (options.max_first_pass_over_floor > 0 && over_floor > options.max_first_pass_over_floor) {
      std::fprintf(stderr, "guard: first pass / floor = %.2f, above %.2f\n", over_floor,
                   options.max_first_pass_over_floor);
      failed = 1;
    }
  }
  return failed;
}

}  // namespace kvtier::bench
