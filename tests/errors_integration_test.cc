// Every bad input gets its status code and a message naming the field, nothing is stored or
// promoted by a failed call, and the daemon keeps answering afterwards.
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"
#include "tests/shared_daemon_test.h"

namespace kvtier::testing {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kRows = 600;

class ErrorsTest : public SharedDaemonTest<ErrorsTest> {
 protected:
  void SetUp() override {
    SharedDaemonTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = MakeClient(daemon().unix_target());
    ASSERT_NE(client_, nullptr);
    absl::StatusOr<TestSession> session = OpenSession(*client_, kv_);
    ASSERT_TRUE(session.ok()) << session.status();
    session_ = *session;
    ASSERT_TRUE(OffloadAll(*client_, session_, kv_, 4).ok());
    absl::StatusOr<v1::SessionInfo> info = client_->GetSession(session_.id);
    ASSERT_TRUE(info.ok()) << info.status();
    before_ = *info;
  }

  void TearDown() override {
    if (client_ != nullptr && !session_.id.empty()) {
      EXPECT_TRUE(client_->ReleaseSession(session_.id).ok());
    }
  }

  // After a failed call: the session's counts did not move and the daemon still serves.
  void ExpectNothingChangedAndAlive() {
    EXPECT_TRUE(client_->Health().ok());
    absl::StatusOr<v1::SessionInfo> info = client_->GetSession(session_.id);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->rows_stored(), before_.rows_stored());
    EXPECT_EQ(info->rows_complete(), before_.rows_complete());
    EXPECT_EQ(info->rows_candidate(), before_.rows_candidate());
    EXPECT_EQ(info->rows_promoted(), before_.rows_promoted());
    EXPECT_EQ(info->bytes(), before_.bytes());
    // A good call still works (on a separate session, so that it moves no count above).
    const synthetic::SyntheticKv probe_kv(SmallOptions(80, 99));
    absl::StatusOr<TestSession> probe = OpenSession(*client_, probe_kv);
    ASSERT_TRUE(probe.ok()) << probe.status();
    EXPECT_TRUE(OffloadAll(*client_, *probe, probe_kv, 4).ok());
    absl::StatusOr<RepairResult> r = client_->Repair(
        NeedleRepair(probe_kv, probe->id, 0, 8, 2, v1::RETURN_MODE_PAYLOAD), probe->geometry);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(client_->ReleaseSession(probe->id).ok());
  }

  // A well-formed chunk of `rows` rows (positions after the stored ones) for layers [lb, le).
  v1::OffloadChunk GoodChunk(int rows, int32_t lb = 0, int32_t le = 4) const {
    v1::OffloadChunk chunk;
    chunk.set_session_id(session_.id);
    const int64_t base = kv_.positions().back() + 1000;
    for (int i = 0; i < rows; ++i) chunk.add_positions(base + i);
    chunk.set_layer_begin(lb);
    chunk.set_layer_end(le);
    const size_t bytes = static_cast<size_t>(le - lb) * static_cast<size_t>(rows) *
                         session_.geometry.LayerRowBytes();
    chunk.set_keys(std::string(bytes, '\x01'));
    chunk.set_values(std::string(bytes, '\x02'));
    return chunk;
  }

  absl::Status OffloadOne(const v1::OffloadChunk& chunk) {
    return client_->OffloadChunks({chunk}).status();
  }

  static v1::OpenSessionRequest GoodOpen() {
    v1::OpenSessionRequest request;
    v1::Geometry* g = request.mutable_geometry();
    g->set_num_layers(4);
    g->set_num_q_heads(8);
    g->set_num_kv_heads(2);
    g->set_head_dim(32);
    g->set_dtype(v1::DTYPE_FLOAT16);
    return request;
  }

  const synthetic::SyntheticKv kv_{SmallOptions(kRows, 7)};
  std::unique_ptr<Client> client_;
  TestSession session_;
  v1::SessionInfo before_;
};

void ExpectStatus(const absl::Status& status, absl::StatusCode code, const std::string& text) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(text)) << status;
}

