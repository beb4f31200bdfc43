#include "storage/row_store.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "storage/segment.h"

namespace kvtier::storage {
namespace {

using Bytes = std::vector<std::byte>;

Geometry MakeGeometry(DType dtype, int32_t layers = 4, std::vector<int32_t> scoring = {}) {
  Geometry g;
  g.num_layers = layers;
  g.num_q_heads = 4;
  g.num_kv_heads = 2;
  g.head_dim = 8;
  g.dtype = dtype;
  g.scoring_layers = std::move(scoring);
  EXPECT_TRUE(ValidateAndNormalizeGeometry(g).ok());
  return g;
}

size_t Align64(size_t n) { return (n + 63) / 64 * 64; }

// What one segment should cost, written out independently of SegmentLayout: payload,
// score index block and per-slot metadata (position, importance, layer bitset, layer count,
// candidate, promoted, free list), each section padded to 64 bytes.
uint64_t ExpectedSegmentBytes(const Geometry& g, size_t rows) {
  const size_t words = (static_cast<size_t>(g.num_layers) + 63) / 64;
  const size_t scoring = g.scoring_layers.size();
  const size_t kv = static_cast<size_t>(g.num_kv_heads);
  const size_t sketch_codes = scoring * kv * ((static_cast<size_t>(g.head_dim) + 3) / 4 * 4) * rows;
  return Align64(rows * g.RowBytes()) + Align64(rows * scoring * g.LayerRowBytes()) +
         Align64(sketch_codes) + Align64(scoring * kv * rows * 4) + Align64(rows * 8) +
         Align64(rows * 4) + Align64(rows * 8 * words) + Align64(rows * 2) + Align64(rows) +
         Align64(rows) + Align64(rows * 4);
}

// The test's own record of what was offloaded: K and V per position per layer.
class Model {
 public:
  Model(const Geometry& g, uint64_t seed) : g_(g), rng_(seed) {}

  // Builds a chunk of fresh random bytes for `positions` and layers [lb, le), records it
  // (unless `record` is false: for chunks expected to be rejected) and offloads it.
  absl::StatusOr<OffloadResult> Offload(RowStore& store, const std::vector<int64_t>& positions,
                                        int32_t lb, int32_t le,
                                        const std::vector<float>& importance = {},
                                        bool record = true) {
    const size_t lrb = g_.LayerRowBytes();
    const size_t n = positions.size();
    keys_.assign(static_cast<size_t>(le - lb) * n * lrb, std::byte{0});
    values_.assign(keys_.size(), std::byte{0});
    for (auto& b : keys_) b = static_cast<std::byte>(rng_());
    for (auto& b : values_) b = static_cast<std::byte>(rng_());
    // Keys must be finite (Offload rejects NaN and infinities): clearing the top exponent
    // bit of each element's high byte does that for fp16, bf16 and fp32 alike.
    const size_t elem = static_cast<size_t>(DTypeSize(g_.dtype));
    for (size_t i = elem - 1; i < keys_.size(); i += elem) keys_[i] &= std::byte{0xbf};
    OffloadChunk chunk;
    chunk.positions = positions;
    chunk.layer_begin = lb;
    chunk.layer_end = le;
    chunk.keys = keys_;
    chunk.values = values_;
    chunk.importance = importance;
    absl::StatusOr<OffloadResult> r = store.Offload(chunk);
    if (r.ok() && record) {
      for (int32_t l = lb; l < le; ++l) {
        for (size_t i = 0; i < n; ++i) {
          const size_t off = (static_cast<size_t>(l - lb) * n + i) * lrb;
          auto& row = rows_[positions[i]];
          row.k.resize(static_cast<size_t>(g_.num_layers));
          row.v.resize(static_cast<size_t>(g_.num_layers));
          row.k[static_cast<size_t>(l)].assign(keys_.begin() + off, keys_.begin() + off + lrb);
          row.v[static_cast<size_t>(l)].assign(values_.begin() + off, values_.begin() + off + lrb);
        }
      }
    }
    return r;
  }

  const Bytes& K(int64_t p, int32_t l) const { return rows_.at(p).k[static_cast<size_t>(l)]; }
  const Bytes& V(int64_t p, int32_t l) const { return rows_.at(p).v[static_cast<size_t>(l)]; }
  void Erase(int64_t p) { rows_.erase(p); }

  // Gathers and compares with the record.
  void ExpectGather(RowStore& store, const std::vector<int64_t>& positions, int32_t lb,
                    int32_t le) const {
    const size_t lrb = g_.LayerRowBytes();
    const size_t n = positions.size();
    Bytes k(static_cast<size_t>(le - lb) * n * lrb), v(k.size());
    ASSERT_TRUE(store.Gather(positions, lb, le, absl::MakeSpan(k), absl::MakeSpan(v)).ok());
    for (int32_t l = lb; l < le; ++l) {
      for (size_t i = 0; i < n; ++i) {
        const size_t off = (static_cast<size_t>(l - lb) * n + i) * lrb;
        ASSERT_EQ(Bytes(k.begin() + off, k.begin() + off + lrb), K(positions[i], l))
            << "keys of position " << positions[i] << " layer " << l;
        ASSERT_EQ(Bytes(v.begin() + off, v.begin() + off + lrb), V(positions[i], l))
            << "values of position " << positions[i] << " layer " << l;
      }
    }
  }

