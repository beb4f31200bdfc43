// The tiered store against a real RocksDB in a temporary directory: CRC32C, the segment
// codec, demotion and promotion through the tier manager, write-through and recovery,
// DATA_LOSS on damaged records, quotas, quantized cold payloads and concurrent movement.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gpu/sketch.h"
#include "gtest/gtest.h"
#include "storage/crc32c.h"
#include "storage/kv_db.h"
#include "storage/quant/float16.h"
#include "storage/row_store.h"
#include "storage/segment.h"
#include "storage/segment_codec.h"
#include "storage/tier_manager.h"

namespace kvtier::storage {
namespace {

constexpr int32_t kLayers = 4;
constexpr int32_t kRows = 16;  // slots per segment

Geometry TestGeometry(std::vector<int32_t> scoring = {}) {
  Geometry g;
  g.scoring_layers = std::move(scoring);
  g.num_layers = kLayers;
  g.num_q_heads = 4;
  g.num_kv_heads = 2;
  g.head_dim = 8;
  g.dtype = DType::kFloat16;
  EXPECT_TRUE(ValidateAndNormalizeGeometry(g).ok());
  return g;
}

// The K (kv = 0) or V (kv = 1) bytes of one row and layer at a version: finite fp16 values
// in [-2, 2) that differ by position, layer, kv and version.
std::vector<std::byte> RowBytes(const Geometry& g, int64_t position, int32_t layer, int kv,
                                uint32_t version = 0) {
  std::vector<std::byte> out(g.LayerRowBytes());
  uint64_t h = (static_cast<uint64_t>(position) * 1000003u + static_cast<uint64_t>(layer) * 7919u +
                static_cast<uint64_t>(kv) * 104729u + version * 15485863u) |
               1;
  for (size_t e = 0; e < out.size() / 2; ++e) {
    h ^= h << 13;
    h ^= h >> 7;
    h ^= h << 17;
    const uint16_t bits = static_cast<uint16_t>(0x3c00 | (h & 0x83ff));  // +-[1, 2)
    std::memcpy(out.data() + 2 * e, &bits, 2);
  }
  return out;
}

// Offloads layers [lb, le) of `positions` in one chunk (keys only in an index-only session).
absl::StatusOr<OffloadResult> OffloadRows(RowStore& store, const Geometry& g,
                                          const std::vector<int64_t>& positions, int32_t lb = 0,
                                          int32_t le = kLayers, uint32_t version = 0) {
  std::vector<std::byte> keys, values;
  for (int32_t l = lb; l < le; ++l) {
    for (const int64_t p : positions) {
      const auto k = RowBytes(g, p, l, 0, version);
      const auto v = RowBytes(g, p, l, 1, version);
      keys.insert(keys.end(), k.begin(), k.end());
      if (!g.index_only) values.insert(values.end(), v.begin(), v.end());  // keys only there
    }
  }
  OffloadChunk chunk;
  chunk.positions = positions;
  chunk.layer_begin = lb;
  chunk.layer_end = le;
  chunk.keys = keys;
  chunk.values = values;
  return store.Offload(chunk);
}

// Gathers every layer of `positions` and checks the bytes against RowBytes.
void ExpectRows(RowStore& store, const Geometry& g, const std::vector<int64_t>& positions,
                uint32_t version = 0) {
  const size_t lrb = g.LayerRowBytes();
  std::vector<std::byte> keys(kLayers * positions.size() * lrb);
  std::vector<std::byte> values(keys.size());
  ASSERT_TRUE(
      store.Gather(positions, 0, kLayers, absl::MakeSpan(keys), absl::MakeSpan(values)).ok());
  for (int32_t l = 0; l < kLayers; ++l) {
    for (size_t i = 0; i < positions.size(); ++i) {
      const size_t at = (static_cast<size_t>(l) * positions.size() + i) * lrb;
      ASSERT_EQ(std::memcmp(keys.data() + at, RowBytes(g, positions[i], l, 0, version).data(), lrb),
                0)
          << "K of position " << positions[i] << " layer " << l;
      ASSERT_EQ(
          std::memcmp(values.data() + at, RowBytes(g, positions[i], l, 1, version).data(), lrb), 0)
          << "V of position " << positions[i] << " layer " << l;
    }
  }
}

std::vector<int64_t> Range(int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  for (int64_t p = begin; p < end; ++p) out.push_back(p);
  return out;
}

// A TierClient that moves segments of one store, as the server's Session does.
class StoreClient final : public TierClient {
 public:
  explicit StoreClient(std::unique_ptr<RowStore> store) : store_(std::move(store)) {}
  uint64_t DemoteSegment(uint32_t segment) override {
    absl::StatusOr<DemotionPlan> plan;
    {
      absl::MutexLock lock(&mu);
      plan = store_->PrepareDemotion(segment);
    }
    if (!plan.ok()) return 0;
    const absl::Status written = plan->Write();
    absl::MutexLock lock(&mu);
    return store_->FinishDemotion(*plan, written);
  }
  void PrefetchSegment(uint32_t segment) override {
    absl::MutexLock lock(&mu);
    (void)store_->Prefetch(segment);
  }
  RowStore& store() { return *store_; }
  absl::Mutex mu;

