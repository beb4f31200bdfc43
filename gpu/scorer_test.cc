// Tests of the CPU scorer: golden cases end to end (scores + SelectPositions), random shapes
// against ReferenceScore on every ISA this CPU has, exact ties, cancellation and validation.
#include "gpu/scorer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "gpu/fast_select.h"
#include "gpu/internal/cpu_kernels.h"
#include "gpu/internal/cpu_scorer_internal.h"
#include "gpu/selection.h"
#include "gpu/sketch.h"
#include "tools/golden/golden_case.h"

namespace kvtier::scorer {
namespace {

using internal::Isa;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// Keys laid out as KeyBlocks, built from keys given per row.
struct BlockStore {
  int32_t capacity = 0;
  std::vector<std::vector<uint8_t>> key_bytes;
  std::vector<std::vector<uint8_t>> valid;
  std::vector<std::vector<uint8_t>> sketch_codes;  // gpu/sketch.h, per block
  std::vector<std::vector<float>> sketch_scales;
  std::vector<KeyBlock> blocks;
  std::vector<int64_t> slot_of_row;  // row -> block * capacity + slot
};

// `row_keys(row, l, g)` returns a pointer to head_dim elements of key_type for that row.
// Rows fill slots in order, but every 7th slot is left invalid (with keys that would score
// high if they leaked into the normalizer) and every third block ends early.
template <typename RowKeys>
BlockStore BuildBlocks(const ScoreShape& shape, int64_t num_rows, int32_t capacity,
                       RowKeys row_keys) {
  BlockStore store;
  store.capacity = capacity;
  const int elem = KeyTypeSize(shape.key_type);
  const int64_t block_bytes =
      int64_t{shape.num_layers} * shape.num_kv_heads * shape.head_dim * capacity * elem;
  std::vector<uint8_t> loud(static_cast<size_t>(shape.head_dim) * elem, 0);
  for (int d = 0; d < shape.head_dim; ++d) {
    // 8.0 in the element type: a key that would dominate a softmax if it were counted.
    if (shape.key_type == KeyType::kFloat32) {
      const float v = 8.0f;
      std::memcpy(&loud[d * 4], &v, 4);
    } else {
      const uint16_t v = shape.key_type == KeyType::kFloat16 ? 0x4800 : 0x4100;
      std::memcpy(&loud[d * 2], &v, 2);
    }
  }
  int64_t row = 0;
  while (row < num_rows) {
    const size_t b = store.blocks.size();
    std::vector<uint8_t> bytes(static_cast<size_t>(block_bytes), 0xff);  // garbage: NaNs
    std::vector<uint8_t> valid(capacity, 0);
    std::vector<uint8_t> codes(
        SketchCodeBytes(shape.num_layers, shape.num_kv_heads, shape.head_dim, capacity), 0);
    std::vector<float> scales(SketchScaleCount(shape.num_layers, shape.num_kv_heads, capacity));
    std::vector<uint8_t> row_bytes(static_cast<size_t>(shape.num_kv_heads) * shape.head_dim * elem);
    const int32_t usable = b % 3 == 1 ? capacity - 5 : capacity;
    int32_t used = 0;
    for (; used < usable && row < num_rows; ++used) {
      const bool hole = used % 7 == 3;
      valid[used] = hole ? 0 : 1;
      for (int l = 0; l < shape.num_layers; ++l) {
        for (int g = 0; g < shape.num_kv_heads; ++g) {
          const uint8_t* src = hole ? loud.data() : row_keys(row, l, g);
          for (int d = 0; d < shape.head_dim; ++d) {
            const int64_t index =
                ((int64_t{l} * shape.num_kv_heads + g) * shape.head_dim + d) * capacity + used;
            std::memcpy(&bytes[index * elem], src + d * elem, elem);
          }
        }
      }
      for (int l = 0; l < shape.num_layers; ++l) {
        for (int g = 0; g < shape.num_kv_heads; ++g) {
          const uint8_t* src = hole ? loud.data() : row_keys(row, l, g);
          std::memcpy(&row_bytes[static_cast<size_t>(g) * shape.head_dim * elem], src,
                      static_cast<size_t>(shape.head_dim) * elem);
        }
        EncodeSketchRow(
            shape.key_type, row_bytes.data(), shape.num_kv_heads, shape.head_dim, capacity, used,
            codes.data() + l * SketchCodeBytes(1, shape.num_kv_heads, shape.head_dim, capacity),
            scales.data() + static_cast<size_t>(l) * shape.num_kv_heads * capacity);
      }
      if (!hole) store.slot_of_row.push_back(static_cast<int64_t>(b) * capacity + used);
      if (!hole) ++row;
    }
    store.key_bytes.push_back(std::move(bytes));
    store.valid.push_back(std::move(valid));
    store.sketch_codes.push_back(std::move(codes));
    store.sketch_scales.push_back(std::move(scales));
    store.blocks.push_back(KeyBlock{nullptr, used, nullptr});
  }
  // An empty block at the end: rows == 0 with null pointers is allowed.
  store.key_bytes.emplace_back();
  store.valid.emplace_back();
  store.blocks.push_back(KeyBlock{});
  for (size_t b = 0; b + 1 < store.blocks.size(); ++b) {
    store.blocks[b].keys = store.key_bytes[b].data();
    store.blocks[b].valid = store.valid[b].data();
    store.blocks[b].sketch_codes = store.sketch_codes[b].data();
    store.blocks[b].sketch_scales = store.sketch_scales[b].data();
  }
  return store;
}

std::vector<Isa> SupportedIsas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    if (internal::IsaSupported(isa)) out.push_back(isa);
  }
  return out;
}

std::unique_ptr<Scorer> MakeScorer(Isa isa, int threads, int64_t cache_budget) {
  internal::CpuScorerOptions options;
  options.num_threads = threads;
  options.isa = isa;
  options.cache_budget_bytes = cache_budget;
  auto scorer = internal::MakeCpuScorerWithOptions(options);
  EXPECT_TRUE(scorer.ok()) << scorer.status();
  return std::move(*scorer);
}