 private:
  struct Row {
    std::vector<Bytes> k, v;
  };
  Geometry g_;
  std::mt19937_64 rng_;
  Bytes keys_, values_;
  std::map<int64_t, Row> rows_;
};

std::vector<int64_t> Range(int64_t begin, int64_t end) {
  std::vector<int64_t> v(static_cast<size_t>(end - begin));
  std::iota(v.begin(), v.end(), begin);
  return v;
}

// Everything observable about a store, to show that a failed call changed nothing.
struct Snapshot {
  RowCounts counts;
  uint64_t bytes = 0;
  uint64_t budget_used = 0;
  int64_t budget_segments = 0;
  std::vector<std::vector<int64_t>> positions;
  std::vector<std::vector<uint8_t>> candidate;
  std::vector<std::vector<float>> importance;
  std::vector<Bytes> index;

  static Snapshot Of(RowStore& store, const TierBudget& budget, const Geometry& g) {
    Snapshot s;
    s.counts = store.counts();
    s.bytes = store.bytes();
    s.budget_used = budget.used_bytes();
    s.budget_segments = budget.segments();
    const ScoreIndexView view = store.View();
    const size_t index_bytes =
        g.scoring_layers.size() * g.LayerRowBytes() * static_cast<size_t>(view.block_capacity);
    for (const auto& b : view.blocks) {
      s.positions.emplace_back(b.positions, b.positions + b.rows);
      s.candidate.emplace_back(b.candidate, b.candidate + b.rows);
      s.importance.emplace_back(b.importance, b.importance + b.rows);
      const auto* k = static_cast<const std::byte*>(b.keys);
      s.index.emplace_back(k, k + index_bytes);
    }
    return s;
  }

  void ExpectEq(const Snapshot& o) const {
    EXPECT_EQ(counts.stored, o.counts.stored);
    EXPECT_EQ(counts.complete, o.counts.complete);
    EXPECT_EQ(counts.candidate, o.counts.candidate);
    EXPECT_EQ(counts.promoted, o.counts.promoted);
    EXPECT_EQ(bytes, o.bytes);
    EXPECT_EQ(budget_used, o.budget_used);
    EXPECT_EQ(budget_segments, o.budget_segments);
    EXPECT_EQ(positions, o.positions);
    EXPECT_EQ(candidate, o.candidate);
    EXPECT_EQ(importance, o.importance);
    EXPECT_EQ(index, o.index);
  }
};

// Candidate flag of `position` in the view; -1 when the view does not hold it.
int CandidateOf(RowStore& store, int64_t position) {
  const ScoreIndexView view = store.View();
  for (const auto& b : view.blocks) {
    for (int32_t r = 0; r < b.rows; ++r) {
      if (b.positions[r] == position) return b.candidate[r];
    }
  }
  return -1;
}

bool StartsWith(absl::string_view s, absl::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

TEST(RowStore, RowBecomesCandidateOnlyWhenEveryLayerArrived) {
  const Geometry g = MakeGeometry(DType::kFloat16, 4);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 1);

  absl::StatusOr<OffloadResult> r = model.Offload(*store, {10, 11, 12}, 0, 2);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows_written, 3);
  EXPECT_EQ(r->new_rows, 3);
  EXPECT_EQ(r->rows_completed, 0);
  EXPECT_EQ(r->bytes, 2u * 2u * 3u * g.LayerRowBytes());
  EXPECT_EQ(store->counts().stored, 3);
  EXPECT_EQ(store->counts().complete, 0);
  EXPECT_EQ(store->counts().candidate, 0);
  for (int64_t p : {10, 11, 12}) EXPECT_EQ(CandidateOf(*store, p), 0);
  absl::Status s = store->CheckComplete(std::vector<int64_t>{10});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(StartsWith(s.message(), "positions[0]: position 10 is missing layers")) << s;

  r = model.Offload(*store, {11, 10}, 2, 4);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_rows, 0);
  EXPECT_EQ(r->rows_completed, 2);
  EXPECT_EQ(store->counts().complete, 2);
  EXPECT_EQ(store->counts().candidate, 2);
  EXPECT_EQ(CandidateOf(*store, 10), 1);
  EXPECT_EQ(CandidateOf(*store, 11), 1);
  EXPECT_EQ(CandidateOf(*store, 12), 0);
  EXPECT_TRUE(store->CheckComplete(std::vector<int64_t>{11, 10}).ok());

  // Layer 3 then layer 2: complete only after the gap is filled.
  r = model.Offload(*store, {12}, 3, 4);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows_completed, 0);
  EXPECT_EQ(CandidateOf(*store, 12), 0);
  r = model.Offload(*store, {12}, 2, 3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows_completed, 1);
  EXPECT_EQ(CandidateOf(*store, 12), 1);

  // Sending a complete row again completes nothing new.
  r = model.Offload(*store, {12}, 0, 4);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows_completed, 0);
  EXPECT_EQ(store->counts().complete, 3);
  EXPECT_EQ(store->counts().stored, 3);
  model.ExpectGather(*store, {12, 10, 11}, 0, 4);
}

class RowStoreDType : public ::testing::TestWithParam<DType> {};