TEST_F(ErrorsTest, UnknownSessionIsNotFound) {
  EXPECT_EQ(client_->GetSession("no-such-session").status().code(), absl::StatusCode::kNotFound);
  v1::OffloadChunk chunk = GoodChunk(2);
  chunk.set_session_id("no-such-session");
  EXPECT_EQ(OffloadOne(chunk).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_
                ->Repair(NeedleRepair(kv_, "no-such-session", 0, 8, 2, v1::RETURN_MODE_POSITIONS),
                         session_.geometry)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  v1::PromoteRequest promote;
  promote.set_session_id("no-such-session");
  promote.add_positions(kv_.positions()[0]);
  EXPECT_EQ(client_->Promote(promote, session_.geometry).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->ReleaseSession("no-such-session").status().code(),
            absl::StatusCode::kNotFound);
  ExpectNothingChangedAndAlive();
}

TEST_F(ErrorsTest, GeometryErrorsNameTheField) {
  struct Case {
    const char* field;
    std::function<void(v1::Geometry*)> mutate;
  };
  const std::vector<Case> cases = {
      {"num_q_heads", [](v1::Geometry* g) { g->set_num_q_heads(7); }},  // not a multiple of 2
      {"num_layers", [](v1::Geometry* g) { g->set_num_layers(0); }},
      {"num_q_heads", [](v1::Geometry* g) { g->set_num_q_heads(0); }},
      {"num_kv_heads", [](v1::Geometry* g) { g->set_num_kv_heads(0); }},
      {"head_dim", [](v1::Geometry* g) { g->set_head_dim(0); }},
      {"dtype", [](v1::Geometry* g) { g->set_dtype(v1::DTYPE_UNSPECIFIED); }},
      {"scoring_layers", [](v1::Geometry* g) { g->add_scoring_layers(4); }},
      {"scoring_layers", [](v1::Geometry* g) { g->add_scoring_layers(-1); }},
  };
  absl::StatusOr<std::vector<v1::SessionInfo>> sessions_before = client_->ListSessions();
  ASSERT_TRUE(sessions_before.ok());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    v1::OpenSessionRequest request = GoodOpen();
    c.mutate(request.mutable_geometry());
    ExpectStatus(client_->OpenSession(request).status(), absl::StatusCode::kInvalidArgument,
                 c.field);
  }
  absl::StatusOr<std::vector<v1::SessionInfo>> sessions_after = client_->ListSessions();
  ASSERT_TRUE(sessions_after.ok());
  EXPECT_EQ(sessions_after->size(), sessions_before->size());
  ExpectNothingChangedAndAlive();
}

TEST_F(ErrorsTest, OffloadByteLengthsMustMatch) {
  v1::OffloadChunk chunk = GoodChunk(3);
  chunk.mutable_keys()->pop_back();
  ExpectStatus(OffloadOne(chunk), absl::StatusCode::kInvalidArgument, "keys");
  ExpectNothingChangedAndAlive();

  chunk = GoodChunk(3);
  chunk.mutable_values()->append("xx");
  ExpectStatus(OffloadOne(chunk), absl::StatusCode::kInvalidArgument, "values");
  ExpectNothingChangedAndAlive();

  chunk = GoodChunk(3);
  chunk.add_importance(1.0f);  // one entry for three rows
  ExpectStatus(OffloadOne(chunk), absl::StatusCode::kInvalidArgument, "importance");
  ExpectNothingChangedAndAlive();
}

TEST_F(ErrorsTest, DuplicatePositionsInAChunk) {
  v1::OffloadChunk chunk = GoodChunk(4);
  chunk.set_positions(2, chunk.positions(1));
  ExpectStatus(OffloadOne(chunk), absl::StatusCode::kInvalidArgument, "positions");
  ExpectNothingChangedAndAlive();

  chunk = GoodChunk(2);
  chunk.set_positions(0, -5);
  ExpectStatus(OffloadOne(chunk), absl::StatusCode::kInvalidArgument, "positions");
  ExpectNothingChangedAndAlive();
}

TEST_F(ErrorsTest, LayerRangeOutOfBounds) {
  // A chunk whose bytes match its (bad) layer range.
  EXPECT_EQ(OffloadOne(GoodChunk(2, 2, 5)).code(), absl::StatusCode::kOutOfRange);
  ExpectNothingChangedAndAlive();
  EXPECT_EQ(OffloadOne(GoodChunk(2, -1, 1)).code(), absl::StatusCode::kOutOfRange);
  ExpectNothingChangedAndAlive();
}

