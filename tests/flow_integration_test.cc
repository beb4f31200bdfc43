// End-to-end flows through the real daemon and the real SDK: offload, repair in both return
// modes, promote, release, request_id replay, concurrent clients, and the metrics endpoint.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reflection/reflection_subset.grpc.pb.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"
#include "tests/shared_daemon_test.h"

namespace kvtier::testing {
namespace {

using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

constexpr int64_t kRows = 10240;

class FlowTest : public SharedDaemonTest<FlowTest, ::testing::TestWithParam<bool /*tcp*/>> {
 protected:
  void SetUp() override {
    SharedDaemonTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = MakeClient(GetParam() ? daemon().tcp_target() : daemon().unix_target(),
                         /*offload_chunk_bytes=*/256 << 10);
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<Client> client_;
};

TEST_P(FlowTest, OffloadRepairPromoteRelease) {
  const synthetic::SyntheticKv kv(SmallOptions(kRows, GetParam() ? 11 : 12));
  ASSERT_GE(kv.needles().size(), 2u);
  absl::StatusOr<TestSession> session = OpenSession(*client_, kv);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(OffloadAll(*client_, *session, kv, /*layers_per_call=*/2).ok());

  absl::StatusOr<v1::SessionInfo> info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_stored(), kRows);
  EXPECT_EQ(info->rows_complete(), kRows);
  EXPECT_EQ(info->rows_candidate(), kRows);
  EXPECT_EQ(info->rows_promoted(), 0);
  EXPECT_EQ(info->row_bytes(), 2 * 4 * session->geometry.LayerRowBytes());

  // Payload mode: the needle comes back, and every returned byte is what was offloaded.
  const synthetic::Needle& needle = kv.needles()[1];
  absl::StatusOr<RepairResult> payload = client_->Repair(
      NeedleRepair(kv, session->id, 1, /*budget=*/64, /*num_tokens=*/8, v1::RETURN_MODE_PAYLOAD),
      session->geometry);
  ASSERT_TRUE(payload.ok()) << payload.status();
  const std::vector<int64_t> first(payload->summary.chosen().begin(),
                                   payload->summary.chosen().end());
  EXPECT_EQ(first.size(), 64u);
  EXPECT_EQ(payload->summary.candidates(), kRows);
  EXPECT_TRUE(Contains(first, needle.positions));
  std::vector<int64_t> sorted = first;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_THAT(payload->summary.sorted(), ElementsAreArray(sorted));
  EXPECT_EQ(payload->summary.scores_size(), 64);
  EXPECT_FALSE(payload->summary.replayed());
  EXPECT_GT(payload->summary.payload_chunks(), 0);
  EXPECT_GT(payload->timings.total_seconds(), 0);
  EXPECT_GT(payload->summary.timings().score_seconds(), 0);
  EXPECT_GE(payload->bytes_received, payload->summary.payload_bytes());
  ExpectedRows expected = ExpectedPayload(kv, first);
  EXPECT_TRUE(payload->payload.keys == expected.keys) << "keys differ";
  EXPECT_TRUE(payload->payload.values == expected.values) << "values differ";

  // Positions mode: rows promoted by the first repair are no longer candidates.
  absl::StatusOr<RepairResult> positions = client_->Repair(
      NeedleRepair(kv, session->id, 1, 64, 8, v1::RETURN_MODE_POSITIONS), session->geometry);
  ASSERT_TRUE(positions.ok()) << positions.status();
  EXPECT_EQ(positions->summary.chosen_size(), 64);
  EXPECT_EQ(positions->summary.candidates(), kRows - 64);
  EXPECT_EQ(positions->summary.payload_chunks(), 0);
  EXPECT_THAT(positions->payload.keys, IsEmpty());
  const absl::flat_hash_set<int64_t> first_set(first.begin(), first.end());
  for (int64_t p : positions->summary.chosen()) EXPECT_FALSE(first_set.contains(p)) << p;

  info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_promoted(), 128);
  EXPECT_EQ(info->rows_candidate(), kRows - 128);