TEST_P(RowStoreDType, GatherReturnsWhatWasOffloaded) {
  const Geometry g = MakeGeometry(GetParam(), 5);
  TierBudget budget("host", 1 << 26);
  auto store = RowStore::Create(g, &budget, 32);
  Model model(g, 2);
  std::mt19937 rng(3);

  std::vector<int64_t> positions = Range(0, 100);
  for (auto& p : positions) p = p * 7 + 3;  // not dense
  std::shuffle(positions.begin(), positions.end(), rng);
  // Layers arrive in two ranges, in different chunks and orders.
  const std::vector<int64_t> first(positions.begin(), positions.begin() + 60);
  const std::vector<int64_t> second(positions.begin() + 60, positions.end());
  ASSERT_TRUE(model.Offload(*store, first, 2, 5).ok());
  ASSERT_TRUE(model.Offload(*store, second, 0, 5).ok());
  std::shuffle(positions.begin(), positions.end(), rng);
  ASSERT_TRUE(model.Offload(*store, first, 0, 2).ok());
  EXPECT_EQ(store->counts().complete, 100);

  for (auto [lb, le] : {std::pair{0, 5}, std::pair{1, 3}, std::pair{4, 5}, std::pair{0, 1}}) {
    std::shuffle(positions.begin(), positions.end(), rng);
    model.ExpectGather(*store, positions, lb, le);
    model.ExpectGather(*store, std::vector<int64_t>(positions.begin(), positions.begin() + 7), lb,
                       le);
  }
  // A position may be asked for twice.
  model.ExpectGather(*store, {positions[3], positions[3], positions[0]}, 0, 5);
}

