// Crash recovery with a real process: kvtierd is killed with SIGKILL while a client is
// offloading, restarted on the same data directory, and every row whose Offload was
// acknowledged must be back, bit-exact, with its session listed, its releases and
// promotions kept, and Repair choosing exactly what it chooses on a fresh copy of the same
// rows (the score index is rebuilt from the stored keys). Run in durability wal and sync.
#include <atomic>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "storage/kv_db.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"
#include "tools/synthetic/synthetic_client.h"

namespace kvtier::testing {
namespace {

constexpr int64_t kRowsPerCall = 64;
constexpr int64_t kTotalRows = 6144;
constexpr int kCallsBeforeKill = 24;  // then the kill lands while calls are still in flight

std::vector<size_t> RowRange(size_t begin, size_t end) {
  std::vector<size_t> rows;
  for (size_t r = begin; r < end; ++r) rows.push_back(r);
  return rows;
}

std::vector<int64_t> PositionsOf(const synthetic::SyntheticKv& kv,
                                 const std::vector<size_t>& rows) {
  std::vector<int64_t> positions;
  for (const size_t r : rows) positions.push_back(kv.positions()[r]);
  return positions;
}

absl::StatusOr<TestSession> OpenNamed(Client& client, const synthetic::SyntheticKv& kv,
                                      const std::string& id) {
  return OpenSession(client, kv, SessionOptions{id, "crash-test", {}});
}

// Offloads `rows` of kv in one Offload call, layers in two halves (as engines save layer by
// layer) so that rows exist half-written between the calls' chunks.
absl::Status OffloadRowsCall(Client& client, const TestSession& session,
                             const synthetic::SyntheticKv& kv, const std::vector<size_t>& rows) {
  std::vector<uint16_t> keys, values;
  const int32_t layers = kv.options().num_layers;
  for (const auto& [lb, le] : {std::pair{0, layers / 2}, std::pair{layers / 2, layers}}) {
    absl::StatusOr<synthetic::OffloadedRange> r = synthetic::OffloadRows(
        client, session.id, session.geometry, kv, lb, le, rows, &keys, &values);
    if (!r.ok()) return r.status();
  }
  return absl::OkStatus();
}

class RecoveryTest : public ::testing::TestWithParam<const char*> {};

TEST_P(RecoveryTest, KillNineWhileOffloadingLosesNoAcknowledgedRow) {
  absl::StatusOr<std::unique_ptr<Daemon>> started = Daemon::Start(
      {absl::StrCat("--durability=", GetParam()), "--segment_rows=64",
       // Small host RAM: part of the rows are demoted when the kill lands.
       "--host_capacity_bytes=3000000", "--high_watermark=0.7", "--low_watermark=0.5"});
  ASSERT_TRUE(started.ok()) << started.status();
  Daemon& daemon = **started;
  std::unique_ptr<Client> client = MakeClient(daemon.unix_target());
  const synthetic::SyntheticKv kv(SmallOptions(kTotalRows, 21));
  absl::StatusOr<TestSession> session = OpenNamed(*client, kv, "crash");
  ASSERT_TRUE(session.ok()) << session.status();

  // Before the crash: some rows, a release and a promotion, all acknowledged.
  for (int c = 0; c < 8; ++c) {
    ASSERT_TRUE(
        OffloadRowsCall(*client, *session, kv, RowRange(c * kRowsPerCall, (c + 1) * kRowsPerCall))
            .ok());
  }
  const std::vector<int64_t> released = PositionsOf(kv, RowRange(0, 16));
  const std::vector<int64_t> promoted = PositionsOf(kv, RowRange(16, 32));
  ASSERT_TRUE(client->ReleaseRows(session->id, released).ok());
  v1::PromoteRequest promote;
  promote.set_session_id(session->id);
  promote.mutable_positions()->Assign(promoted.begin(), promoted.end());
  promote.set_return_mode(v1::RETURN_MODE_POSITIONS);
  ASSERT_TRUE(client->Promote(promote, session->geometry).ok());

  // A writer offloads call after call; the daemon is killed once enough are acknowledged.
  std::atomic<int> acked{8};
  std::thread writer([&] {
    std::unique_ptr<Client> own = MakeClient(daemon.unix_target());
    for (int c = 8; c * kRowsPerCall < kTotalRows; ++c) {
      if (!OffloadRowsCall(*own, *session, kv, RowRange(c * kRowsPerCall, (c + 1) * kRowsPerCall))
               .ok()) {
        return;  // the daemon died under this call: it was not acknowledged
      }
      acked = c + 1;
    }
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (acked < kCallsBeforeKill && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  absl::StatusOr<int> killed = daemon.Kill();
  writer.join();
  ASSERT_TRUE(killed.ok());
  EXPECT_EQ(*killed, 128 + 9);
  const int acknowledged = acked;
  ASSERT_GE(acknowledged, kCallsBeforeKill);

  ASSERT_TRUE(daemon.Restart().ok()) << daemon.LogTail();
  client = MakeClient(daemon.unix_target());
  absl::StatusOr<std::vector<v1::SessionInfo>> sessions = client->ListSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  ASSERT_EQ(sessions->size(), 1u);
  const v1::SessionInfo& info = (*sessions)[0];
  EXPECT_EQ(info.session_id(), "crash");
  EXPECT_EQ(info.tenant(), "crash-test");
  // The call in flight at the kill may have landed in part (its first half of layers):
  // acknowledged rows are complete, rows of unacknowledged calls are at most stored.
  const int64_t acked_rows = acknowledged * kRowsPerCall - 16;
  EXPECT_GE(info.rows_complete(), acked_rows);
  EXPECT_LE(info.rows_complete(), acked_rows + kRowsPerCall);
  EXPECT_EQ(info.rows_promoted(), 16);

  // Repair on the recovered session chooses exactly what it chooses on a fresh session
  // holding the same complete rows with the same promotions.
  const int64_t complete_calls = (info.rows_complete() + 16) / kRowsPerCall;
  absl::StatusOr<TestSession> fresh = OpenNamed(*client, kv, "fresh");
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  for (int64_t c = 0; c < complete_calls; ++c) {
    ASSERT_TRUE(
        OffloadRowsCall(*client, *fresh, kv, RowRange(c * kRowsPerCall, (c + 1) * kRowsPerCall))
            .ok());
  }
  ASSERT_TRUE(client->ReleaseRows(fresh->id, released).ok());
  promote.set_session_id(fresh->id);
  ASSERT_TRUE(client->Promote(promote, fresh->geometry).ok());
  for (const int32_t needle : {0, 1}) {
    if (kv.needles()[needle].first_row >= static_cast<size_t>(complete_calls * kRowsPerCall)) {
      continue;
    }
    v1::RepairRequest repair =
        NeedleRepair(kv, session->id, needle, 48, 8, v1::RETURN_MODE_POSITIONS);
    absl::StatusOr<RepairResult> recovered = client->Repair(repair, session->geometry);
    repair.set_session_id(fresh->id);
    absl::StatusOr<RepairResult> reference = client->Repair(repair, fresh->geometry);
    ASSERT_TRUE(recovered.ok() && reference.ok()) << recovered.status() << reference.status();
    EXPECT_EQ(std::vector<int64_t>(recovered->summary.chosen().begin(),
                                   recovered->summary.chosen().end()),
              std::vector<int64_t>(reference->summary.chosen().begin(),
                                   reference->summary.chosen().end()))
        << "needle " << needle;
    // Same rows, possibly in other slots (demotions and recovery reorder segments), so the
    // normalizer sums in another order: scores agree to rounding.
    ASSERT_EQ(recovered->summary.scores_size(), reference->summary.scores_size());
    for (int i = 0; i < recovered->summary.scores_size(); ++i) {
      EXPECT_NEAR(recovered->summary.scores(i), reference->summary.scores(i),
                  1e-6 * std::abs(reference->summary.scores(i)));
    }
    EXPECT_TRUE(Contains(recovered->summary.chosen(), kv.needles()[needle].positions));
  }

  // Every acknowledged row is present and bit-exact.
  for (int c = 0; c < acknowledged; ++c) {
    std::vector<size_t> rows = RowRange(c == 0 ? 16 : c * kRowsPerCall, (c + 1) * kRowsPerCall);
    const std::vector<int64_t> positions = PositionsOf(kv, rows);
    v1::PromoteRequest read;
    read.set_session_id(session->id);
    read.mutable_positions()->Assign(positions.begin(), positions.end());
    read.set_return_mode(v1::RETURN_MODE_PAYLOAD);
    absl::StatusOr<PromoteResult> got = client->Promote(read, session->geometry);
    ASSERT_TRUE(got.ok()) << "call " << c << ": " << got.status();
    const ExpectedRows expected = ExpectedPayload(kv, positions);
    ASSERT_TRUE(got->payload.keys == expected.keys) << "keys of call " << c;
    ASSERT_TRUE(got->payload.values == expected.values) << "values of call " << c;
  }
  // Released rows stay released.
  v1::PromoteRequest gone;
  gone.set_session_id(session->id);
  gone.add_positions(released[0]);
  EXPECT_EQ(client->Promote(gone, session->geometry).status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<int> code = daemon.Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << daemon.LogTail();
}

INSTANTIATE_TEST_SUITE_P(Durability, RecoveryTest, ::testing::Values("wal", "sync"));

// Keys on disk under `prefix` (the daemon must be stopped: RocksDB allows one process).
int CountKeys(const std::string& db_path, const std::string& prefix) {
  storage::KvDbOptions options;
  options.path = db_path;
  absl::StatusOr<std::unique_ptr<storage::KvDb>> db = storage::KvDb::Open(options);
  if (!db.ok()) return -1;
  int keys = 0;
  if (!(*db)->Scan(prefix, [&](absl::string_view, absl::string_view) { return ++keys > 0; }).ok()) {
    return -1;
  }
  return keys;
}

// At start, segment keys that no session record names are deleted, but those of a session
// whose record exists and cannot be read are kept (damage, or a newer format: never a
// reason to throw rows away).
TEST(RecoveryOrphans, StartDeletesOrphanedKeysAndKeepsUnreadableSessions) {
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start({"--segment_rows=64"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::unique_ptr<Client> client = MakeClient((*daemon)->unix_target());
  const synthetic::SyntheticKv kv(SmallOptions(256, 21));
  absl::StatusOr<TestSession> session = OpenNamed(*client, kv, "damaged");
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(OffloadRowsCall(*client, *session, kv, RowRange(0, 256)).ok());
  client.reset();
  absl::StatusOr<int> code = (*daemon)->Stop();
  ASSERT_TRUE(code.ok() && *code == 0) << (*daemon)->LogTail();

  const std::string db_path = (*daemon)->dir() + "/data/db";
  const int damaged_keys = CountKeys(db_path, "s/crash-test/damaged~");
  ASSERT_GT(damaged_keys, 0);
  {
    storage::KvDbOptions options;
    options.path = db_path;
    absl::StatusOr<std::unique_ptr<storage::KvDb>> db = storage::KvDb::Open(options);
    ASSERT_TRUE(db.ok()) << db.status();
    storage::KvBatch batch;
    batch.Put(storage::SessionRecordKey("crash-test", "damaged"), "not a record");
    batch.Put("s/crash-test/ghost~0000000000000001/g/00000000/b", "left by a crash");
    ASSERT_TRUE((*db)->Write(batch).ok());
  }

  ASSERT_TRUE((*daemon)->Restart().ok()) << (*daemon)->LogTail();
  client = MakeClient((*daemon)->unix_target());
  absl::StatusOr<std::vector<v1::SessionInfo>> sessions = client->ListSessions("");
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  EXPECT_TRUE(sessions->empty());
  client.reset();
  code = (*daemon)->Stop();
  ASSERT_TRUE(code.ok() && *code == 0) << (*daemon)->LogTail();
  EXPECT_EQ(CountKeys(db_path, "s/crash-test/ghost"), 0);
  EXPECT_EQ(CountKeys(db_path, "s/crash-test/damaged~"), damaged_keys);
}

}  // namespace
}  // namespace kvtier::testing