  // Promote explicit positions that neither repair took.
  absl::flat_hash_set<int64_t> taken = first_set;
  taken.insert(positions->summary.chosen().begin(), positions->summary.chosen().end());
  v1::PromoteRequest promote;
  promote.set_session_id(session->id);
  promote.set_return_mode(v1::RETURN_MODE_PAYLOAD);
  for (size_t r = kv.positions().size(); r-- > 0 && promote.positions_size() < 10;) {
    if (!taken.contains(kv.positions()[r])) promote.add_positions(kv.positions()[r]);
  }
  absl::StatusOr<PromoteResult> promoted = client_->Promote(promote, session->geometry);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_THAT(promoted->summary.positions(), ElementsAreArray(promote.positions()));
  const std::vector<int64_t> promote_positions(promote.positions().begin(),
                                               promote.positions().end());
  expected = ExpectedPayload(kv, promote_positions);
  EXPECT_TRUE(promoted->payload.keys == expected.keys) << "keys differ";
  EXPECT_TRUE(promoted->payload.values == expected.values) << "values differ";
  info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_promoted(), 138);

  // Release the first repair's rows, then the session.
  absl::StatusOr<v1::ReleaseResponse> released = client_->ReleaseRows(session->id, first);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(released->rows_released(), 64);
  // bytes_freed counts whole segments given back; 64 scattered rows may free none.
  info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_stored(), kRows - 64);
  EXPECT_EQ(info->rows_promoted(), 74);
  released = client_->ReleaseRows(session->id, first);  // idempotent
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_EQ(released->rows_released(), 0);

  released = client_->ReleaseSession(session->id);
  ASSERT_TRUE(released.ok()) << released.status();
  EXPECT_TRUE(released->session_released());
  EXPECT_GT(released->bytes_freed(), 0u);
  EXPECT_EQ(client_->GetSession(session->id).status().code(), absl::StatusCode::kNotFound);
}

// A chunk limit smaller than one row's layers makes the SDK split by layer ranges too.
TEST_P(FlowTest, OffloadSplitByLayersRoundTrips) {
  std::unique_ptr<Client> tiny =
      MakeClient(GetParam() ? daemon().tcp_target() : daemon().unix_target(),
                 /*offload_chunk_bytes=*/1000);  // a row's 4 layers of K+V take 2048 bytes
  ASSERT_NE(tiny, nullptr);
  const synthetic::SyntheticKv kv(SmallOptions(300, 5));
  absl::StatusOr<TestSession> session = OpenSession(*tiny, kv);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(OffloadAll(*tiny, *session, kv, /*layers_per_call=*/4).ok());
  absl::StatusOr<v1::SessionInfo> info = tiny->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_complete(), 300);

  v1::PromoteRequest promote;
  promote.set_session_id(session->id);
  for (int64_t p : kv.positions()) promote.add_positions(p);
  absl::StatusOr<PromoteResult> promoted = tiny->Promote(promote, session->geometry);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  const ExpectedRows expected = ExpectedPayload(kv, kv.positions());
  EXPECT_TRUE(promoted->payload.keys == expected.keys);
  EXPECT_TRUE(promoted->payload.values == expected.values);
  EXPECT_TRUE(tiny->ReleaseSession(session->id).ok());
}