TEST_P(RowStoreDType, ScoreIndexHoldsKeysOfScoringLayers) {
  for (const std::vector<int32_t>& scoring :
       {std::vector<int32_t>{1, 3}, std::vector<int32_t>{2}, std::vector<int32_t>{}}) {
    const Geometry g = MakeGeometry(GetParam(), 4, scoring);
    TierBudget budget("host", 1 << 26);
    auto store = RowStore::Create(g, &budget, 16);
    Model model(g, 4);
    const std::vector<int64_t> positions = Range(100, 140);  // three segments
    std::vector<float> importance(positions.size());
    for (size_t i = 0; i < importance.size(); ++i) importance[i] = 0.5f * static_cast<float>(i);
    ASSERT_TRUE(model.Offload(*store, positions, 0, 3, importance).ok());
    ASSERT_TRUE(model.Offload(*store, positions, 3, 4).ok());

    const ScoreIndexView view = store->View();
    ASSERT_EQ(view.block_capacity, 16);
    ASSERT_EQ(view.blocks.size(), 3u);
    const size_t elem = static_cast<size_t>(DTypeSize(g.dtype));
    const size_t kv = static_cast<size_t>(g.num_kv_heads), hd = static_cast<size_t>(g.head_dim);
    std::set<int64_t> seen;
    for (const auto& b : view.blocks) {
      const auto* keys = static_cast<const std::byte*>(b.keys);
      for (int32_t r = 0; r < b.rows; ++r) {
        const int64_t p = b.positions[r];
        ASSERT_TRUE(seen.insert(p).second);
        EXPECT_EQ(b.candidate[r], 1);
        EXPECT_EQ(b.importance[r], 0.5f * static_cast<float>(p - 100));
        for (size_t si = 0; si < g.scoring_layers.size(); ++si) {
          const Bytes& k = model.K(p, g.scoring_layers[si]);
          for (size_t h = 0; h < kv; ++h) {
            for (size_t d = 0; d < hd; ++d) {
              const size_t at = (((si * kv + h) * hd + d) * 16 + static_cast<size_t>(r)) * elem;
              ASSERT_EQ(std::memcmp(keys + at, k.data() + (h * hd + d) * elem, elem), 0)
                  << "position " << p << " scoring layer " << si << " kv " << h << " d " << d;
            }
          }
        }
      }
    }
    EXPECT_EQ(seen, std::set<int64_t>(positions.begin(), positions.end()));
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, RowStoreDType,
                         ::testing::Values(DType::kFloat16, DType::kBFloat16, DType::kFloat32),
                         [](const ::testing::TestParamInfo<DType>& info) {
                           switch (info.param) {
                             case DType::kFloat16:
                               return std::string("fp16");
                             case DType::kBFloat16:
                               return std::string("bf16");
                             default:
                               return std::string("fp32");
                           }
                         });

TEST(RowStore, RejectedChunksChangeNothing) {
  const Geometry g = MakeGeometry(DType::kBFloat16, 4);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 5);
  // 14 rows: a chunk with new positions would need a second segment.
  ASSERT_TRUE(model.Offload(*store, Range(0, 14), 0, 4).ok());
  ASSERT_TRUE(model.Offload(*store, {20}, 0, 1).ok());
  const Snapshot before = Snapshot::Of(*store, budget, g);
  const size_t lrb = g.LayerRowBytes();

  Bytes k(2 * 4 * lrb), v(k.size());
  for (auto& b : k) b = std::byte{0x5a};
  for (auto& b : v) b = std::byte{0xa5};
  const std::vector<int64_t> good = {1, 30, 31, 32};  // one stored, three new
  const std::vector<float> importance(4, 9.f);
  auto chunk = [&] {
    OffloadChunk c;
    c.positions = good;
    c.layer_begin = 1;
    c.layer_end = 3;
    c.keys = k;
    c.values = v;
    c.importance = importance;
    return c;
  };
  ASSERT_EQ(chunk().keys.size(), 2 * 4 * lrb);

  const std::vector<int64_t> duplicate = {1, 30, 30, 32};
  const std::vector<int64_t> duplicate_stored = {1, 30, 31, 1};
  const std::vector<int64_t> negative = {1, 30, -5, 32};
  const std::vector<float> short_importance(3, 1.f);
  struct Case {
    std::string name;
    OffloadChunk chunk;
    absl::StatusCode code;
    std::string prefix;
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, absl::StatusCode code, std::string prefix, auto edit) {
    OffloadChunk c = chunk();
    edit(c);
    cases.push_back({std::move(name), c, code, std::move(prefix)});
  };
  using C = absl::StatusCode;
  add("empty", C::kInvalidArgument, "positions: empty", [](OffloadChunk& c) { c.positions = {}; });
  add("duplicate", C::kInvalidArgument,
      "positions[2]: ", [&](OffloadChunk& c) { c.positions = duplicate; });
  add("duplicate stored", C::kInvalidArgument,
      "positions[3]: ", [&](OffloadChunk& c) { c.positions = duplicate_stored; });
  add("negative", C::kInvalidArgument,
      "positions[2]: ", [&](OffloadChunk& c) { c.positions = negative; });
  add("layer_begin < 0", C::kOutOfRange, "layer_begin", [](OffloadChunk& c) {
    c.layer_begin = -1;
    c.layer_end = 1;
  });
  add("layer_end > layers", C::kOutOfRange, "layer_end", [](OffloadChunk& c) {
    c.layer_begin = 3;
    c.layer_end = 5;
  });
  add("empty layer range", C::kOutOfRange, "layer_end", [](OffloadChunk& c) {
    c.layer_begin = 2;
    c.layer_end = 2;
  });
  add("reversed layer range", C::kOutOfRange, "layer_end", [](OffloadChunk& c) {
    c.layer_begin = 3;
    c.layer_end = 1;
  });
  add("short keys", C::kInvalidArgument, "keys: expected",
      [](OffloadChunk& c) { c.keys = c.keys.subspan(0, c.keys.size() - 2); });
  add("long values", C::kInvalidArgument, "values: expected", [&](OffloadChunk& c) {
    static Bytes big(2 * 4 * g.LayerRowBytes() + 2);
    c.values = big;
  });
  add("keys for another layer range", C::kInvalidArgument, "keys: expected",
      [](OffloadChunk& c) { c.layer_end = 4; });
  add("importance size", C::kInvalidArgument, "importance",
      [&](OffloadChunk& c) { c.importance = short_importance; });
  // bf16 0x7fc0 is a NaN, 0xff80 is -inf: one such key would make every score NaN.
  static Bytes nan_keys = k;
  nan_keys[2 * (lrb / 2 + 3)] = std::byte{0xc0};  // element lrb/2 + 3: layer 1, positions[1]
  nan_keys[2 * (lrb / 2 + 3) + 1] = std::byte{0x7f};
  add("NaN key", C::kInvalidArgument, "keys: element", [&](OffloadChunk& c) { c.keys = nan_keys; });
  static Bytes inf_keys = k;
  inf_keys[inf_keys.size() - 2] = std::byte{0x80};
  inf_keys[inf_keys.size() - 1] = std::byte{0xff};
  add("infinite key", C::kInvalidArgument, "keys: element",
      [&](OffloadChunk& c) { c.keys = inf_keys; });
  static const std::vector<float> nan_importance = {1.f, std::nanf(""), 1.f, 1.f};
  add("NaN importance", C::kInvalidArgument, "importance[1]",
      [&](OffloadChunk& c) { c.importance = nan_importance; });

  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<OffloadResult> r = store->Offload(c.chunk);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.code) << r.status();
    EXPECT_TRUE(StartsWith(r.status().message(), c.prefix)) << r.status();
    Snapshot::Of(*store, budget, g).ExpectEq(before);
    model.ExpectGather(*store, Range(0, 14), 0, 4);
    EXPECT_EQ(store->CheckComplete(std::vector<int64_t>{30}).code(), C::kNotFound);
  }
  // The unedited chunk is accepted: the cases failed for their edit alone.
  EXPECT_TRUE(store->Offload(chunk()).ok());
}

TEST(RowStore, ErrorMessagesNameTheField) {
  const Geometry g = MakeGeometry(DType::kFloat32, 2);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Bytes k(g.LayerRowBytes() * 2 * 3 - 4), v(g.LayerRowBytes() * 2 * 3);
  const std::vector<int64_t> positions = {4, 5, 6};
  OffloadChunk c;
  c.positions = positions;
  c.layer_begin = 0;
  c.layer_end = 2;
  c.keys = k;
  c.values = v;
  absl::StatusOr<OffloadResult> r = store->Offload(c);
  EXPECT_EQ(r.status().message(),
            "keys: expected 384 bytes (2 layers x 3 rows x 64 bytes), got 380");
}