TEST_F(ErrorsTest, FailedChunkKeepsTheChunksBeforeIt) {
  std::vector<v1::OffloadChunk> chunks = {GoodChunk(2), GoodChunk(3)};
  for (int i = 0; i < 3; ++i) chunks[1].set_positions(i, chunks[0].positions(0) + 10 + i);
  chunks[1].mutable_keys()->pop_back();
  const absl::Status status = client_->OffloadChunks(chunks).status();
  ExpectStatus(status, absl::StatusCode::kInvalidArgument, "keys");
  EXPECT_THAT(std::string(status.message()), HasSubstr("chunk 1:")) << "the failing chunk's index";
  absl::StatusOr<v1::SessionInfo> info = client_->GetSession(session_.id);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->rows_stored(), before_.rows_stored() + 2);
  EXPECT_EQ(info->rows_complete(), before_.rows_complete() + 2);
}

TEST_F(ErrorsTest, RepairArgumentErrors) {
  v1::RepairRequest request = NeedleRepair(kv_, session_.id, 0, 0, 2, v1::RETURN_MODE_PAYLOAD);
  ExpectStatus(client_->Repair(request, session_.geometry).status(),
               absl::StatusCode::kInvalidArgument, "budget");
  ExpectNothingChangedAndAlive();

  request = NeedleRepair(kv_, session_.id, 0, 1048577, 2, v1::RETURN_MODE_PAYLOAD);
  ExpectStatus(client_->Repair(request, session_.geometry).status(), absl::StatusCode::kOutOfRange,
               "budget");
  ExpectNothingChangedAndAlive();

  request = NeedleRepair(kv_, session_.id, 0, 8, 2, v1::RETURN_MODE_PAYLOAD);
  request.mutable_signal()->set_num_tokens(0);
  ExpectStatus(client_->Repair(request, session_.geometry).status(),
               absl::StatusCode::kInvalidArgument, "num_tokens");
  ExpectNothingChangedAndAlive();

  request = NeedleRepair(kv_, session_.id, 0, 8, 2, v1::RETURN_MODE_PAYLOAD);
  request.mutable_signal()->mutable_queries()->resize(request.signal().queries().size() - 4);
  ExpectStatus(client_->Repair(request, session_.geometry).status(),
               absl::StatusCode::kInvalidArgument, "queries");
  ExpectNothingChangedAndAlive();

  request = NeedleRepair(kv_, session_.id, 0, 8, 2, v1::RETURN_MODE_PAYLOAD);
  request.mutable_signal()->set_lse_active("abc");
  ExpectStatus(client_->Repair(request, session_.geometry).status(),
               absl::StatusCode::kInvalidArgument, "lse_active");
  ExpectNothingChangedAndAlive();
}

TEST_F(ErrorsTest, PromoteOfARowNotStored) {
  v1::PromoteRequest promote;
  promote.set_session_id(session_.id);
  promote.add_positions(kv_.positions()[0]);
  promote.add_positions(kv_.positions().back() + 12345);
  EXPECT_EQ(client_->Promote(promote, session_.geometry).status().code(),
            absl::StatusCode::kNotFound);
  ExpectNothingChangedAndAlive();

  promote.clear_positions();
  promote.add_positions(kv_.positions()[0]);
  promote.add_positions(kv_.positions()[0]);
  ExpectStatus(client_->Promote(promote, session_.geometry).status(),
               absl::StatusCode::kInvalidArgument, "positions");
  ExpectNothingChangedAndAlive();
}

// A fast-mode flag out of range stops kvtierd at startup with exit code 2 and a log line
// naming the flag; it never serves with a setting it cannot honour.
TEST(KvtierdFlags, FastModeFlagsOutOfRangeStopTheDaemon) {
  for (const std::string flag : {"--fast_oversample=0", "--fast_first_round=-1",
                                 "--fast_sample_rows=0", "--fast_oversample=1000000"}) {
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start({flag});
    ASSERT_FALSE(daemon.ok()) << flag;
    const std::string name = flag.substr(0, flag.find('='));
    EXPECT_THAT(std::string(daemon.status().message()), HasSubstr(name + " must be in"))
        << daemon.status();
    EXPECT_THAT(std::string(daemon.status().message()), HasSubstr("exited with 2"))
        << daemon.status();
  }
}

}  // namespace
}  // namespace kvtier::testing