 private:
  std::unique_ptr<RowStore> store_;
};

class TieredStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/tiered-" + std::to_string(getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    geometry_ = TestGeometry();
  }
  void TearDown() override {
    clients_.clear();
    tiers_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Opens (or reopens) the database and the tier manager.
  void OpenTiers(TierManagerOptions options, Durability durability = Durability::kWal) {
    clients_.clear();
    tiers_.reset();
    KvDbOptions db_options;
    db_options.path = dir_;
    db_options.durability = durability;
    absl::StatusOr<std::unique_ptr<KvDb>> db = KvDb::Open(db_options);
    ASSERT_TRUE(db.ok()) << db.status();
    absl::StatusOr<std::unique_ptr<TierManager>> tiers =
        TierManager::Create(std::move(options), std::move(*db));
    ASSERT_TRUE(tiers.ok()) << tiers.status();
    tiers_ = std::move(*tiers);
  }

  // Sketch code bytes and scale count of one block (gpu/sketch.h).
  size_t SketchBytes() const {
    return scorer::SketchCodeBytes(static_cast<int32_t>(geometry_.scoring_layers.size()),
                                   geometry_.num_kv_heads, geometry_.head_dim, kRows);
  }
  size_t SketchScales() const {
    return scorer::SketchScaleCount(static_cast<int32_t>(geometry_.scoring_layers.size()),
                                    geometry_.num_kv_heads, kRows);
  }

  StoreContext Context(const std::string& session = "s1", const std::string& tenant = "t",
                       uint64_t incarnation = 0) {
    return StoreContext{nullptr, tiers_.get(), tenant, session, kRows, incarnation};
  }

  // Reopens the database and the tier manager as after a crash (the old stores are simply
  // forgotten) and recovers the store of session `session`; nullptr (and a failure) when
  // recovery fails.
  StoreClient* CrashAndRecover(const TierManagerOptions& options, int64_t* data_loss,
                               const std::string& session = "s1", const std::string& tenant = "t",
                               uint64_t incarnation = 0) {
    OpenTiers(options);
    absl::StatusOr<std::unique_ptr<RowStore>> store =
        RowStore::Recover(geometry_, Context(session, tenant, incarnation), data_loss);
    if (!store.ok()) {
      ADD_FAILURE() << store.status();
      return nullptr;
    }
    return &Adopt(std::move(*store));
  }

  // Keys under `prefix` in the database.
  int CountKeys(const std::string& prefix) {
    int keys = 0;
    EXPECT_TRUE(tiers_->db()
                    ->Scan(prefix,
                           [&](absl::string_view, absl::string_view) {
                             ++keys;
                             return true;
                           })
                    .ok());
    return keys;
  }

  // A store bound to the tier manager through a StoreClient.
  StoreClient& NewStore(const std::string& session = "s1", const std::string& tenant = "t") {
    return Adopt(RowStore::Create(geometry_, Context(session, tenant)));
  }
  StoreClient& Adopt(std::unique_ptr<RowStore> store) {
    auto client = std::make_shared<StoreClient>(std::move(store));
    client->store().Bind(client);
    clients_.push_back(client);
    return *client;
  }

  // Bytes of one segment's payload and of a whole segment.
  uint64_t PayloadBytes() const { return SegmentLayout::For(geometry_, kRows).payload_bytes; }
  uint64_t SegmentBytes() const { return SegmentLayout::For(geometry_, kRows).total_bytes; }

  std::string dir_;
  Geometry geometry_;
  std::unique_ptr<TierManager> tiers_;
  std::vector<std::shared_ptr<StoreClient>> clients_;
};

TEST(KvDbKeys, PrefixEndBoundsExactlyThePrefix) {
  EXPECT_EQ(PrefixEnd("s/t/"), "s/t0");
  EXPECT_EQ(PrefixEnd(std::string("a\xff\xff", 3)), "b");
  EXPECT_EQ(PrefixEnd(""), "");  // no bound: every key
  EXPECT_EQ(PrefixEnd(std::string("\xff", 1)), "");
  // Storage names of different ids never nest: '~' is not allowed in an id.
  const std::string a = SessionPrefix("t", SessionStorageName("s", 1));
  const std::string b = SessionPrefix("t", SessionStorageName("s.x", 1));
  EXPECT_FALSE(absl::StartsWith(b, a));
  EXPECT_NE(SessionStorageName("s", 1), SessionStorageName("s", 2));
}

TEST(Crc32c, StandardCheckValue) {
  const std::string s = "123456789";
  EXPECT_EQ(
      ComputeCrc32c(absl::MakeConstSpan(reinterpret_cast<const std::byte*>(s.data()), s.size())),
      0xE3069283u);
  Crc32c pieces;
  pieces.Update(s.data(), 4);
  pieces.Update(s.data() + 4, 5);
  EXPECT_EQ(pieces.Value(), 0xE3069283u);
}

// The SSE4.2 path (when the CPU has it) equals RocksDB's CRC32C on every length and
// alignment, whole or in pieces.
TEST(Crc32c, MatchesRocksDbOnRandomRangesAndPieces) {
  std::mt19937_64 rng(5);
  std::vector<std::byte> data(70000);
  for (std::byte& b : data) b = static_cast<std::byte>(rng());
  for (int trial = 0; trial < 200; ++trial) {
    const size_t begin = rng() % 64;
    const size_t size = trial < 40 ? static_cast<size_t>(trial) : rng() % (data.size() - 64);
    const absl::Span<const std::byte> range = absl::MakeConstSpan(data).subspan(begin, size);
    const uint32_t expected = internal::RocksDbCrc32c(range);
    EXPECT_EQ(ComputeCrc32c(range), expected) << "begin " << begin << " size " << size;
    Crc32c pieces;
    const size_t cut = size == 0 ? 0 : rng() % size;
    pieces.Update(range.data(), cut);
    pieces.Update(range.data() + cut, size - cut);
    EXPECT_EQ(pieces.Value(), expected) << "cut at " << cut << " of " << size;
  }
}

TEST(SegmentCodec, PatchRoundTripAndDamage) {
  const std::vector<PatchRow> rows = {{3, 100, 0.5f}, {7, 200, 1.5f}};
  const std::string patch = EncodeOffloadPatch(
      42, 1, 3, rows, true, 4, [](size_t l, size_t r, std::byte* k, std::byte* v) {
        for (int i = 0; i < 4; ++i) {
          k[i] = static_cast<std::byte>(l * 16 + r * 4 + static_cast<size_t>(i));
          v[i] = static_cast<std::byte>(~(l * 16 + r * 4 + static_cast<size_t>(i)));
        }
      });
  absl::StatusOr<DecodedPatch> decoded = DecodePatch(patch, "p", 4);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->seq, 42u);
  EXPECT_EQ(decoded->layer_begin, 1);
  EXPECT_EQ(decoded->layer_end, 3);
  ASSERT_EQ(decoded->rows.size(), 2u);
  EXPECT_EQ(decoded->rows[1].slot, 7);
  EXPECT_EQ(decoded->rows[1].position, 200);
  EXPECT_EQ(decoded->rows[1].importance, 1.5f);
  ASSERT_EQ(decoded->keys.size(), 16u);
  EXPECT_EQ(static_cast<uint8_t>(decoded->keys[4 + 1]), 1 * 4 + 1);  // layer 0 of the patch, row 1
  EXPECT_EQ(static_cast<uint8_t>(decoded->values[0]), 0xff);