TEST(RowStore, BudgetChargesWholeSegments) {
  for (const std::vector<int32_t>& scoring : {std::vector<int32_t>{}, std::vector<int32_t>{0}}) {
    const Geometry g = MakeGeometry(DType::kFloat16, 3, scoring);
    const uint64_t seg = ExpectedSegmentBytes(g, 16);
    EXPECT_EQ(SegmentLayout::For(g, 16).total_bytes, seg);
    TierBudget budget("host", 1 << 24);
    {
      auto store = RowStore::Create(g, &budget, 16);
      Model model(g, 6);
      EXPECT_EQ(store->bytes(), 0u);
      EXPECT_EQ(budget.used_bytes(), 0u);
      ASSERT_TRUE(model.Offload(*store, {7}, 0, 1).ok());
      EXPECT_EQ(store->bytes(), seg);
      EXPECT_EQ(budget.used_bytes(), seg);
      EXPECT_EQ(budget.segments(), 1);
      ASSERT_TRUE(model.Offload(*store, Range(100, 115), 0, 3).ok());  // fills the segment
      EXPECT_EQ(store->bytes(), seg);
      ASSERT_TRUE(model.Offload(*store, Range(200, 236), 0, 3).ok());  // 36 rows: 3 more
      EXPECT_EQ(store->bytes(), 4 * seg);
      EXPECT_EQ(budget.used_bytes(), 4 * seg);
      EXPECT_EQ(budget.segments(), 4);
      EXPECT_EQ(store->View().blocks.size(), 4u);
    }
    EXPECT_EQ(budget.used_bytes(), 0u);
    EXPECT_EQ(budget.segments(), 0);
  }
}

TEST(RowStore, ChunkThatDoesNotFitStoresNothing) {
  const Geometry g = MakeGeometry(DType::kFloat16, 2);
  const uint64_t seg = ExpectedSegmentBytes(g, 16);
  TierBudget budget("host-ram", 2 * seg + seg / 2);
  TierBudget other("host-ram", 2 * seg + seg / 2);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 7);
  ASSERT_TRUE(model.Offload(*store, Range(0, 20), 0, 2).ok());
  EXPECT_EQ(budget.used_bytes(), 2 * seg);
  const Snapshot before = Snapshot::Of(*store, budget, g);

  // 12 free slots remain; 13 new rows need a third segment.
  absl::StatusOr<OffloadResult> r = model.Offload(*store, Range(100, 113), 0, 2, {}, false);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  const std::string msg(r.status().message());
  EXPECT_NE(msg.find("host-ram"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(seg)), std::string::npos) << msg;      // requested
  EXPECT_NE(msg.find(std::to_string(2 * seg)), std::string::npos) << msg;  // used
  EXPECT_NE(msg.find(std::to_string(budget.capacity_bytes())), std::string::npos) << msg;
  Snapshot::Of(*store, budget, g).ExpectEq(before);
  EXPECT_EQ(store->CheckComplete(std::vector<int64_t>{100}).code(), absl::StatusCode::kNotFound);

  // Another store's segment takes room too: the budget is shared.
  auto neighbour = RowStore::Create(g, &budget, 16);
  EXPECT_EQ(model.Offload(*neighbour, {1}, 0, 1, {}, false).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(neighbour->bytes(), 0u);

  // 12 new rows and 5 stored ones fit in the holes: no new segment.
  std::vector<int64_t> fits = Range(100, 112);
  for (int64_t p : Range(0, 5)) fits.push_back(p);
  r = model.Offload(*store, fits, 0, 2);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->new_rows, 12);
  EXPECT_EQ(budget.used_bytes(), 2 * seg);
  model.ExpectGather(*store, fits, 0, 2);
}

// slot_of finds every stored row's view slot, also when a freed segment leaves the view's
// block numbers behind the store's segment numbers, and -1 for positions no slot holds.
TEST(RowStore, ViewSlotOfFindsEveryStoredPosition) {
  const Geometry g = MakeGeometry(DType::kFloat16, 2);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 3);
  ASSERT_TRUE(model.Offload(*store, Range(100, 148), 0, 2).ok());  // three segments
  ASSERT_EQ(store->Release(Range(100, 116)).rows_released, 16);    // frees the first
  ASSERT_TRUE(model.Offload(*store, {7}, 0, 1).ok());  // one layer of two: not a candidate
  const ScoreIndexView view = store->View();
  ASSERT_EQ(view.blocks.size(), 3u);
  int found = 0;
  for (size_t b = 0; b < view.blocks.size(); ++b) {
    for (int32_t r = 0; r < view.blocks[b].rows; ++r) {
      const int64_t position = view.blocks[b].positions[r];
      if (position == -1) continue;
      EXPECT_EQ(view.slot_of(position), static_cast<int64_t>(b) * view.block_capacity + r)
          << position;
      ++found;
    }
  }
  EXPECT_EQ(found, 33);  // 116..147 and 7
  for (int64_t absent : {int64_t{100}, int64_t{115}, int64_t{148}, int64_t{-5}}) {
    EXPECT_EQ(view.slot_of(absent), -1) << absent;
  }
}