// ---------------------------------------------------------------------------------------
// Golden cases.

// A golden case's keys as blocks of `capacity` slots, and the request that scores them.
struct GoldenStore {
  GoldenStore(const golden::Case& c, int32_t capacity) {
    const ScoreShape shape{c.num_layers, c.num_q_heads,   c.num_kv_heads,
                           c.head_dim,   c.signal_tokens, KeyType::kFloat32};
    store = BuildBlocks(shape, c.num_rows, capacity, [&](int64_t row, int l, int g) {
      const int64_t index = ((int64_t{l} * c.num_kv_heads + g) * c.num_rows + row) * c.head_dim;
      return reinterpret_cast<const uint8_t*>(&c.keys[index]);
    });
    request.shape = shape;
    request.block_capacity = capacity;
    request.blocks = store.blocks;
    request.queries = c.queries;
    request.lse_active = c.lse_active;
  }
  GoldenStore(const GoldenStore&) = delete;
  GoldenStore& operator=(const GoldenStore&) = delete;

  BlockStore store;
  ScoreRequest request;  // points into store and the case
};

class GoldenTest : public ::testing::TestWithParam<int32_t> {};

TEST_P(GoldenTest, CpuAndReferenceReproduceChosen) {
  const int32_t capacity = GetParam();
  const std::vector<std::string> dirs = golden::ListCases(golden::DefaultReferenceDir());
  ASSERT_GE(dirs.size(), 8u) << "golden cases not found under " << golden::DefaultReferenceDir();
  std::unique_ptr<Scorer> cpu = MakeCpuScorer();
  for (const std::string& dir : dirs) {
    SCOPED_TRACE(dir);
    absl::StatusOr<golden::Case> loaded = golden::LoadCase(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const golden::Case& c = *loaded;
    const GoldenStore golden_store(c, capacity);
    const BlockStore& store = golden_store.store;
    const ScoreRequest& request = golden_store.request;

    std::vector<double> slots(store.blocks.size() * capacity);
    for (int use_reference = 0; use_reference < 2; ++use_reference) {
      SCOPED_TRACE(use_reference ? "reference" : "cpu");
      const absl::Status status = use_reference ? ReferenceScore(request, absl::MakeSpan(slots))
                                                : cpu->Score(request, absl::MakeSpan(slots));
      ASSERT_TRUE(status.ok()) << status;
      std::vector<double> scores(c.num_rows);
      for (int64_t row = 0; row < c.num_rows; ++row) {
        scores[row] = slots[store.slot_of_row[row]];
        ASSERT_TRUE(std::isfinite(scores[row])) << "row " << row;
      }
      CandidateSet candidates{c.positions, scores, c.importance, {}};
      PackOptions options;
      options.budget = c.budget;
      options.burst_left = c.burst_left;
      options.burst_right = c.burst_right;
      const SelectorKind kind =
          c.selector == "oldest" ? SelectorKind::kOldest : SelectorKind::kRepairKv;
      ASSERT_TRUE(c.selector == "oldest" || c.selector == "repairkv") << c.selector;
      absl::StatusOr<Selection> selection = SelectPositions(candidates, kind, options);
      ASSERT_TRUE(selection.ok()) << selection.status();
      EXPECT_EQ(selection->chosen, c.expected_chosen);
      std::vector<int64_t> sorted = selection->chosen;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(sorted, c.expected_sorted);
      const std::set<int64_t> chosen(selection->chosen.begin(), selection->chosen.end());
      for (int64_t needle : c.needle_positions) {
        EXPECT_TRUE(chosen.count(needle)) << needle;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(BlockCapacity, GoldenTest, ::testing::Values(64, 256));

TEST(GoldenLoaderTest, MissingFolderIsNotFound) {
  EXPECT_EQ(golden::LoadCase("/nonexistent/kvtier/case").status().code(),
            absl::StatusCode::kNotFound);
}

// ---------------------------------------------------------------------------------------
// Random shapes against the float64 reference.

struct RandomProblem {
  ScoreShape shape;
  int64_t num_rows = 0;
  int32_t capacity = 0;
  std::vector<uint8_t> row_keys;  // [row][layer][kv_head][head_dim] of key_type
  std::vector<float> queries;
  std::vector<float> lse_active;
  BlockStore store;

  ScoreRequest Request() const {
    ScoreRequest request;
    request.shape = shape;
    request.block_capacity = capacity;
    request.blocks = store.blocks;
    request.queries = queries;
    request.lse_active = lse_active;
    return request;
  }
  const uint8_t* RowKey(int64_t row, int l, int g) const {
    const int64_t index = ((row * shape.num_layers + l) * shape.num_kv_heads + g) * shape.head_dim;
    return &row_keys[index * KeyTypeSize(shape.key_type)];
  }
};

// Random element of `type` of moderate magnitude (about 2^-4 .. 2^2).
void RandomElement(KeyType type, std::mt19937_64& rng, uint8_t* out) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  switch (type) {
    case KeyType::kFloat32: {
      const float v = normal(rng);
      std::memcpy(out, &v, 4);
      return;
    }
    case KeyType::kFloat16: {
      const uint16_t bits =
          static_cast<uint16_t>(((rng() & 1) << 15) | ((11 + rng() % 6) << 10) | (rng() & 0x3ff));
      std::memcpy(out, &bits, 2);
      return;
    }
    case KeyType::kBFloat16: {
      const uint16_t bits =
          static_cast<uint16_t>(((rng() & 1) << 15) | ((123 + rng() % 6) << 7) | (rng() & 0x7f));
      std::memcpy(out, &bits, 2);
      return;
    }
  }
}

RandomProblem MakeProblem(uint64_t seed, KeyType type) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int lo, int hi) { return static_cast<int>(lo + rng() % (hi - lo + 1)); };
  RandomProblem p;
  const int dims[] = {8, 16, 24, 40, 64, 96, 128};
  p.shape.num_layers = uniform(1, 3);
  p.shape.num_kv_heads = uniform(1, 3);
  p.shape.num_q_heads = p.shape.num_kv_heads * uniform(1, 5);
  p.shape.head_dim = dims[rng() % 7];
  p.shape.num_tokens = seed % 4 == 0 ? 64 : uniform(1, 20);
  p.shape.key_type = type;
  p.num_rows = uniform(1, 600);
  p.capacity = 16 * uniform(1, 8);
  const int elem = KeyTypeSize(type);
  p.row_keys.resize(static_cast<size_t>(p.num_rows) * p.shape.num_layers * p.shape.num_kv_heads *
                    p.shape.head_dim * elem);
  for (size_t i = 0; i < p.row_keys.size(); i += elem) RandomElement(type, rng, &p.row_keys[i]);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  p.queries.resize(static_cast<size_t>(p.shape.num_layers) * p.shape.num_q_heads *
                   p.shape.num_tokens * p.shape.head_dim);
  for (float& q : p.queries) q = normal(rng);
  if (seed % 2 == 1) {
    p.lse_active.resize(static_cast<size_t>(p.shape.num_layers) * p.shape.num_q_heads *
                        p.shape.num_tokens);
    for (float& v : p.lse_active) v = 2.0f + 3.0f * normal(rng);
  }
  p.store = BuildBlocks(p.shape, p.num_rows, p.capacity,
                        [&p](int64_t row, int l, int g) { return p.RowKey(row, l, g); });
  return p;
}

void ExpectClose(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (want[i] == kNegInf) {
      ASSERT_EQ(got[i], kNegInf) << "slot " << i;
      continue;
    }
    ASSERT_NEAR(got[i], want[i], 1e-4 * std::abs(want[i]) + 1e-300) << "slot " << i;
  }
}

struct IsaAndType {
  Isa isa;
  KeyType type;
};

class RandomShapeTest : public ::testing::TestWithParam<IsaAndType> {};

TEST_P(RandomShapeTest, MatchesReference) {
  const auto [isa, type] = GetParam();
  if (!internal::IsaSupported(isa)) GTEST_SKIP() << "CPU lacks " << internal::IsaName(isa);
  // Both the cached-scores path and the recompute path (budget 0), one and two threads.
  std::unique_ptr<Scorer> cached = MakeScorer(isa, 2, int64_t{64} << 20);
  std::unique_ptr<Scorer> recompute = MakeScorer(isa, 1, 0);
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    RandomProblem p = MakeProblem(seed * 7919 + static_cast<uint64_t>(type), type);
    SCOPED_TRACE(testing::Message()
                 << "seed " << seed << " L=" << p.shape.num_layers << " Hq=" << p.shape.num_q_heads
                 << " Hkv=" << p.shape.num_kv_heads << " D=" << p.shape.head_dim
                 << " T=" << p.shape.num_tokens << " rows=" << p.num_rows << " cap=" << p.capacity
                 << " lse=" << !p.lse_active.empty());
    const ScoreRequest request = p.Request();
    std::vector<double> want(p.store.blocks.size() * p.capacity);
    ASSERT_TRUE(ReferenceScore(request, absl::MakeSpan(want)).ok());
    for (Scorer* scorer : {cached.get(), recompute.get()}) {
      std::vector<double> got(want.size(), 123.0);
      ASSERT_TRUE(scorer->Score(request, absl::MakeSpan(got)).ok());
      ExpectClose(got, want);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllIsas, RandomShapeTest,
                         ::testing::Values(IsaAndType{Isa::kPortable, KeyType::kFloat32},
                                           IsaAndType{Isa::kPortable, KeyType::kFloat16},
                                           IsaAndType{Isa::kPortable, KeyType::kBFloat16},
                                           IsaAndType{Isa::kAvx2, KeyType::kFloat32},
                                           IsaAndType{Isa::kAvx2, KeyType::kFloat16},
                                           IsaAndType{Isa::kAvx2, KeyType::kBFloat16},
                                           IsaAndType{Isa::kAvx512, KeyType::kFloat32},
                                           IsaAndType{Isa::kAvx512, KeyType::kFloat16},
                                           IsaAndType{Isa::kAvx512, KeyType::kBFloat16}),
                         [](const testing::TestParamInfo<IsaAndType>& info) {
                           const char* type = info.param.type == KeyType::kFloat32   ? "fp32"
                                              : info.param.type == KeyType::kFloat16 ? "fp16"
                                                                                     : "bf16";
                           return std::string(internal::IsaName(info.param.isa)) + "_" + type;
                         });

TEST(ScorerTest, DuplicateRowsTieExactlyOnEveryIsa) {
  for (KeyType type : {KeyType::kFloat32, KeyType::kFloat16}) {
    RandomProblem p = MakeProblem(4, type);
    p.shape.num_tokens = 5;
    p.queries.resize(static_cast<size_t>(p.shape.num_layers) * p.shape.num_q_heads * 5 *
                     p.shape.head_dim);
    p.lse_active.clear();
    p.num_rows = 300;
    p.row_keys.resize(static_cast<size_t>(p.num_rows) * p.shape.num_layers * p.shape.num_kv_heads *
                      p.shape.head_dim * KeyTypeSize(type));
    std::mt19937_64 rng(99);
    for (size_t i = 0; i < p.row_keys.size(); i += KeyTypeSize(type)) {
      RandomElement(type, rng, &p.row_keys[i]);
    }
    // Rows 10, 17, 31, 64, 150, 299 are copies of row 3 (different lanes and blocks).
    const std::vector<int64_t> copies = {10, 17, 31, 64, 150, 299};
    const size_t row_bytes = static_cast<size_t>(p.shape.num_layers) * p.shape.num_kv_heads *
                             p.shape.head_dim * KeyTypeSize(type);
    for (int64_t row : copies) {
      std::memcpy(&p.row_keys[row * row_bytes], &p.row_keys[3 * row_bytes], row_bytes);
    }
    p.capacity = 48;
    p.store = BuildBlocks(p.shape, p.num_rows, p.capacity,
                          [&p](int64_t row, int l, int g) { return p.RowKey(row, l, g); });
    for (Isa isa : SupportedIsas()) {
      SCOPED_TRACE(internal::IsaName(isa));
      std::unique_ptr<Scorer> scorer = MakeScorer(isa, 2, int64_t{64} << 20);
      std::vector<double> got(p.store.blocks.size() * p.capacity);
      ASSERT_TRUE(scorer->Score(p.Request(), absl::MakeSpan(got)).ok());
      const double first = got[p.store.slot_of_row[3]];
      ASSERT_TRUE(std::isfinite(first));
      for (int64_t row : copies) {
        EXPECT_EQ(got[p.store.slot_of_row[row]], first) << row;
      }
      EXPECT_NE(got[p.store.slot_of_row[4]], first);
    }
  }
}

TEST(ScorerTest, InvalidSlotsAreNegativeInfinityAndDoNotNormalize) {
  RandomProblem p = MakeProblem(3, KeyType::kFloat32);
  std::unique_ptr<Scorer> scorer = MakeCpuScorer();
  std::vector<double> with_holes(p.store.blocks.size() * p.capacity);
  ASSERT_TRUE(scorer->Score(p.Request(), absl::MakeSpan(with_holes)).ok());
  std::vector<bool> is_row(with_holes.size(), false);
  for (int64_t slot : p.store.slot_of_row) is_row[slot] = true;
  for (size_t slot = 0; slot < with_holes.size(); ++slot) {
    if (!is_row[slot]) {
      EXPECT_EQ(with_holes[slot], kNegInf) << slot;
    }
  }
  // Packing the same rows densely into one block (no holes) gives the same scores.
  RandomProblem dense = p;
  dense.capacity = static_cast<int32_t>((p.num_rows + 15) / 16 * 16);
  const int elem = KeyTypeSize(p.shape.key_type);
  dense.store.key_bytes.assign(
      1, std::vector<uint8_t>(static_cast<size_t>(p.shape.num_layers) * p.shape.num_kv_heads *
                              p.shape.head_dim * dense.capacity * elem));
  dense.store.valid.assign(1, std::vector<uint8_t>(dense.capacity, 0));
  for (int64_t row = 0; row < p.num_rows; ++row) {
    dense.store.valid[0][row] = 1;
    for (int l = 0; l < p.shape.num_layers; ++l) {
      for (int g = 0; g < p.shape.num_kv_heads; ++g) {
        for (int d = 0; d < p.shape.head_dim; ++d) {
          const int64_t index =
              ((int64_t{l} * p.shape.num_kv_heads + g) * p.shape.head_dim + d) * dense.capacity +
              row;
          std::memcpy(&dense.store.key_bytes[0][index * elem], p.RowKey(row, l, g) + d * elem,
                      elem);
        }
      }
    }
  }
  dense.store.blocks = {KeyBlock{dense.store.key_bytes[0].data(), static_cast<int32_t>(p.num_rows),
                                 dense.store.valid[0].data()}};
  std::vector<double> packed(dense.capacity);
  ASSERT_TRUE(scorer->Score(dense.Request(), absl::MakeSpan(packed)).ok());
  for (int64_t row = 0; row < p.num_rows; ++row) {
    EXPECT_NEAR(with_holes[p.store.slot_of_row[row]], packed[row], 1e-6 * packed[row]) << row;
  }
}

TEST(ScorerTest, NoCandidatesGivesAllNegativeInfinity) {
  RandomProblem p = MakeProblem(5, KeyType::kFloat32);
  for (auto& valid : p.store.valid) std::fill(valid.begin(), valid.end(), 0);
  std::vector<double> got(p.store.blocks.size() * p.capacity, 1.0);
  ASSERT_TRUE(MakeCpuScorer()->Score(p.Request(), absl::MakeSpan(got)).ok());
  for (double v : got) EXPECT_EQ(v, kNegInf);
  std::vector<double> want(got.size(), 1.0);
  ASSERT_TRUE(ReferenceScore(p.Request(), absl::MakeSpan(want)).ok());
  for (double v : want) EXPECT_EQ(v, kNegInf);
}

TEST(ScorerTest, ShouldStopGivesDeadlineExceeded) {
  RandomProblem p = MakeProblem(6, KeyType::kFloat32);
  std::unique_ptr<Scorer> scorer = MakeCpuScorer(2);
  std::vector<double> got(p.store.blocks.size() * p.capacity);
  ScoreRequest request = p.Request();
  request.should_stop = [] { return true; };
  EXPECT_EQ(scorer->Score(request, absl::MakeSpan(got)).code(),
            absl::StatusCode::kDeadlineExceeded);
  request.should_stop = [] { return false; };
  EXPECT_TRUE(scorer->Score(request, absl::MakeSpan(got)).ok());
}

// should_stop is polled before each work item (scoring layer x KV head): a stop that fires
// partway ends the call before the remaining items run, and a stop that would fire only
// after the last item does not discard a finished result.
TEST(ScorerTest, ShouldStopIsPolledBetweenWorkItems) {
  uint64_t seed = 6;
  RandomProblem p = MakeProblem(seed, KeyType::kFloat32);
  while (p.shape.num_layers * p.shape.num_kv_heads < 4) {
    p = MakeProblem(++seed, KeyType::kFloat32);
  }
  const int items = p.shape.num_layers * p.shape.num_kv_heads;
  std::unique_ptr<Scorer> scorer = MakeCpuScorer(1);
  std::vector<double> got(p.store.blocks.size() * p.capacity);
  ScoreRequest request = p.Request();
  int polls = 0;
  request.should_stop = [&polls] { return ++polls >= 2; };
  EXPECT_EQ(scorer->Score(request, absl::MakeSpan(got)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(polls, 2);  // item 0 ran; item 1 saw the stop; items 2.. never started

  polls = 0;
  request.should_stop = [&polls, items] { return ++polls > items; };
  EXPECT_TRUE(scorer->Score(request, absl::MakeSpan(got)).ok());
  EXPECT_EQ(polls, items);
}

TEST(ScorerTest, ConcurrentCallsGiveTheSameScores) {
  RandomProblem p = MakeProblem(8, KeyType::kFloat16);
  std::unique_ptr<Scorer> scorer = MakeCpuScorer(2);
  std::vector<double> alone(p.store.blocks.size() * p.capacity);
  ASSERT_TRUE(scorer->Score(p.Request(), absl::MakeSpan(alone)).ok());
  std::vector<std::vector<double>> results(4, std::vector<double>(alone.size()));
  std::vector<std::thread> threads;
  for (auto& out : results) {
    threads.emplace_back(
        [&] { EXPECT_TRUE(scorer->Score(p.Request(), absl::MakeSpan(out)).ok()); });
  }
  for (auto& t : threads) t.join();
  for (const auto& out : results) EXPECT_EQ(out, alone);
}

TEST(ScorerTest, BadShapesAreInvalidArgument) {
  const RandomProblem p = MakeProblem(2, KeyType::kFloat32);
  std::vector<double> scores(p.store.blocks.size() * p.capacity);
  std::vector<double> short_scores(scores.size() - 1);
  std::vector<KeyBlock> null_keys(p.store.blocks.begin(), p.store.blocks.end());
  null_keys[0].keys = nullptr;
  std::vector<KeyBlock> null_valid(p.store.blocks.begin(), p.store.blocks.end());
  null_valid[0].valid = nullptr;
  std::vector<KeyBlock> too_many_rows(p.store.blocks.begin(), p.store.blocks.end());
  too_many_rows[0].rows = p.capacity + 1;
  std::vector<float> bad_lse(3);

  struct Mutation {
    const char* name;
    std::function<void(ScoreRequest&)> apply;
    bool short_output = false;
  };
  const std::vector<Mutation> mutations = {
      {"zero layers", [](ScoreRequest& r) { r.shape.num_layers = 0; }},
      {"zero q heads", [](ScoreRequest& r) { r.shape.num_q_heads = 0; }},
      {"zero kv heads", [](ScoreRequest& r) { r.shape.num_kv_heads = 0; }},
      {"negative head dim", [](ScoreRequest& r) { r.shape.head_dim = -4; }},
      {"zero tokens", [](ScoreRequest& r) { r.shape.num_tokens = 0; }},
      {"q not multiple of kv",
       [](ScoreRequest& r) {
         r.shape.num_kv_heads = 2;
         r.shape.num_q_heads = 3;
       }},
      {"capacity not multiple of 16", [](ScoreRequest& r) { r.block_capacity += 8; }},
      {"zero capacity", [](ScoreRequest& r) { r.block_capacity = 0; }},
      {"short queries", [](ScoreRequest& r) { r.queries.remove_suffix(1); }},
      {"bad lse", [&](ScoreRequest& r) { r.lse_active = bad_lse; }},
      {"null keys", [&](ScoreRequest& r) { r.blocks = null_keys; }},
      {"null valid", [&](ScoreRequest& r) { r.blocks = null_valid; }},
      {"rows over capacity", [&](ScoreRequest& r) { r.blocks = too_many_rows; }},
      {"short scores", [](ScoreRequest&) {}, true},
  };
  std::unique_ptr<Scorer> scorer = MakeCpuScorer();
  for (const Mutation& m : mutations) {
    SCOPED_TRACE(m.name);
    ScoreRequest request = p.Request();
    m.apply(request);
    absl::Span<double> out = m.short_output ? absl::MakeSpan(short_scores) : absl::MakeSpan(scores);
    EXPECT_EQ(scorer->Score(request, out).code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ReferenceScore(request, out).code(), absl::StatusCode::kInvalidArgument);
  }
  ScoreRequest ok = p.Request();
  EXPECT_TRUE(scorer->Score(ok, absl::MakeSpan(scores)).ok());
}

TEST(KeyTypeTest, Sizes) {
  EXPECT_EQ(KeyTypeSize(KeyType::kFloat32), 4);
  EXPECT_EQ(KeyTypeSize(KeyType::kFloat16), 2);
  EXPECT_EQ(KeyTypeSize(KeyType::kBFloat16), 2);
}

TEST(KeyTypeTest, ConvertKnownValues) {
  const uint16_t half[] = {0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0x0000, 0x8000, 0x3555};
  float out[8];
  ConvertToFloat32(KeyType::kFloat16, half, 8, out);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.0f);
  EXPECT_EQ(out[2], std::ldexp(1.0f, -24));
  EXPECT_EQ(out[3], 65504.0f);
  EXPECT_EQ(out[4], std::numeric_limits<float>::infinity());
  EXPECT_EQ(out[5], 0.0f);
  EXPECT_TRUE(std::signbit(out[6]));
  EXPECT_FLOAT_EQ(out[7], 0.333251953125f);
  const uint16_t bf16[] = {0x3f80, 0xc0a0, 0x0000};
  ConvertToFloat32(KeyType::kBFloat16, bf16, 3, out);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -5.0f);
  EXPECT_EQ(out[2], 0.0f);
  const float f32[] = {1.5f, -2.25f};
  ConvertToFloat32(KeyType::kFloat32, f32, 2, out);
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_EQ(out[1], -2.25f);
}

TEST(KeyTypeTest, EveryIsaConvertsEveryBitPatternLikePortable) {
  std::vector<uint16_t> all(65536 + 5);  // odd length exercises the scalar tails
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  for (KeyType type : {KeyType::kFloat16, KeyType::kBFloat16}) {
    std::vector<float> want(all.size());
    internal::ConvertToFloat32Portable(type, all.data(), all.size(), want.data());
    for (Isa isa : SupportedIsas()) {
      SCOPED_TRACE(internal::IsaName(isa));
      std::vector<float> got(all.size());
      internal::KernelsFor(isa).convert(type, all.data(), all.size(), got.data());
      for (size_t i = 0; i < all.size(); ++i) {
        if (std::isnan(want[i])) {
          ASSERT_TRUE(std::isnan(got[i])) << i;
        } else {
          ASSERT_EQ(std::memcmp(&got[i], &want[i], 4), 0) << i << " " << got[i] << " " << want[i];
        }
      }
    }
  }
}

TEST(ScorerTest, NameIsCpu) { EXPECT_EQ(MakeCpuScorer()->name(), "cpu"); }

TEST(ScorerTest, UnsupportedIsaIsRefusedOrEveryIsaIsSupported) {
  for (Isa isa : {Isa::kPortable, Isa::kAvx2, Isa::kAvx512}) {
    internal::CpuScorerOptions options;
    options.isa = isa;
    EXPECT_EQ(internal::MakeCpuScorerWithOptions(options).ok(), internal::IsaSupported(isa));
  }
}

// fp16 bits of `v` (round to nearest; magnitudes here are normal numbers).
uint16_t FloatToHalfBits(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  uint32_t mantissa = bits & 0x7fffffu;
  if (exponent <= 0) return static_cast<uint16_t>(sign);
  uint32_t half = (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
  if ((mantissa & 0x1fffu) > 0x1000u || ((mantissa & 0x1fffu) == 0x1000u && (half & 1))) ++half;
  return static_cast<uint16_t>(sign | half);
}

// ---------------------------------------------------------------------------------------
// The fast mode (gpu/sketch.h, gpu/fast_select.h, docs/FAST_MODE.md).

TEST(SketchTest, CodesDecodeToTheKeysWithinHalfAStep) {
  for (KeyType type : {KeyType::kFloat32, KeyType::kFloat16, KeyType::kBFloat16}) {
    SCOPED_TRACE(static_cast<int>(type));
    std::mt19937_64 rng(7);
    const int kv = 2, dim = 10, capacity = 32, slot = 19;  // dim not a multiple of 4
    const int elem = KeyTypeSize(type);
    std::vector<uint8_t> keys(static_cast<size_t>(kv) * dim * elem);
    for (size_t i = 0; i < keys.size(); i += elem) RandomElement(type, rng, &keys[i]);
    std::vector<uint8_t> codes(SketchCodeBytes(1, kv, dim, capacity), 0);
    std::vector<float> scales(SketchScaleCount(1, kv, capacity), 0.0f);
    EncodeSketchRow(type, keys.data(), kv, dim, capacity, slot, codes.data(), scales.data());
    std::vector<float> decoded(static_cast<size_t>(kv) * dim);
    ConvertToFloat32(type, keys.data(), kv * dim, decoded.data());
    const int groups = SketchGroups(dim);
    for (int g = 0; g < kv; ++g) {
      const float scale = scales[static_cast<size_t>(g) * capacity + slot];
      float peak = 0;
      for (int d = 0; d < dim; ++d) peak = std::max(peak, std::fabs(decoded[g * dim + d]));
      EXPECT_FLOAT_EQ(scale, peak / 127.0f);
      const uint8_t* head = codes.data() + static_cast<size_t>(g) * groups * capacity * 4;
      for (int d = 0; d < groups * 4; ++d) {
        const int code =
            head[((static_cast<size_t>(slot / 16) * groups + d / 4) * 16 + slot % 16) * 4 + d % 4];
        const float want = d < dim ? decoded[g * dim + d] : 0.0f;
        EXPECT_NEAR(scale * static_cast<float>(code - 128), want, 0.5f * scale + 1e-7f)
            << "head " << g << " dim " << d;
      }
    }
  }
}

// A store whose row `needle` (and only it) points along the queries' direction.
RandomProblem NeedleProblem(uint64_t seed, int64_t rows, int64_t needle) {
  RandomProblem p = MakeProblem(seed, KeyType::kFloat16);
  p.shape.num_layers = 2;
  p.shape.num_kv_heads = 2;
  p.shape.num_q_heads = 6;
  p.shape.head_dim = 64;
  p.shape.num_tokens = 8;
  p.num_rows = rows;
  p.capacity = 64;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> direction(64);
  for (float& v : direction) v = normal(rng) / 8.0f;
  const size_t per_row = size_t{2} * 2 * 64;
  std::vector<float> keys(static_cast<size_t>(rows) * per_row);
  for (size_t i = 0; i < keys.size(); ++i) {
    const bool planted = static_cast<int64_t>(i / per_row) == needle;
    keys[i] = planted ? 4.0f * 8.0f * direction[i % 64] + 0.3f * normal(rng) : normal(rng);
  }
  p.row_keys.resize(keys.size() * 2);
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint16_t h = FloatToHalfBits(keys[i]);
    std::memcpy(&p.row_keys[2 * i], &h, 2);
  }
  p.queries.resize(size_t{2} * 6 * 8 * 64);
  for (size_t i = 0; i < p.queries.size(); ++i)
    p.queries[i] = direction[i % 64] * 16.0f + 0.5f * normal(rng);
  p.lse_active.clear();
  p.store = BuildBlocks(p.shape, p.num_rows, p.capacity,
                        [&p](int64_t row, int l, int g) { return p.RowKey(row, l, g); });
  return p;
}

TEST(FastModeTest, EveryIsaGivesTheSameProxiesAndTheNeedleLeads) {
  const RandomProblem p = NeedleProblem(3, 900, 611);
  const ScoreRequest request = p.Request();
  std::vector<float> want;
  for (Isa isa : SupportedIsas()) {
    SCOPED_TRACE(internal::IsaName(isa));
    std::unique_ptr<Scorer> scorer = MakeScorer(isa, 2, int64_t{64} << 20);
    std::vector<float> proxy(p.store.blocks.size() * p.capacity);
    ASSERT_TRUE(scorer->FirstPass(request, absl::MakeSpan(proxy)).ok());
    if (want.empty()) want = proxy;
    ASSERT_EQ(0, std::memcmp(proxy.data(), want.data(), proxy.size() * sizeof(float)));
    const int64_t needle_slot = p.store.slot_of_row[611];
    for (int64_t row = 0; row < p.num_rows; ++row) {
      if (row == 611) continue;
      ASSERT_LT(proxy[p.store.slot_of_row[row]], proxy[needle_slot]) << "row " << row;
    }
    // Holes (invalid slots) are never ranked.
    for (size_t b = 0; b < p.store.blocks.size(); ++b) {
      for (int32_t r = 0; r < p.store.blocks[b].rows; ++r) {
        if (!p.store.blocks[b].valid[r]) {
          EXPECT_EQ(proxy[b * p.capacity + r], -INFINITY);
        }
      }
    }
  }
}

TEST(FastModeTest, FirstPassWithoutSketchesIsInvalidArgument) {
  RandomProblem p = NeedleProblem(4, 100, 5);
  std::vector<KeyBlock> blocks = p.store.blocks;
  blocks[0].sketch_codes = nullptr;
  ScoreRequest request = p.Request();
  request.blocks = blocks;
  std::vector<float> proxy(blocks.size() * p.capacity);
  const absl::Status s = MakeCpuScorer()->FirstPass(request, absl::MakeSpan(proxy));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("blocks[0]"), std::string::npos) << s;
}

// The first pass polls should_stop between blocks but calls it at most once per millisecond
// (plus the first poll), so that thousands of small blocks do not pay for it; a stop ends
// the pass with DEADLINE_EXCEEDED.
TEST(FastModeTest, FirstPassPollsShouldStopAtMostOncePerMillisecond) {
  const RandomProblem p = NeedleProblem(5, 64 * 640, 17);
  std::unique_ptr<Scorer> scorer = MakeCpuScorer(2);
  std::vector<float> proxy(p.store.blocks.size() * p.capacity);
  ScoreRequest request = p.Request();
  std::atomic<int> polls{0};
  request.should_stop = [&polls] {
    ++polls;
    return false;
  };
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(scorer->FirstPass(request, absl::MakeSpan(proxy)).ok());
  const double elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(polls.load(), 1);
  EXPECT_LE(polls.load(), 2 + static_cast<int>(elapsed_ms)) << elapsed_ms << " ms";

  request.should_stop = [] { return true; };
  EXPECT_EQ(scorer->FirstPass(request, absl::MakeSpan(proxy)).code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST(FastModeTest, FixedNormalizerReproducesTheComputedOne) {
  for (uint64_t seed : {11u, 12u, 13u}) {
    const RandomProblem p = MakeProblem(seed, KeyType::kFloat16);
    SCOPED_TRACE(seed);
    ScoreRequest request = p.Request();
    const size_t lse_size =
        static_cast<size_t>(p.shape.num_layers) * p.shape.num_q_heads * p.shape.num_tokens;
    std::vector<double> lse(lse_size), lse_ref(lse_size);
    std::vector<double> computed(p.store.blocks.size() * p.capacity), fixed = computed,
                                                                      reference = computed;
    std::unique_ptr<Scorer> cpu = MakeCpuScorer();
    request.lse_out = absl::MakeSpan(lse);
    ASSERT_TRUE(cpu->Score(request, absl::MakeSpan(computed)).ok());
    request.lse_out = absl::MakeSpan(lse_ref);
    ASSERT_TRUE(ReferenceScore(request, absl::MakeSpan(reference)).ok());
    for (size_t i = 0; i < lse_size; ++i)
      ASSERT_NEAR(lse[i], lse_ref[i], 1e-4 * std::abs(lse_ref[i]) + 1e-5);
    request.lse_out = {};
    request.lse_fixed = lse;
    ASSERT_TRUE(cpu->Score(request, absl::MakeSpan(fixed)).ok());
    ExpectClose(fixed, computed);
    ASSERT_TRUE(ReferenceScore(request, absl::MakeSpan(reference)).ok());
    ExpectClose(fixed, reference);
    // A shifted normalizer scales every score by exp(-shift).
    std::vector<double> shifted_lse = lse;
    for (double& v : shifted_lse) v += 1.0;
    request.lse_fixed = shifted_lse;
    ASSERT_TRUE(cpu->Score(request, absl::MakeSpan(fixed)).ok());
    for (size_t i = 0; i < fixed.size(); ++i) {
      if (computed[i] == kNegInf) continue;
      ASSERT_NEAR(fixed[i], computed[i] * std::exp(-1.0), 1e-4 * computed[i]);
    }
    request.lse_fixed = absl::MakeConstSpan(lse).subspan(1);
    EXPECT_EQ(cpu->Score(request, absl::MakeSpan(fixed)).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(FastModeTest, SmallStoresAreScoredExactly) {
  const RandomProblem p = MakeProblem(21, KeyType::kBFloat16);
  const ScoreRequest request = p.Request();
  std::unique_ptr<Scorer> cpu = MakeCpuScorer();
  std::vector<double> exact(p.store.blocks.size() * p.capacity);
  ASSERT_TRUE(cpu->Score(request, absl::MakeSpan(exact)).ok());
  FastOptions options;
  options.first_round = p.num_rows;  // everything fits the first round
  FastScoring fast(cpu.get(), &request, options);
  ASSERT_TRUE(fast.Start().ok());
  EXPECT_TRUE(fast.all_rescored());
  ASSERT_EQ(fast.candidates(), p.num_rows);
  for (size_t i = 0; i < fast.slots().size(); ++i) {
    const double want = exact[static_cast<size_t>(fast.slots()[i])];
    ASSERT_NEAR(fast.scores()[i], want, 1e-6 * want) << "slot " << fast.slots()[i];
  }
}

TEST(FastModeTest, TwoStagesFindTheNeedleAndExtendInProxyOrder) {
  const RandomProblem p = NeedleProblem(5, 3000, 1234);
  const ScoreRequest request = p.Request();
  std::unique_ptr<Scorer> cpu = MakeCpuScorer();
  std::vector<double> exact(p.store.blocks.size() * p.capacity);
  ASSERT_TRUE(cpu->Score(request, absl::MakeSpan(exact)).ok());
  FastOptions options;
  options.first_round = 32;
  options.sample_rows = 64;
  FastScoring fast(cpu.get(), &request, options);
  ASSERT_TRUE(fast.Start().ok());
  EXPECT_EQ(fast.candidates(), 3000);
  ASSERT_EQ(fast.slots().size(), 32u);
  const int64_t needle_slot = p.store.slot_of_row[1234];
  EXPECT_NE(std::find(fast.slots().begin(), fast.slots().end(), needle_slot), fast.slots().end());
  // The needle's estimated score is close to its exact one: the normalizer estimate is good.
  for (size_t i = 0; i < fast.slots().size(); ++i) {
    if (fast.slots()[i] != needle_slot) continue;
    EXPECT_NEAR(fast.scores()[i], exact[needle_slot], 0.1 * exact[needle_slot]);
  }
  ASSERT_TRUE(fast.Extend(100).ok());
  ASSERT_EQ(fast.slots().size(), 100u);
  const std::set<int64_t> unique(fast.slots().begin(), fast.slots().end());
  EXPECT_EQ(unique.size(), 100u);
  // Rows rescored later never had a better proxy than rows rescored first.
  float worst_first = INFINITY;
  for (size_t i = 0; i < 32; ++i)
    worst_first = std::min(worst_first, fast.proxy()[fast.slots()[i]]);
  for (size_t i = 32; i < 100; ++i) EXPECT_LE(fast.proxy()[fast.slots()[i]], worst_first);
  ASSERT_TRUE(fast.Extend(1 << 20).ok());
  EXPECT_TRUE(fast.all_rescored());
}

// The golden cases through the fast mode with the server's round sizes (cases over 512
// rows go through both stages): every planted needle is found, the chosen rows carry at
// least 95% of the exact selection's score mass, and small cases are exactly the exact
// mode's selection.
TEST(FastModeTest, GoldenCasesKeepNeedlesAndRecall) {
  const std::vector<std::string> dirs = golden::ListCases(golden::DefaultReferenceDir());
  ASSERT_GE(dirs.size(), 8u);
  std::unique_ptr<Scorer> cpu = MakeCpuScorer();
  for (const std::string& dir : dirs) {
    SCOPED_TRACE(dir);
    absl::StatusOr<golden::Case> loaded = golden::LoadCase(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    const golden::Case& c = *loaded;
    if (c.selector != "repairkv") continue;
    const GoldenStore golden_store(c, 64);
    const BlockStore& store = golden_store.store;
    const ScoreRequest& request = golden_store.request;
    std::vector<double> exact_slots(store.blocks.size() * 64);
    ASSERT_TRUE(cpu->Score(request, absl::MakeSpan(exact_slots)).ok());

    FastOptions options;  // the server's: first round of max(256, 2 * K / burst width)
    const int64_t width = int64_t{c.burst_left} + c.burst_right + 1;
    options.first_round = std::max<int64_t>(256, 2 * ((c.budget + width - 1) / width));
    FastScoring fast(cpu.get(), &request, options);
    ASSERT_TRUE(fast.Start().ok());
    std::vector<int64_t> row_of_slot(store.blocks.size() * 64, -1);
    for (int64_t row = 0; row < c.num_rows; ++row) row_of_slot[store.slot_of_row[row]] = row;
    PackOptions pack;
    pack.budget = c.budget;
    pack.burst_left = c.burst_left;
    pack.burst_right = c.burst_right;
    std::vector<int64_t> chosen;
    while (true) {  // the pipeline's loop (server/repair_pipeline.cc)
      std::vector<double> scores(c.num_rows, kNegInf);
      std::vector<uint8_t> anchors(c.num_rows, 0);
      for (size_t i = 0; i < fast.slots().size(); ++i) {
        const int64_t row = row_of_slot[fast.slots()[i]];
        scores[row] = fast.scores()[i];
        anchors[row] = 1;
      }
      CandidateSet candidates{c.positions, scores, c.importance, anchors};
      absl::StatusOr<Selection> selection =
          SelectPositions(candidates, SelectorKind::kRepairKv, pack);
      ASSERT_TRUE(selection.ok());
      if (static_cast<int64_t>(selection->chosen.size()) >=
              std::min<int64_t>(c.budget, c.num_rows) ||
          fast.all_rescored()) {
        chosen = selection->chosen;
        break;
      }
      ASSERT_TRUE(fast.Extend(2 * static_cast<int64_t>(fast.slots().size())).ok());
    }
    absl::flat_hash_map<int64_t, double> exact_of_position;
    for (int64_t row = 0; row < c.num_rows; ++row) {
      exact_of_position[c.positions[row]] = exact_slots[store.slot_of_row[row]];
    }
    const std::set<int64_t> fast_set(chosen.begin(), chosen.end());
    int64_t common = 0;
    double fast_mass = 0, exact_mass = 0;
    for (int64_t pos : c.expected_chosen) {
      common += fast_set.count(pos);
      exact_mass += exact_of_position[pos];
    }
    for (int64_t pos : chosen) fast_mass += exact_of_position[pos];
    const double recall = static_cast<double>(common) / c.expected_chosen.size();
    std::printf("%s: rows %d K %d rescored %zu recall@K %.3f score mass %.4f\n", c.name.c_str(),
                c.num_rows, c.budget, fast.slots().size(), recall, fast_mass / exact_mass);
    EXPECT_EQ(chosen.size(), c.expected_chosen.size());
    for (int64_t needle : c.needle_positions) EXPECT_TRUE(fast_set.count(needle)) << needle;
    // recall@K is reported, not asserted: where scores are flat (06, random keys) the exact
    // order among near-equal rows is noise the first pass cannot see (docs/FAST_MODE.md).
    EXPECT_GE(fast_mass / exact_mass, 0.95);
    if (fast.all_rescored()) {
      EXPECT_EQ(chosen, c.expected_chosen);
    }
  }
}

}  // namespace
}  // namespace kvtier::scorer