  // Any flipped bit, and any truncation, is DATA_LOSS naming the record.
  for (size_t at : {size_t{0}, patch.size() / 2, patch.size() - 1}) {
    std::string bad = patch;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    absl::StatusOr<DecodedPatch> d = DecodePatch(bad, "seg/p/1", 4);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kDataLoss) << at;
    EXPECT_NE(d.status().message().find("seg/p/1"), std::string::npos);
  }
  EXPECT_EQ(DecodePatch(patch.substr(0, patch.size() - 5), "p", 4).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(DecodePatch(patch, "p", 8).status().code(), absl::StatusCode::kDataLoss);
}

TEST(SegmentCodec, SessionRecordRoundTrip) {
  SessionRecord r{"tenant-a", "sess.1", TestGeometry(), 120, 64, quant::Format::kInt8};
  const std::string bytes = EncodeSessionRecord(r);
  absl::StatusOr<SessionRecord> back = DecodeSessionRecord(bytes, "m");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tenant, "tenant-a");
  EXPECT_EQ(back->session_id, "sess.1");
  EXPECT_EQ(back->geometry.num_layers, kLayers);
  EXPECT_EQ(back->geometry.scoring_layers.size(), static_cast<size_t>(kLayers));
  EXPECT_EQ(back->ttl_seconds, 120);
  EXPECT_EQ(back->segment_rows, 64);
  EXPECT_EQ(back->cold_format, quant::Format::kInt8);
  std::string bad = bytes;
  bad[10] = static_cast<char>(bad[10] ^ 1);
  EXPECT_EQ(DecodeSessionRecord(bad, "m").status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(TieredStoreTest, DemotedPayloadComesBackBitExact) {
  TierManagerOptions o;
  o.host_capacity_bytes = 64 << 20;
  OpenTiers(o);
  StoreClient& c = NewStore();
  const std::vector<int64_t> positions = Range(0, 3 * kRows);  // three segments
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, positions).ok());
  const uint64_t host_before = tiers_->host().used_bytes();

  // Demote every segment through the manager's owner path.
  for (uint32_t id = 0; id < 3; ++id) EXPECT_EQ(c.DemoteSegment(id), PayloadBytes());
  EXPECT_EQ(c.store().segments_on_disk(), 3);
  EXPECT_EQ(tiers_->host().used_bytes(), host_before - 3 * PayloadBytes());
  EXPECT_EQ(tiers_->stats().demotions.load(), 3u);
  EXPECT_EQ(tiers_->disk().segments(), 3);
  // A second demotion of the same segment has nothing to do.
  EXPECT_EQ(c.DemoteSegment(0), 0u);

  // Scoring does not need the payload: the score index stayed in host RAM.
  EXPECT_EQ(c.store().View().blocks.size(), 3u);
  EXPECT_EQ(c.store().counts().candidate, static_cast<int64_t>(positions.size()));

  // Gather loads the payloads back (promotion on access).
  ExpectRows(c.store(), geometry_, positions);
  EXPECT_EQ(c.store().segments_on_disk(), 0);
  EXPECT_EQ(tiers_->host().used_bytes(), host_before);
  EXPECT_EQ(tiers_->stats().promotions.load(), 3u);
  EXPECT_EQ(tiers_->stats().policy_misses.load(), 3u);

  // Clean segments demote again without a write: the base on disk is still current.
  const uint64_t writes = tiers_->db()->stats().writes.load();
  EXPECT_EQ(c.DemoteSegment(1), PayloadBytes());
  EXPECT_EQ(tiers_->db()->stats().writes.load(), writes);
}

TEST_F(TieredStoreTest, GatherReadsThroughWhenHostRamIsFull) {
  TierManagerOptions o;
  o.host_capacity_bytes = 3 * SegmentBytes();
  OpenTiers(o);
  StoreClient& c = NewStore();
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 3 * kRows)).ok());
  EXPECT_EQ(c.DemoteSegment(0), PayloadBytes());
  // Fill the freed room with a fourth segment's worth of head and payload... nearly.
  ASSERT_TRUE(tiers_->host().Reserve(PayloadBytes()).ok());
  ExpectRows(c.store(), geometry_, Range(0, kRows));
  EXPECT_EQ(tiers_->stats().read_through.load(), 1u);
  EXPECT_EQ(c.store().segments_on_disk(), 1);  // read for the call only
  tiers_->host().Free(PayloadBytes());
}

TEST_F(TieredStoreTest, DamagedBaseIsDataLossNeverServed) {
  TierManagerOptions o;
  OpenTiers(o);
  StoreClient& c = NewStore();
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 2 * kRows)).ok());
  ASSERT_EQ(c.DemoteSegment(0), PayloadBytes());

  const std::string key = SegmentBaseKey("t", SessionStorageName("s1", 0), 0);
  std::string base;
  ASSERT_TRUE(tiers_->db()->Get(key, &base).ok());
  base[base.size() / 2] = static_cast<char>(base[base.size() / 2] ^ 0x01);
  KvBatch batch;
  batch.Put(key, base);
  ASSERT_TRUE(tiers_->db()->Write(batch).ok());

  std::vector<std::byte> keys(kLayers * geometry_.LayerRowBytes()), values(keys.size());
  const std::vector<int64_t> one = {3};
  absl::Status s = c.store().Gather(one, 0, kLayers, absl::MakeSpan(keys), absl::MakeSpan(values));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("CRC32C"), std::string::npos) << s;
  EXPECT_EQ(tiers_->stats().data_loss.load(), 1u);
  EXPECT_EQ(c.store().segments_on_disk(), 1);  // nothing of it was installed
  // The other segment is unaffected.
  ExpectRows(c.store(), geometry_, Range(kRows, 2 * kRows));
}