TEST(RowStore, ReleaseReusesSlotsAndFreesEmptySegments) {
  const Geometry g = MakeGeometry(DType::kFloat32, 2);
  const uint64_t seg = ExpectedSegmentBytes(g, 16);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 8);
  ASSERT_TRUE(model.Offload(*store, Range(0, 32), 0, 2).ok());  // two full segments
  ASSERT_EQ(budget.used_bytes(), 2 * seg);

  ReleaseResult rr = store->Release(std::vector<int64_t>{3, 5, 999, 7});
  EXPECT_EQ(rr.rows_released, 3);
  EXPECT_EQ(rr.bytes_freed, 0u);
  EXPECT_EQ(store->counts().stored, 29);
  EXPECT_EQ(store->counts().candidate, 29);
  EXPECT_EQ(CandidateOf(*store, 3), -1);
  EXPECT_EQ(store->CheckComplete(std::vector<int64_t>{5}).code(), absl::StatusCode::kNotFound);
  rr = store->Release(std::vector<int64_t>{3, 5, 7});  // idempotent
  EXPECT_EQ(rr.rows_released, 0);

  // Three new rows take the freed slots: no new segment, and the view shows them there.
  ASSERT_TRUE(model.Offload(*store, {50, 51, 52}, 0, 2).ok());
  EXPECT_EQ(budget.used_bytes(), 2 * seg);
  const ScoreIndexView view = store->View();
  ASSERT_EQ(view.blocks.size(), 2u);
  std::set<int64_t> in_first(view.blocks[0].positions, view.blocks[0].positions + 16);
  EXPECT_EQ(in_first, (std::set<int64_t>{0, 1, 2, 4, 6, 8, 9, 10, 11, 12, 13, 14, 15, 50, 51, 52}));
  model.ExpectGather(*store, {50, 0, 51, 52, 31}, 0, 2);

  // Emptying the second segment gives its bytes back.
  rr = store->Release(Range(16, 32));
  EXPECT_EQ(rr.rows_released, 16);
  EXPECT_EQ(rr.bytes_freed, seg);
  EXPECT_EQ(store->bytes(), seg);
  EXPECT_EQ(budget.used_bytes(), seg);
  EXPECT_EQ(budget.segments(), 1);
  EXPECT_EQ(store->View().blocks.size(), 1u);

  // A partly used segment keeps its free slots visible as -1, not candidates.
  rr = store->Release(std::vector<int64_t>{0});
  const ScoreIndexView after = store->View();
  ASSERT_EQ(after.blocks.size(), 1u);
  EXPECT_EQ(after.blocks[0].rows, 16);
  int free_slots = 0;
  for (int32_t r = 0; r < 16; ++r) {
    if (after.blocks[0].positions[r] == -1) {
      ++free_slots;
      EXPECT_EQ(after.blocks[0].candidate[r], 0);
    }
  }
  EXPECT_EQ(free_slots, 1);

  // Releasing everything returns the budget to zero while the store lives.
  std::vector<int64_t> all = Range(0, 16);
  all.insert(all.end(), {50, 51, 52});
  rr = store->Release(all);
  EXPECT_EQ(rr.rows_released, 15);
  EXPECT_EQ(rr.bytes_freed, seg);
  EXPECT_EQ(store->bytes(), 0u);
  EXPECT_EQ(budget.used_bytes(), 0u);
  EXPECT_EQ(budget.segments(), 0);
  EXPECT_TRUE(store->View().blocks.empty());
  EXPECT_EQ(store->counts().stored, 0);

  // And the store is usable again.
  ASSERT_TRUE(model.Offload(*store, {3}, 0, 2).ok());
  EXPECT_EQ(budget.used_bytes(), seg);
  model.ExpectGather(*store, {3}, 0, 2);
}

TEST(RowStore, MarkPromotedAndReoffload) {
  const Geometry g = MakeGeometry(DType::kFloat16, 3);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 9);
  ASSERT_TRUE(model.Offload(*store, Range(0, 10), 0, 3).ok());
  ASSERT_TRUE(model.Offload(*store, {20}, 0, 1).ok());  // incomplete
  const Snapshot before = Snapshot::Of(*store, budget, g);

  absl::Status s = store->MarkPromoted(std::vector<int64_t>{2, 99});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "positions[1]: position 99 is not stored");
  s = store->MarkPromoted(std::vector<int64_t>{2, 20});
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(StartsWith(s.message(), "positions[1]: position 20 is missing layers")) << s;
  Snapshot::Of(*store, budget, g).ExpectEq(before);

  ASSERT_TRUE(store->MarkPromoted(std::vector<int64_t>{2, 5, 2}).ok());
  EXPECT_EQ(store->counts().promoted, 2);
  EXPECT_EQ(store->counts().candidate, 8);
  EXPECT_EQ(store->counts().complete, 10);
  EXPECT_EQ(CandidateOf(*store, 2), 0);
  EXPECT_EQ(CandidateOf(*store, 5), 0);
  EXPECT_EQ(CandidateOf(*store, 4), 1);
  // Promoted rows can still be gathered.
  model.ExpectGather(*store, {2, 5}, 0, 3);

  // The engine evicts row 5 again (one layer is enough): a candidate once more.
  absl::StatusOr<OffloadResult> r = model.Offload(*store, {5}, 1, 2);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->rows_completed, 0);
  EXPECT_EQ(CandidateOf(*store, 5), 1);
  EXPECT_EQ(CandidateOf(*store, 2), 0);
  EXPECT_EQ(store->counts().promoted, 1);
  EXPECT_EQ(store->counts().candidate, 9);
  model.ExpectGather(*store, {5}, 0, 3);
  // And it can be promoted again.
  ASSERT_TRUE(store->MarkPromoted(std::vector<int64_t>{5}).ok());
  EXPECT_EQ(CandidateOf(*store, 5), 0);
  EXPECT_EQ(store->counts().promoted, 2);
  EXPECT_EQ(store->counts().candidate, 8);

  // Releasing a promoted row keeps the counters right.
  store->Release(std::vector<int64_t>{2});
  EXPECT_EQ(store->counts().promoted, 1);
  EXPECT_EQ(store->counts().complete, 9);
  EXPECT_EQ(store->counts().stored, 10);
}

