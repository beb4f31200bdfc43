// Daemon limits: a chunk larger than host RAM even after demotion (RESOURCE_EXHAUSTED,
// nothing of the chunk stored) and session TTL expiry.
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"
#include "tests/shared_daemon_test.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kCapacity = 2 << 20;

class LimitsTest : public SharedDaemonTest<LimitsTest> {
 public:
  static std::vector<std::string> DaemonFlags() {
    return {absl::StrCat("--host_capacity_bytes=", kCapacity), "--segment_rows=64"};
  }

 protected:
  void SetUp() override {
    SharedDaemonTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = MakeClient(daemon().unix_target());
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<Client> client_;
};

v1::OffloadChunk Chunk(const TestSession& session, int64_t first_position, int rows) {
  v1::OffloadChunk chunk;
  chunk.set_session_id(session.id);
  for (int i = 0; i < rows; ++i) chunk.add_positions(first_position + i);
  chunk.set_layer_begin(0);
  chunk.set_layer_end(session.geometry.num_layers);
  const size_t bytes = static_cast<size_t>(session.geometry.num_layers) *
                       static_cast<size_t>(rows) * session.geometry.LayerRowBytes();
  chunk.set_keys(std::string(bytes, '\x11'));
  chunk.set_values(std::string(bytes, '\x22'));
  return chunk;
}

TEST_F(LimitsTest, OffloadPastHostCapacityIsResourceExhausted) {
  const synthetic::SyntheticKv kv(SmallOptions(16, 1));  // geometry only
  absl::StatusOr<TestSession> session = OpenSession(*client_, kv);
  ASSERT_TRUE(session.ok()) << session.status();

  // 128 rows of 2 KiB K+V fit in 2 MiB.
  ASSERT_TRUE(client_->OffloadChunks({Chunk(*session, 0, 128)}).ok());
  absl::StatusOr<v1::SessionInfo> before = client_->GetSession(session->id);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->rows_stored(), 128);

  // 2048 rows (4 MiB of K+V) in one chunk do not, even with every other payload demoted:
  // a chunk's new segments must fit in host RAM at once.
  absl::Status status = client_->OffloadChunks({Chunk(*session, 1000, 2048)}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  absl::StatusOr<v1::SessionInfo> after = client_->GetSession(session->id);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->rows_stored(), before->rows_stored());
  EXPECT_EQ(after->rows_complete(), before->rows_complete());
  // Host bytes may only have gone down (payloads demoted while making room).
  EXPECT_LE(after->bytes(), before->bytes());

  absl::StatusOr<v1::StatsResponse> stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  for (const v1::TierStats& tier : stats->tiers()) {
    if (tier.name() != "host") continue;
    EXPECT_EQ(tier.capacity_bytes(), kCapacity);
    EXPECT_LE(tier.bytes(), kCapacity);
  }

  // Still serving, and a chunk that fits is still taken.
  EXPECT_TRUE(client_->Health().ok());
  EXPECT_TRUE(client_->OffloadChunks({Chunk(*session, 5000, 16)}).ok());
  // Releasing frees room for what did not fit before... at least partly.
  absl::StatusOr<v1::ReleaseResponse> released = client_->ReleaseSession(session->id);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_GT(released->bytes_freed(), 0u);
}

TEST_F(LimitsTest, SessionExpiresAfterItsTtl) {
  const synthetic::SyntheticKv kv(SmallOptions(64, 2));
  absl::StatusOr<TestSession> session = OpenSession(*client_, kv, /*ttl_seconds=*/1);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->info.ttl_seconds(), 1u);
  ASSERT_TRUE(OffloadAll(*client_, *session, kv, 4).ok());

  // ListSessions does not touch a session (GetSession might count as use): poll it, bounded.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  bool gone = false;
  while (!gone && absl::Now() < deadline) {
    absl::StatusOr<std::vector<v1::SessionInfo>> sessions = client_->ListSessions();
    ASSERT_TRUE(sessions.ok()) << sessions.status();
    gone = std::none_of(sessions->begin(), sessions->end(),
                        [&](const v1::SessionInfo& s) { return s.session_id() == session->id; });
    if (!gone) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(gone) << "session still listed 20 s after a 1 s TTL";
  EXPECT_EQ(client_->GetSession(session->id).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvtier::testing