TEST_F(TieredStoreTest, RecoveryRebuildsRowsFlagsAndScoreIndex) {
  TierManagerOptions o;
  OpenTiers(o);
  std::vector<std::byte> index_before;
  std::vector<uint8_t> sketch_before;
  std::vector<float> scales_before;
  RowCounts counts_before;
  {
    StoreClient& c = NewStore();
    RowStore& store = c.store();
    ASSERT_TRUE(store.PersistSession("record").ok());
    // Segment 0: demoted then changed again (base + patches); segment 1: patches only.
    ASSERT_TRUE(OffloadRows(store, geometry_, Range(0, kRows)).ok());
    ASSERT_EQ(c.DemoteSegment(0), PayloadBytes());
    ASSERT_TRUE(OffloadRows(store, geometry_, Range(kRows, 2 * kRows), 0, 2).ok());
    ASSERT_TRUE(OffloadRows(store, geometry_, Range(kRows, 2 * kRows), 2, kLayers).ok());
    ASSERT_TRUE(OffloadRows(store, geometry_, {5}, 0, kLayers, /*version=*/7).ok());  // reloads 0
    ASSERT_TRUE(store.MarkPromoted(std::vector<int64_t>{6, 20}).ok());
    ASSERT_TRUE(store.Release(std::vector<int64_t>{7, 21}).persisted.ok());
    ASSERT_TRUE(OffloadRows(store, geometry_, {100}, 0, 1).ok());  // incomplete row
    counts_before = store.counts();
    const ScoreIndexView view = store.View();
    const size_t block = static_cast<size_t>(kLayers) * geometry_.LayerRowBytes() * kRows;
    for (const auto& b : view.blocks) {
      const auto* p = static_cast<const std::byte*>(b.keys);
      index_before.insert(index_before.end(), p, p + block);
      sketch_before.insert(sketch_before.end(), b.sketch_codes, b.sketch_codes + SketchBytes());
      scales_before.insert(scales_before.end(), b.sketch_scales, b.sketch_scales + SketchScales());
    }
  }
  // A crash: nothing is shut down cleanly (the store is simply forgotten, the DB reopened).
  int64_t data_loss = 0;
  StoreClient* recovered = CrashAndRecover(o, &data_loss);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(data_loss, 0);
  RowStore& store = recovered->store();
  const RowCounts counts = store.counts();
  EXPECT_EQ(counts.stored, counts_before.stored);
  EXPECT_EQ(counts.complete, counts_before.complete);
  EXPECT_EQ(counts.candidate, counts_before.candidate);
  EXPECT_EQ(counts.promoted, counts_before.promoted);
  std::vector<int64_t> kept;
  for (int64_t p = 0; p < 2 * kRows; ++p) {
    if (p != 5 && p != 7 && p != 21) kept.push_back(p);
  }
  ExpectRows(store, geometry_, kept);
  ExpectRows(store, geometry_, {5}, 7);
  EXPECT_EQ(store.CheckComplete(std::vector<int64_t>{7}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.CheckComplete(std::vector<int64_t>{100}).code(),
            absl::StatusCode::kFailedPrecondition);
  // The score index is rebuilt from the stored keys, byte for byte.
  const ScoreIndexView view = store.View();
  const size_t block = static_cast<size_t>(kLayers) * geometry_.LayerRowBytes() * kRows;
  std::vector<std::byte> index_after;
  for (const auto& b : view.blocks) {
    const auto* p = static_cast<const std::byte*>(b.keys);
    index_after.insert(index_after.end(), p, p + block);
  }
  ASSERT_EQ(index_after.size(), index_before.size());
  EXPECT_TRUE(index_after == index_before);
  // And so are the fast mode's sketches of them.
  std::vector<uint8_t> sketch_after;
  std::vector<float> scales_after;
  for (const auto& b : view.blocks) {
    sketch_after.insert(sketch_after.end(), b.sketch_codes, b.sketch_codes + SketchBytes());
    scales_after.insert(scales_after.end(), b.sketch_scales, b.sketch_scales + SketchScales());
  }
  EXPECT_TRUE(sketch_after == sketch_before);
  EXPECT_TRUE(scales_after == scales_before);
  // Promoted rows stay promoted, so Repair does not choose them twice.
  for (const auto& b : view.blocks) {
    for (int32_t s = 0; s < b.rows; ++s) {
      if (b.positions[s] == 6 || b.positions[s] == 20) {
        EXPECT_EQ(b.candidate[s], 0);
      }
    }
  }
}

TEST_F(TieredStoreTest, RecoverySkipsDamagedSegmentsAndCountsThem) {
  TierManagerOptions o;
  OpenTiers(o);
  {
    StoreClient& c = NewStore();
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 2 * kRows)).ok());
  }
  // Damage the first patch of segment 1.
  std::string key, value;
  ASSERT_TRUE(tiers_->db()
                  ->Scan(SegmentPrefix("t", SessionStorageName("s1", 0), 1),
                         [&](absl::string_view k, absl::string_view v) {
                           key = std::string(k);
                           value = std::string(v);
                           return false;
                         })
                  .ok());
  ASSERT_FALSE(key.empty());
  value[20] = static_cast<char>(value[20] ^ 0x40);
  KvBatch batch;
  batch.Put(key, value);
  ASSERT_TRUE(tiers_->db()->Write(batch).ok());

  int64_t data_loss = 0;
  StoreClient* recovered = CrashAndRecover(o, &data_loss);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(data_loss, 1);
  RowStore& store = recovered->store();
  EXPECT_EQ(store.counts().stored, kRows);
  ExpectRows(store, geometry_, Range(0, kRows));
  EXPECT_EQ(store.CheckComplete(std::vector<int64_t>{kRows}).code(), absl::StatusCode::kNotFound);
}

TEST_F(TieredStoreTest, DurabilityNoneWritesOnlyDemotions) {
  TierManagerOptions o;
  OpenTiers(o, Durability::kNone);
  StoreClient& c = NewStore();
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 2 * kRows)).ok());
  EXPECT_EQ(tiers_->db()->stats().writes.load(), 0u);
  EXPECT_EQ(tiers_->disk().used_bytes(), 0u);
  ASSERT_EQ(c.DemoteSegment(0), PayloadBytes());
  EXPECT_EQ(tiers_->db()->stats().writes.load(), 1u);
  ExpectRows(c.store(), geometry_, Range(0, 2 * kRows));
}