// Index-only: the scoring layers' keys alone are sent and kept; Repair and Promote return
// positions; asking for a payload or sending other layers or values is refused.
TEST_P(FlowTest, IndexOnlySessionServesPositions) {
  const synthetic::SyntheticKv kv(SmallOptions(3000, 31));
  const std::vector<int32_t> scoring = {1, 3};
  absl::StatusOr<TestSession> session =
      OpenSession(*client_, kv, SessionOptions{"", "", scoring, /*index_only=*/true});
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_TRUE(session->info.geometry().index_only());
  EXPECT_EQ(session->info.row_bytes(), 0u);
  std::vector<size_t> rows(kv.positions().size());
  std::iota(rows.begin(), rows.end(), size_t{0});
  std::vector<uint16_t> keys(rows.size() * kv.LayerRowElements());
  for (const int32_t layer : scoring) {
    kv.FillKeys(layer, layer + 1, rows, absl::MakeSpan(keys));
    OffloadBatch batch;
    batch.positions = kv.positions();
    batch.layer_begin = layer;
    batch.layer_end = layer + 1;
    batch.keys = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(keys.data()),
                                     keys.size() * sizeof(uint16_t));
    absl::StatusOr<v1::OffloadResponse> r = client_->Offload(session->id, session->geometry, batch);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->bytes(), keys.size() * sizeof(uint16_t));
  }
  // A layer that does not score, and values, are refused by the server.
  v1::OffloadChunk bad;
  bad.set_session_id(session->id);
  bad.add_positions(kv.positions()[0]);
  bad.set_layer_begin(2);
  bad.set_layer_end(3);
  bad.set_keys(std::string(session->geometry.LayerRowBytes(), '\0'));
  absl::StatusOr<v1::OffloadResponse> refused = client_->OffloadChunks({bad});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("layer_begin"));
  bad.set_layer_begin(1);
  bad.set_layer_end(2);
  bad.set_values(bad.keys());
  refused = client_->OffloadChunks({bad});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("values"));
  absl::StatusOr<v1::SessionInfo> info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_candidate(), 3000);

  // The signal covers the two scoring layers: slice them out of the all-layer queries.
  const int32_t tokens = 8;
  const std::vector<float> all = kv.Queries(2, tokens, 2.0f, 1.0f, 102);
  const size_t per_layer = all.size() / 4;
  std::vector<float> queries;
  for (const int32_t layer : scoring) {
    queries.insert(queries.end(), all.begin() + layer * per_layer,
                   all.begin() + (layer + 1) * per_layer);
  }
  v1::RepairRequest repair;
  repair.set_session_id(session->id);
  repair.set_budget(32);
  repair.set_return_mode(v1::RETURN_MODE_PAYLOAD);
  repair.mutable_signal()->set_num_tokens(tokens);
  repair.mutable_signal()->set_queries(Float32Bytes(queries));
  absl::StatusOr<RepairResult> result = client_->Repair(repair, session->geometry);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(result.status().message()), ::testing::HasSubstr("return_mode"));
  info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_candidate(), 3000);  // the refused repair changed nothing

  repair.set_return_mode(v1::RETURN_MODE_UNSPECIFIED);  // positions, in an index-only session
  result = client_->Repair(repair, session->geometry);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->summary.chosen_size(), 32);
  EXPECT_EQ(result->summary.payload_chunks(), 0);
  EXPECT_THAT(result->payload.keys, IsEmpty());
  const std::vector<int64_t> chosen(result->summary.chosen().begin(),
                                    result->summary.chosen().end());
  EXPECT_TRUE(Contains(chosen, kv.needles()[2].positions));

  v1::PromoteRequest promote;
  promote.set_session_id(session->id);
  promote.add_positions(kv.positions()[0]);
  promote.set_return_mode(v1::RETURN_MODE_PAYLOAD);
  EXPECT_EQ(client_->Promote(promote, session->geometry).status().code(),
            absl::StatusCode::kFailedPrecondition);
  promote.set_return_mode(v1::RETURN_MODE_POSITIONS);
  absl::StatusOr<PromoteResult> promoted = client_->Promote(promote, session->geometry);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_promoted(), 33);
  EXPECT_TRUE(client_->ReleaseSession(session->id).ok());
}