TEST(RowStore, ImportanceIsKeptUntilSentAgain) {
  const Geometry g = MakeGeometry(DType::kFloat32, 2);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 10);
  ASSERT_TRUE(model.Offload(*store, {1, 2}, 0, 1, {0.25f, 0.75f}).ok());
  ASSERT_TRUE(model.Offload(*store, {3}, 0, 1).ok());
  ASSERT_TRUE(model.Offload(*store, {2, 1}, 1, 2).ok());  // no importance: kept
  auto importance_of = [&](int64_t p) {
    const ScoreIndexView view = store->View();
    for (const auto& b : view.blocks) {
      for (int32_t r = 0; r < b.rows; ++r) {
        if (b.positions[r] == p) return b.importance[r];
      }
    }
    return -1.f;
  };
  EXPECT_EQ(importance_of(1), 0.25f);
  EXPECT_EQ(importance_of(2), 0.75f);
  EXPECT_EQ(importance_of(3), 0.f);
  ASSERT_TRUE(model.Offload(*store, {2}, 1, 2, {2.5f}).ok());
  EXPECT_EQ(importance_of(2), 2.5f);
  // A freed slot forgets the importance of its last row (row 4 keeps the segment alive).
  ASSERT_TRUE(model.Offload(*store, {4}, 0, 1).ok());
  store->Release(std::vector<int64_t>{1, 2, 3});
  ASSERT_EQ(store->View().blocks.size(), 1u);
  ASSERT_TRUE(model.Offload(*store, {8, 9, 10}, 0, 1, {}).ok());
  EXPECT_EQ(importance_of(8), 0.f);
  EXPECT_EQ(importance_of(9), 0.f);
  EXPECT_EQ(importance_of(10), 0.f);
}