// An index-only session under wal durability writes nothing to disk, and its segments are
// never demoted (there is no payload), even over the high watermark.
TEST_F(TieredStoreTest, IndexOnlySessionIsNeitherPersistedNorDemoted) {
  geometry_ = TestGeometry({0, 2});
  geometry_.index_only = true;
  TierManagerOptions o;
  o.host_capacity_bytes = 4 * SegmentBytes();
  OpenTiers(o, Durability::kWal);
  StoreClient& c = NewStore();
  ASSERT_TRUE(c.store().PersistSession("record").ok());
  for (const int32_t layer : geometry_.scoring_layers) {
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 3 * kRows), layer, layer + 1).ok());
  }
  EXPECT_EQ(c.store().counts().candidate, 3 * kRows);
  EXPECT_EQ(tiers_->db()->stats().writes.load(), 0u);
  EXPECT_EQ(CountKeys(""), 0);
  EXPECT_EQ(c.DemoteSegment(0), 0u);
  EXPECT_EQ(c.store().segments_on_disk(), 0);
  EXPECT_EQ(tiers_->host().used_bytes(), 3 * SegmentBytes());
  int64_t data_loss = 0;
  StoreClient* recovered = CrashAndRecover(o, &data_loss);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(recovered->store().counts().stored, 0);
}

// Segment keys of sessions that `keep` rejects are deleted; kept sessions keep every key.
TEST_F(TieredStoreTest, DeleteSessionsUnlessRemovesOrphanedKeysOnly) {
  TierManagerOptions o;
  OpenTiers(o);
  StoreClient& live = Adopt(RowStore::Create(geometry_, Context("s1", "t", 7)));
  ASSERT_TRUE(OffloadRows(live.store(), geometry_, Range(0, 2 * kRows)).ok());
  ASSERT_EQ(live.DemoteSegment(0), PayloadBytes());
  StoreClient& orphan = Adopt(RowStore::Create(geometry_, Context("s1", "t", 8)));
  ASSERT_TRUE(OffloadRows(orphan.store(), geometry_, Range(0, kRows)).ok());
  StoreClient& other_tenant = Adopt(RowStore::Create(geometry_, Context("s2", "u", 1)));
  ASSERT_TRUE(OffloadRows(other_tenant.store(), geometry_, Range(0, kRows)).ok());
  KvBatch stray;  // keys without an incarnation in the name
  stray.Put("s/t/s3/g/00000000/b", "old");
  stray.Put("s/t/s4/g/00000000/b", "kept");
  // Keys of no session's shape: left alone, and never a range that covers live keys
  // ("s/t/s1" sorts just before the live "s/t/s1~...", "s/" before everything).
  stray.Put("s/t/s1", "damaged");
  stray.Put("s/", "damaged");
  stray.Put("s//x/", "damaged");
  ASSERT_TRUE(tiers_->db()->Write(stray).ok());
  const std::string live_prefix = SessionPrefix("t", SessionStorageName("s1", 7));
  const int live_keys = CountKeys(live_prefix);
  ASSERT_GT(live_keys, 0);

  std::vector<std::string> asked;
  auto keep = [&](absl::string_view prefix) {
    asked.emplace_back(prefix);
    return prefix == live_prefix || prefix == "s/t/s4/";
  };
  absl::StatusOr<int64_t> deleted = tiers_->db()->DeleteSessionsUnless(keep);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 3);
  EXPECT_EQ(asked.size(), 5u);  // one question per session, not per key
  EXPECT_EQ(CountKeys("s/"), live_keys + 1 + 3);
  EXPECT_EQ(CountKeys(live_prefix), live_keys);
  ExpectRows(live.store(), geometry_, Range(0, 2 * kRows));  // the demoted segment too
  absl::StatusOr<int64_t> again = tiers_->db()->DeleteSessionsUnless(keep);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, 0);
}

TEST_F(TieredStoreTest, DropDeletesEverythingAndGivesBytesBack) {
  TierManagerOptions o;
  OpenTiers(o);
  StoreClient& c = NewStore();
  ASSERT_TRUE(c.store().PersistSession("r").ok());
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 3 * kRows)).ok());
  ASSERT_EQ(c.DemoteSegment(1), PayloadBytes());
  ASSERT_TRUE(c.store().MarkPromoted(std::vector<int64_t>{1}).ok());
  EXPECT_GT(tiers_->disk().used_bytes(), 0u);
  EXPECT_GT(tiers_->TenantBytes("t"), 0u);
  ASSERT_TRUE(c.store().Drop().ok());
  // Calls that found the session before the drop see no rows (and touch no freed memory).
  std::vector<std::byte> k(kLayers * geometry_.LayerRowBytes()), v(k.size());
  EXPECT_EQ(c.store()
                .Gather(std::vector<int64_t>{2}, 0, kLayers, absl::MakeSpan(k), absl::MakeSpan(v))
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(c.store().CheckComplete(std::vector<int64_t>{2}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.store().MarkPromoted(std::vector<int64_t>{2}).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c.store().Release(std::vector<int64_t>{2, 3}).rows_released, 0);
  EXPECT_EQ(c.store().View().blocks.size(), 0u);
  EXPECT_EQ(tiers_->disk().used_bytes(), 0u);
  EXPECT_EQ(tiers_->disk().segments(), 0);
  EXPECT_EQ(tiers_->host().segments(), 0);
  EXPECT_EQ(tiers_->TenantBytes("t"), 0u);
  EXPECT_EQ(CountKeys(""), 0);
}

TEST_F(TieredStoreTest, ReleasingEveryRowGivesDiskBytesBack) {
  TierManagerOptions o;
  OpenTiers(o);
  StoreClient& c = NewStore();
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 2 * kRows), 0, 2).ok());
  ASSERT_EQ(c.DemoteSegment(0), PayloadBytes());
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 2 * kRows), 2, kLayers).ok());
  ASSERT_EQ(c.DemoteSegment(0), PayloadBytes());
  ASSERT_TRUE(c.store().Release(Range(0, 2 * kRows)).persisted.ok());
  EXPECT_EQ(c.store().segments(), 0);
  EXPECT_EQ(tiers_->disk().used_bytes(), 0u);
  EXPECT_EQ(tiers_->host().used_bytes(), 0u);
}