TEST_P(FlowTest, RequestIdReplayReturnsTheSameSelection) {
  const synthetic::SyntheticKv kv(SmallOptions(2000, 21));
  absl::StatusOr<TestSession> session = OpenSession(*client_, kv);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(OffloadAll(*client_, *session, kv, 4).ok());

  for (v1::ReturnMode mode : {v1::RETURN_MODE_POSITIONS, v1::RETURN_MODE_PAYLOAD}) {
    v1::RepairRequest request = NeedleRepair(kv, session->id, 0, 48, 4, mode);
    request.set_request_id(absl::StrCat("replay-", static_cast<int>(mode), GetParam()));
    absl::StatusOr<RepairResult> a = client_->Repair(request, session->geometry);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_FALSE(a->summary.replayed());
    absl::StatusOr<RepairResult> b = client_->Repair(request, session->geometry);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_TRUE(b->summary.replayed());
    EXPECT_THAT(b->summary.chosen(), ElementsAreArray(a->summary.chosen()));
    EXPECT_THAT(b->summary.sorted(), ElementsAreArray(a->summary.sorted()));
    EXPECT_TRUE(b->payload.keys == a->payload.keys);
    EXPECT_TRUE(b->payload.values == a->payload.values);
  }
  absl::StatusOr<v1::SessionInfo> info = client_->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_promoted(), 96);  // two selections, replays promote nothing more
  EXPECT_TRUE(client_->ReleaseSession(session->id).ok());
}

// A payload replay whose rows were released since fails cleanly before streaming anything;
// the positions-only replay of the same selection still answers.
TEST_P(FlowTest, PayloadReplayAfterReleaseIsFailedPrecondition) {
  const synthetic::SyntheticKv kv(SmallOptions(1000, 23));
  absl::StatusOr<TestSession> session = OpenSession(*client_, kv);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(OffloadAll(*client_, *session, kv, 4).ok());
  v1::RepairRequest request = NeedleRepair(kv, session->id, 0, 16, 2, v1::RETURN_MODE_PAYLOAD);
  request.set_request_id(absl::StrCat("released-", GetParam()));
  absl::StatusOr<RepairResult> first = client_->Repair(request, session->geometry);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_FALSE(first->summary.chosen().empty());
  const int64_t gone = first->summary.chosen(0);
  ASSERT_TRUE(client_->ReleaseRows(session->id, {gone}).ok());

  absl::StatusOr<RepairResult> replay = client_->Repair(request, session->geometry);
  EXPECT_EQ(replay.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(replay.status().message()), ::testing::HasSubstr("request_id"));

  request.set_return_mode(v1::RETURN_MODE_POSITIONS);
  absl::StatusOr<RepairResult> positions = client_->Repair(request, session->geometry);
  ASSERT_TRUE(positions.ok()) << positions.status();
  EXPECT_TRUE(positions->summary.replayed());
  EXPECT_THAT(positions->summary.chosen(), ElementsAreArray(first->summary.chosen()));
  EXPECT_TRUE(client_->ReleaseSession(session->id).ok());
}

TEST_P(FlowTest, SeveralClientsAtOnce) {
  constexpr int kThreads = 4;
  std::vector<absl::Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      results[t] = [&]() -> absl::Status {
        const synthetic::SyntheticKv kv(SmallOptions(3000, 100 + t));
        absl::StatusOr<TestSession> session = OpenSession(*client_, kv);
        if (!session.ok()) return session.status();
        if (absl::Status s = OffloadAll(*client_, *session, kv, 1); !s.ok()) return s;
        const int32_t target = t % static_cast<int32_t>(kv.needles().size());
        absl::StatusOr<RepairResult> r =
            client_->Repair(NeedleRepair(kv, session->id, target, 40, 4, v1::RETURN_MODE_PAYLOAD),
                            session->geometry);
        if (!r.ok()) return r.status();
        const std::vector<int64_t> chosen(r->summary.chosen().begin(), r->summary.chosen().end());
        if (!Contains(chosen, kv.needles()[static_cast<size_t>(target)].positions)) {
          return absl::InternalError("needle not recovered");
        }
        const ExpectedRows expected = ExpectedPayload(kv, chosen);
        if (r->payload.keys != expected.keys || r->payload.values != expected.values) {
          return absl::InternalError("payload differs from what was offloaded");
        }
        return client_->ReleaseSession(session->id).status();
      }();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t)
    EXPECT_TRUE(results[t].ok()) << "thread " << t << ": " << results[t];
}