TEST(RowStore, GatherErrors) {
  const Geometry g = MakeGeometry(DType::kFloat16, 3);
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  Model model(g, 11);
  ASSERT_TRUE(model.Offload(*store, {1, 2}, 0, 3).ok());
  ASSERT_TRUE(model.Offload(*store, {3}, 0, 2).ok());
  const size_t lrb = g.LayerRowBytes();
  Bytes k(2 * 2 * lrb, std::byte{0x11}), v(k.size(), std::byte{0x22});
  const Bytes k0 = k;
  auto gather = [&](std::vector<int64_t> p, int32_t lb, int32_t le, size_t kb, size_t vb) {
    return store->Gather(p, lb, le, absl::MakeSpan(k.data(), kb), absl::MakeSpan(v.data(), vb));
  };
  const size_t ok = 2 * 2 * lrb;
  EXPECT_TRUE(gather({1, 2}, 1, 3, ok, ok).ok());
  k = k0;
  absl::Status s = gather({1, 2}, 1, 3, ok - 1, ok);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StartsWith(s.message(), "keys: ")) << s;
  s = gather({1, 2}, 1, 3, ok, ok + 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StartsWith(s.message(), "values: ")) << s;
  s = gather({1, 4}, 1, 3, ok, ok);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "positions[1]: position 4 is not stored");
  s = gather({3, 1}, 0, 2, ok, ok);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(StartsWith(s.message(), "positions[0]: position 3 is missing layers")) << s;
  EXPECT_EQ(gather({1, 2}, 2, 4, ok, ok).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(gather({1, 2}, -1, 1, ok, ok).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(gather({1, 2}, 2, 2, 0, 0).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(k, k0);  // failed gathers wrote nothing
  EXPECT_TRUE(store->Gather({}, 0, 3, {}, {}).ok());
}

// Index-only: scoring layers' keys only, no payload; complete once every scoring layer
// arrived; chunks with values or other layers refused without a change; no Gather.
TEST(RowStore, IndexOnlyKeepsScoringKeysOnly) {
  Geometry g = MakeGeometry(DType::kFloat16, 4, {1, 3});
  g.index_only = true;
  TierBudget budget("host", 1 << 24);
  auto store = RowStore::Create(g, &budget, 16);
  const size_t lrb = g.LayerRowBytes();
  const std::vector<int64_t> positions = Range(10, 30);  // two segments
  std::mt19937_64 rng(5);
  std::map<int32_t, Bytes> keys_of;  // layer -> [row][kv][d]
  auto offload = [&](int32_t lb, int32_t le, size_t value_bytes) {
    Bytes keys(static_cast<size_t>(le - lb) * positions.size() * lrb);
    for (size_t i = 1; i < keys.size(); i += 2) keys[i] = static_cast<std::byte>(rng() & 0x3b);
    const Bytes values(value_bytes, std::byte{1});
    OffloadChunk chunk;
    chunk.positions = positions;
    chunk.layer_begin = lb;
    chunk.layer_end = le;
    chunk.keys = keys;
    chunk.values = values;
    absl::StatusOr<OffloadResult> r = store->Offload(chunk);
    if (r.ok()) keys_of[lb] = keys;
    return r;
  };
  absl::StatusOr<OffloadResult> r = offload(1, 2, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows_completed, 0);
  EXPECT_EQ(r->bytes, positions.size() * lrb);  // keys only
  EXPECT_EQ(store->counts().stored, 20);
  EXPECT_EQ(store->counts().complete, 0);

  const Snapshot before = Snapshot::Of(*store, budget, g);
  r = offload(3, 4, positions.size() * lrb);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StartsWith(r.status().message(), "values: must be empty")) << r.status();
  r = offload(2, 4, 0);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(StartsWith(r.status().message(), "layer_begin: layer 2 ")) << r.status();
  Snapshot::Of(*store, budget, g).ExpectEq(before);

  r = offload(3, 4, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->rows_completed, 20);
  EXPECT_EQ(store->counts().candidate, 20);
  // Two segments of head only: no payload bytes anywhere.
  EXPECT_EQ(SegmentLayout::For(g, 16).payload_bytes, 0u);
  EXPECT_EQ(store->bytes(), 2 * ExpectedSegmentBytes(g, 16));
  EXPECT_EQ(budget.used_bytes(), store->bytes());

  // The score index holds both scoring layers' keys of every row.
  const ScoreIndexView view = store->View();
  ASSERT_EQ(view.blocks.size(), 2u);
  const size_t kvd = lrb / 2;
  for (size_t b = 0; b < 2; ++b) {
    const auto* index = static_cast<const uint16_t*>(view.blocks[b].keys);
    for (int32_t slot = 0; slot < view.blocks[b].rows; ++slot) {
      const size_t row = static_cast<size_t>(view.blocks[b].positions[slot] - 10);
      for (size_t si = 0; si < 2; ++si) {
        const Bytes& sent = keys_of[si == 0 ? 1 : 3];
        for (size_t e = 0; e < kvd; ++e) {
          uint16_t want;
          std::memcpy(&want, sent.data() + row * lrb + 2 * e, 2);
          ASSERT_EQ(index[(si * kvd + e) * 16 + static_cast<size_t>(slot)], want)
              << "row " << row << " scoring layer " << si << " element " << e;
        }
      }
    }
  }

  Bytes k(lrb), v(lrb);
  const absl::Status gathered = store->Gather({10}, 1, 2, absl::MakeSpan(k), absl::MakeSpan(v));
  EXPECT_EQ(gathered.code(), absl::StatusCode::kFailedPrecondition) << gathered;
  ASSERT_TRUE(store->MarkPromoted({10, 11}).ok());
  EXPECT_EQ(store->counts().candidate, 18);
  EXPECT_EQ(store->Release(positions).rows_released, 20);
  EXPECT_EQ(budget.used_bytes(), 0u);
}

TEST(RowStore, ManyRowsOverManySegments) {
  const Geometry g = MakeGeometry(DType::kFloat16, 6, {0, 5});
  TierBudget budget("host", 1 << 28);
  auto store = RowStore::Create(g, &budget, 64);
  Model model(g, 12);
  std::mt19937 rng(13);
  std::vector<int64_t> positions = Range(0, 1000);
  std::shuffle(positions.begin(), positions.end(), rng);
  for (size_t begin = 0; begin < positions.size(); begin += 37) {
    const size_t end = std::min(positions.size(), begin + 37);
    const std::vector<int64_t> chunk(positions.begin() + begin, positions.begin() + end);
    ASSERT_TRUE(model.Offload(*store, chunk, 0, 4).ok());
    ASSERT_TRUE(model.Offload(*store, chunk, 4, 6).ok());
  }
  EXPECT_EQ(store->counts().stored, 1000);
  EXPECT_EQ(store->counts().candidate, 1000);
  const ScoreIndexView view = store->View();
  EXPECT_EQ(view.blocks.size(), 16u);  // ceil(1000 / 64)
  EXPECT_EQ(budget.segments(), 16);
  EXPECT_EQ(store->bytes(), 16 * ExpectedSegmentBytes(g, 64));
  std::set<int64_t> seen;
  int64_t candidates = 0;
  for (const auto& b : view.blocks) {
    for (int32_t r = 0; r < b.rows; ++r) {
      seen.insert(b.positions[r]);
      candidates += b.candidate[r];
    }
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(candidates, 1000);
  std::shuffle(positions.begin(), positions.end(), rng);
  model.ExpectGather(*store, positions, 0, 6);

  // Release every other row, then refill: the holes are used before any new segment.
  std::vector<int64_t> odd;
  for (int64_t p = 1; p < 1000; p += 2) odd.push_back(p);
  EXPECT_EQ(store->Release(odd).rows_released, 500);
  EXPECT_EQ(budget.segments(), 16);
  ASSERT_TRUE(model.Offload(*store, Range(5000, 5500), 0, 6).ok());
  EXPECT_EQ(budget.segments(), 16);
  ASSERT_TRUE(model.Offload(*store, Range(6000, 6025), 0, 6).ok());  // 24 free slots left
  EXPECT_EQ(budget.segments(), 17);
  std::vector<int64_t> even;
  for (int64_t p = 0; p < 1000; p += 2) even.push_back(p);
  model.ExpectGather(*store, even, 0, 6);
  model.ExpectGather(*store, Range(5000, 5500), 0, 6);
}

}  // namespace
}  // namespace kvtier::storage