TEST_F(TieredStoreTest, DemoterKeepsHostUnderWatermarkAndEveryRowReadable) {
  // One scoring layer: the score index (which stays in host RAM) is small next to payloads.
  geometry_ = TestGeometry({0});
  TierManagerOptions o;
  o.host_capacity_bytes = 16 * SegmentBytes();
  o.high_watermark = 0.75;
  o.low_watermark = 0.5;
  o.demote_interval = absl::Milliseconds(5);
  OpenTiers(o);
  tiers_->Start();
  StoreClient& c = NewStore();
  // 32 segments' worth of rows, four times host RAM, offloaded through MakeRoom as the
  // server does.
  for (int64_t s = 0; s < 32; ++s) {
    ASSERT_TRUE(tiers_->MakeRoom(2 * SegmentBytes(), absl::Now() + absl::Seconds(10)));
    absl::MutexLock lock(&c.mu);
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(s * kRows, (s + 1) * kRows)).ok()) << s;
  }
  EXPECT_LE(tiers_->host().used_bytes(), tiers_->host().capacity_bytes());
  EXPECT_GE(tiers_->stats().demotions.load(), 20u);
  {
    absl::MutexLock lock(&c.mu);
    EXPECT_GE(c.store().segments_on_disk(), 20);
  }
  // Every row reads back, batch by batch (each batch fits in host RAM).
  for (int64_t s = 0; s < 32; s += 2) {
    ASSERT_TRUE(tiers_->MakeRoom(2 * PayloadBytes(), absl::Now() + absl::Seconds(10)));
    absl::MutexLock lock(&c.mu);
    ExpectRows(c.store(), geometry_, Range(s * kRows, (s + 2) * kRows));
  }
  tiers_->Stop();
}

TEST_F(TieredStoreTest, NoTornReadsWhileSegmentsMove) {
  // A reader, a writer and the demoter all work on one store: every Gather sees, for each
  // row, the bytes of one complete version.
  TierManagerOptions o;
  o.host_capacity_bytes = 6 * SegmentBytes();
  o.high_watermark = 0.6;
  o.low_watermark = 0.3;
  o.demote_interval = absl::Milliseconds(1);
  OpenTiers(o);
  StoreClient& c = NewStore();
  {
    absl::MutexLock lock(&c.mu);
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 4 * kRows)).ok());
  }
  tiers_->Start();
  std::atomic<bool> stop{false};
  std::atomic<int> versions{1};
  std::thread writer([&] {
    for (uint32_t v = 1; v < 60 && !stop; ++v) {
      absl::MutexLock lock(&c.mu);
      ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 4 * kRows), 0, kLayers, v).ok());
      versions = static_cast<int>(v) + 1;
    }
  });
  const size_t lrb = geometry_.LayerRowBytes();
  int checks = 0;
  while (checks < 200) {
    std::vector<int64_t> positions = Range(0, 4 * kRows);
    std::vector<std::byte> keys(kLayers * positions.size() * lrb), values(keys.size());
    {
      absl::MutexLock lock(&c.mu);
      ASSERT_TRUE(c.store()
                      .Gather(positions, 0, kLayers, absl::MakeSpan(keys), absl::MakeSpan(values))
                      .ok());
    }
    // Find the version of row 0 and require every row to be exactly that version.
    uint32_t version = 0;
    for (uint32_t v = 0; v < 64; ++v) {
      if (std::memcmp(keys.data(), RowBytes(geometry_, 0, 0, 0, v).data(), lrb) == 0) version = v;
    }
    for (int32_t l = 0; l < kLayers; ++l) {
      for (size_t i = 0; i < positions.size(); ++i) {
        const size_t at = (static_cast<size_t>(l) * positions.size() + i) * lrb;
        ASSERT_EQ(std::memcmp(keys.data() + at,
                              RowBytes(geometry_, positions[i], l, 0, version).data(), lrb),
                  0);
        ASSERT_EQ(std::memcmp(values.data() + at,
                              RowBytes(geometry_, positions[i], l, 1, version).data(), lrb),
                  0);
      }
    }
    ++checks;
  }
  stop = true;
  writer.join();
  tiers_->Stop();
  EXPECT_GT(tiers_->stats().demotions.load(), 0u);
}

TEST_F(TieredStoreTest, TenantQuotaRefusesAndChangesNothing) {
  TierManagerOptions o;
  o.default_tenant_quota_bytes = 2 * SegmentBytes();
  o.tenant_quota_bytes["big"] = 100 * SegmentBytes();
  OpenTiers(o);
  StoreClient& small = NewStore("s1", "small");
  ASSERT_TRUE(OffloadRows(small.store(), geometry_, Range(0, 2 * kRows)).ok());
  absl::StatusOr<OffloadResult> refused =
      OffloadRows(small.store(), geometry_, Range(2 * kRows, 3 * kRows));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("tenant small"), std::string::npos);
  EXPECT_EQ(small.store().counts().stored, 2 * kRows);
  EXPECT_EQ(tiers_->stats().quota_rejections.load(), 1u);
  // Another tenant with its own quota is not affected.
  StoreClient& big = NewStore("s2", "big");
  EXPECT_TRUE(OffloadRows(big.store(), geometry_, Range(0, 5 * kRows)).ok());
  // Room comes back with a release.
  ASSERT_TRUE(small.store().Release(Range(0, kRows)).persisted.ok());
  EXPECT_TRUE(OffloadRows(small.store(), geometry_, Range(2 * kRows, 3 * kRows)).ok());
}

TEST_F(TieredStoreTest, DiskTierFullIsResourceExhausted) {
  TierManagerOptions o;
  o.disk_capacity_bytes = 3 * PayloadBytes();
  OpenTiers(o);
  StoreClient& c = NewStore();
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 2 * kRows)).ok());
  absl::StatusOr<OffloadResult> refused =
      OffloadRows(c.store(), geometry_, Range(2 * kRows, 4 * kRows));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("nvme"), std::string::npos) << refused.status();
  EXPECT_EQ(c.store().counts().stored, 2 * kRows);
}