// Value of the first sample of `name` whose labels contain every one of `labels`, or -1.
double SampleValue(const std::string& text, const std::string& name,
                   const std::vector<std::string>& labels) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t name_end = line.find_first_of("{ ");
    if (name_end == absl::string_view::npos || line.substr(0, name_end) != name) continue;
    bool match = true;
    for (const std::string& label : labels) match = match && absl::StrContains(line, label);
    if (!match) continue;
    double value;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) return value;
  }
  return -1;
}

TEST_P(FlowTest, MetricsAfterTraffic) {
  const synthetic::SyntheticKv kv(SmallOptions(1000, 31));
  absl::StatusOr<TestSession> session = OpenSession(*client_, kv);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(OffloadAll(*client_, *session, kv, 4).ok());
  ASSERT_TRUE(client_
                  ->Repair(NeedleRepair(kv, session->id, 0, 16, 2, v1::RETURN_MODE_POSITIONS),
                           session->geometry)
                  .ok());

  // Gauges are refreshed by the daemon's once-a-second maintenance: poll, bounded.
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  std::string text;
  while (true) {
    absl::StatusOr<std::string> body = HttpGet(daemon().metrics_port(), "/metrics");
    ASSERT_TRUE(body.ok()) << body.status();
    text = *body;
    if (SampleValue(text, "kvtier_tier_bytes", {"tier=\"host\""}) > 0 || absl::Now() > deadline) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GT(
      SampleValue(text, "kvtier_rpc_duration_seconds_count", {"method=\"Repair\"", "code=\"OK\""}),
      0)
      << text;
  EXPECT_GT(SampleValue(text, "kvtier_offloaded_rows_total", {}), 0) << text;
  EXPECT_GT(SampleValue(text, "kvtier_repair_stage_duration_seconds_count", {"stage=\"score\""}), 0)
      << text;
  EXPECT_GT(SampleValue(text, "kvtier_tier_bytes", {"tier=\"host\""}), 0) << text;
  EXPECT_GT(SampleValue(text, "kvtier_tier_capacity_bytes", {"tier=\"host\""}), 0) << text;
  EXPECT_TRUE(client_->ReleaseSession(session->id).ok());
}

TEST_P(FlowTest, HealthStatsAndListSessions) {
  EXPECT_TRUE(client_->Health().ok());
  const synthetic::SyntheticKv kv(SmallOptions(100, 41));
  absl::StatusOr<TestSession> session = OpenSession(*client_, kv);
  ASSERT_TRUE(session.ok()) << session.status();
  absl::StatusOr<std::vector<v1::SessionInfo>> sessions = client_->ListSessions();
  ASSERT_TRUE(sessions.ok()) << sessions.status();
  EXPECT_TRUE(std::any_of(sessions->begin(), sessions->end(),
                          [&](const v1::SessionInfo& s) { return s.session_id() == session->id; }));
  absl::StatusOr<v1::StatsResponse> stats = client_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GE(stats->sessions(), 1);
  EXPECT_FALSE(stats->scorer().empty());
  EXPECT_TRUE(std::any_of(stats->tiers().begin(), stats->tiers().end(),
                          [](const v1::TierStats& t) { return t.name() == "host"; }));
  EXPECT_TRUE(client_->ReleaseSession(session->id).ok());
}

// Server reflection lists the kvtier service and the health service.
TEST_P(FlowTest, ServerReflectionListsServices) {
  const std::string target = GetParam() ? daemon().tcp_target() : daemon().unix_target();
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("*");
  ASSERT_TRUE(stream->Write(request));
  ASSERT_TRUE(stream->WritesDone());
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  EXPECT_THAT(names, ::testing::Contains("kvtier.v1.KvTier"));
  EXPECT_THAT(names, ::testing::Contains("grpc.health.v1.Health"));
  while (stream->Read(&response)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
}

INSTANTIATE_TEST_SUITE_P(Transports, FlowTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Tcp" : "UnixSocket";
                         });

}  // namespace
}  // namespace kvtier::testing