TEST_F(TieredStoreTest, QuantizedColdPayloadKeepsGuardWindowExact) {
  TierManagerOptions o;
  o.cold_format = quant::Format::kInt8;
  o.guard_rows = kRows;  // the newest segment stays raw
  OpenTiers(o);
  StoreClient& c = NewStore();
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 3 * kRows)).ok());
  const std::string base_key = SegmentBaseKey("t", SessionStorageName("s1", 0), 0);
  ASSERT_EQ(c.DemoteSegment(0), PayloadBytes());
  ASSERT_EQ(c.DemoteSegment(2), PayloadBytes());
  std::string quantized, raw;
  ASSERT_TRUE(tiers_->db()->Get(base_key, &quantized).ok());
  ASSERT_TRUE(tiers_->db()->Get(SegmentBaseKey("t", SessionStorageName("s1", 0), 2), &raw).ok());
  EXPECT_LT(quantized.size(), raw.size() * 3 / 4);  // int8 is about half of fp16

  // The guard segment is bit-exact; the quantized one is close.
  ExpectRows(c.store(), geometry_, Range(2 * kRows, 3 * kRows));
  const std::vector<int64_t> positions = Range(0, kRows);
  const size_t lrb = geometry_.LayerRowBytes();
  std::vector<std::byte> keys(kLayers * positions.size() * lrb), values(keys.size());
  ASSERT_TRUE(
      c.store().Gather(positions, 0, kLayers, absl::MakeSpan(keys), absl::MakeSpan(values)).ok());
  double err = 0, norm = 0;
  for (int32_t l = 0; l < kLayers; ++l) {
    for (size_t i = 0; i < positions.size(); ++i) {
      const std::vector<std::byte> want = RowBytes(geometry_, positions[i], l, 0);
      for (size_t e = 0; e < lrb / 2; ++e) {
        uint16_t a, b;
        std::memcpy(&a, keys.data() + (static_cast<size_t>(l) * positions.size() + i) * lrb + 2 * e,
                    2);
        std::memcpy(&b, want.data() + 2 * e, 2);
        const double x = quant::HalfToFloat(a), y = quant::HalfToFloat(b);
        err += (x - y) * (x - y);
        norm += y * y;
      }
    }
  }
  EXPECT_LT(std::sqrt(err / norm), 0.02);
  EXPECT_GT(err, 0.0);  // it really was quantized
}

TEST_F(TieredStoreTest, StagePromotesUnderTheWatermarkOnly) {
  TierManagerOptions o;
  o.host_capacity_bytes = 8 * SegmentBytes();
  OpenTiers(o);
  StoreClient& c = NewStore();
  ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, 6 * kRows)).ok());
  for (uint32_t id = 0; id < 6; ++id) ASSERT_EQ(c.DemoteSegment(id), PayloadBytes());
  absl::StatusOr<StageResult> staged = c.store().Stage();
  ASSERT_TRUE(staged.ok()) << staged.status();
  EXPECT_GT(staged->segments_loaded, 0);
  EXPECT_EQ(staged->segments_loaded + staged->segments_left, 6);
  EXPECT_TRUE(tiers_->FitsUnderHighWatermark(0));
  EXPECT_EQ(tiers_->stats().prefetches.load(), static_cast<uint64_t>(staged->segments_loaded));
  EXPECT_EQ(c.store().segments_on_disk(), staged->segments_left);
}

// BeginPause's room: other sessions' segments are demoted, never the paused one's, until
// the paused session's demoted payloads fit under the high watermark.
TEST_F(TieredStoreTest, MakeRoomForStagingDemotesOtherSessionsOnly) {
  geometry_ = TestGeometry({0});  // a light score index: host RAM holds mostly payloads
  TierManagerOptions o;
  o.host_capacity_bytes = 16 * SegmentBytes();
  OpenTiers(o);
  StoreClient& paused = NewStore("paused");
  StoreClient& busy = NewStore("busy");
  ASSERT_TRUE(OffloadRows(paused.store(), geometry_, Range(0, 6 * kRows)).ok());
  for (uint32_t id = 0; id < 4; ++id) ASSERT_EQ(paused.DemoteSegment(id), PayloadBytes());
  ASSERT_TRUE(OffloadRows(busy.store(), geometry_, Range(0, 10 * kRows)).ok());
  const uint64_t wanted = paused.store().demoted_payload_bytes();
  ASSERT_EQ(wanted, 4 * PayloadBytes());
  ASSERT_TRUE(tiers_->FitsUnderHighWatermark(0));
  ASSERT_FALSE(tiers_->FitsUnderHighWatermark(wanted));

  EXPECT_TRUE(tiers_->MakeRoomForStaging(wanted, paused.store().tier_owner(),
                                         absl::Now() + absl::Seconds(10)));
  EXPECT_TRUE(tiers_->FitsUnderHighWatermark(wanted));
  EXPECT_EQ(paused.store().segments_on_disk(), 4);  // its resident segments stayed
  EXPECT_GT(busy.store().segments_on_disk(), 0);
  absl::StatusOr<StageResult> staged = paused.store().Stage();
  ASSERT_TRUE(staged.ok()) << staged.status();
  EXPECT_EQ(staged->segments_loaded, 4);
  EXPECT_EQ(staged->segments_left, 0);
  ExpectRows(paused.store(), geometry_, Range(0, 6 * kRows));
  ExpectRows(busy.store(), geometry_, Range(0, 10 * kRows));
}

// A demotion of a dropped session that lands after the same id was opened again must not
// touch the new session's records: they live under another incarnation.
TEST_F(TieredStoreTest, LateDemotionOfDroppedSessionLeavesReopenedSessionIntact) {
  TierManagerOptions o;
  OpenTiers(o);
  StoreClient& old_client = Adopt(RowStore::Create(geometry_, Context("s1", "t", 1)));
  RowStore& old_store = old_client.store();
  ASSERT_TRUE(OffloadRows(old_store, geometry_, Range(0, kRows)).ok());
  absl::StatusOr<DemotionPlan> plan = old_store.PrepareDemotion(0);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_TRUE(old_store.Drop().ok());
  // An Offload that found the session before the drop is refused, and stores nothing.
  EXPECT_EQ(OffloadRows(old_store, geometry_, {3}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(old_store.segments(), 0);

  StoreClient& new_client = Adopt(RowStore::Create(geometry_, Context("s1", "t", 2)));
  ASSERT_TRUE(OffloadRows(new_client.store(), geometry_, Range(0, kRows), 0, kLayers, 9).ok());
  const uint64_t disk_before = tiers_->disk().used_bytes();
  ASSERT_TRUE(plan->Write().ok());
  EXPECT_EQ(old_store.FinishDemotion(*plan, absl::OkStatus()), 0u);
  EXPECT_EQ(tiers_->disk().used_bytes(), disk_before - plan->base_bytes);
  ExpectRows(new_client.store(), geometry_, Range(0, kRows), 9);

  // After a crash the new session's acknowledged rows are all there; the old one's are gone.
  int64_t data_loss = 0;
  StoreClient* recovered = CrashAndRecover(o, &data_loss, "s1", "t", 2);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(data_loss, 0);
  RowStore& store = recovered->store();
  EXPECT_EQ(store.counts().stored, kRows);
  ExpectRows(store, geometry_, Range(0, kRows), 9);
  EXPECT_EQ(CountKeys(SessionPrefix("t", SessionStorageName("s1", 1))), 0);
}

// Layers of a row that never arrived are zero after recovery, so the base a later demotion
// writes holds no heap garbage (which could also skew a quantization group's scale).
TEST_F(TieredStoreTest, RecoveredMissingLayersAreZeroOnDisk) {
  TierManagerOptions o;
  OpenTiers(o);
  {
    StoreClient& c = NewStore();
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, {0}, 0, 1).ok());  // slot 0, layer 0 only
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, {1}).ok());
  }
  int64_t data_loss = 0;
  StoreClient* recovered = CrashAndRecover(o, &data_loss);
  ASSERT_NE(recovered, nullptr);
  StoreClient& c = *recovered;
  ASSERT_EQ(c.DemoteSegment(0), PayloadBytes());
  std::string base;
  ASSERT_TRUE(tiers_->db()->Get(SegmentBaseKey("t", SessionStorageName("s1", 0), 0), &base).ok());
  std::unique_ptr<Segment> decoded = Segment::Allocate(SegmentLayout::For(geometry_, kRows));
  ASSERT_NE(decoded, nullptr);
  ASSERT_TRUE(DecodeSegmentBase(base, "base", true, decoded.get()).ok());
  ASSERT_EQ(decoded->positions()[0], 0);
  for (int32_t layer = 1; layer < kLayers; ++layer) {
    for (const std::byte* p : {decoded->keys(0, layer), decoded->values(0, layer)}) {
      EXPECT_TRUE(std::all_of(p, p + geometry_.LayerRowBytes(),
                              [](std::byte b) { return b == std::byte{0}; }))
          << "layer " << layer;
    }
  }
  ExpectRows(c.store(), geometry_, {1});
}

// A release (or promotion) record for a slot whose offload never reached the disk (its
// client got the error) is a no-op on recovery, not a reason to drop the whole segment.
TEST_F(TieredStoreTest, RecoveryIgnoresReleaseOfARowThatNeverReachedDisk) {
  TierManagerOptions o;
  OpenTiers(o);
  {
    StoreClient& c = NewStore();
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, {0}).ok());
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, {1}).ok());
    ASSERT_TRUE(c.store().MarkPromoted(std::vector<int64_t>{0}).ok());
    ASSERT_TRUE(c.store().Release(std::vector<int64_t>{0}).persisted.ok());
  }
  // Remove the offload record of position 0 (the first patch), as if its write had failed.
  std::string first_patch;
  ASSERT_TRUE(tiers_->db()
                  ->Scan(SegmentPrefix("t", SessionStorageName("s1", 0), 0),
                         [&](absl::string_view k, absl::string_view) {
                           first_patch = std::string(k);
                           return false;
                         })
                  .ok());
  ASSERT_FALSE(first_patch.empty());
  KvBatch batch;
  batch.Delete(first_patch);
  ASSERT_TRUE(tiers_->db()->Write(batch).ok());

  int64_t data_loss = 0;
  StoreClient* recovered = CrashAndRecover(o, &data_loss);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(data_loss, 0);
  RowStore& store = recovered->store();
  EXPECT_EQ(store.counts().stored, 1);
  ExpectRows(store, geometry_, {1});
}

// Keys are not covered by the CRC: a damaged segment id is counted and skipped.
TEST_F(TieredStoreTest, RecoverySkipsSegmentIdsOutOfRange) {
  TierManagerOptions o;
  OpenTiers(o);
  {
    StoreClient& c = NewStore();
    ASSERT_TRUE(OffloadRows(c.store(), geometry_, Range(0, kRows)).ok());
  }
  // A valid record (segment 0's first patch) under a damaged segment id.
  std::string patch;
  ASSERT_TRUE(tiers_->db()
                  ->Scan(SegmentPrefix("t", SessionStorageName("s1", 0), 0),
                         [&](absl::string_view, absl::string_view v) {
                           patch = std::string(v);
                           return false;
                         })
                  .ok());
  ASSERT_FALSE(patch.empty());
  const std::string bad_key = SegmentPatchKey("t", SessionStorageName("s1", 0), 0xffffffffu, 1);
  KvBatch batch;
  batch.Put(bad_key, patch);
  ASSERT_TRUE(tiers_->db()->Write(batch).ok());
  int64_t data_loss = 0;
  StoreClient* recovered = CrashAndRecover(o, &data_loss);
  ASSERT_NE(recovered, nullptr);
  EXPECT_EQ(data_loss, 1);
  RowStore& store = recovered->store();
  EXPECT_EQ(store.segments(), 1);
  ExpectRows(store, geometry_, Range(0, kRows));
  std::string gone;
  EXPECT_TRUE(absl::IsNotFound(tiers_->db()->Get(bad_key, &gone)));  // deleted, not recounted
}

}  // namespace
}  // namespace kvtier::storage
