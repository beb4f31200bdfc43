// Unit tests of the SDK without the daemon: offload chunking, payload reassembly, retry, and
// the stream-shape checks against a scripted in-process server.
#include "kvtier/client.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstring>
#include <numeric>

#include "absl/synchronization/mutex.h"
#include "client/src/offload_chunker.h"
#include "client/src/payload_assembler.h"
#include "client/src/retry.h"
#include "client/src/status_convert.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier {
namespace {

using ::testing::HasSubstr;

// 3 layers, 2 KV heads, head_dim 4, 2-byte dtype: 16 bytes per row-layer.
RowGeometry SmallGeometry() { return RowGeometry{3, 2, 4, 2}; }

// Bytes for [layers][rows][16] where each byte names (layer, row, index).
std::vector<uint8_t> Pattern(int layers, int rows, uint8_t salt) {
  std::vector<uint8_t> out;
  for (int l = 0; l < layers; ++l)
    for (int r = 0; r < rows; ++r)
      for (int i = 0; i < 16; ++i) out.push_back(static_cast<uint8_t>(salt + l * 97 + r * 13 + i));
  return out;
}

// Splits with `limit`, then puts every chunk back into [layer][row] order and compares.
void CheckChunking(size_t limit, int expected_layers_per_chunk) {
  const RowGeometry g = SmallGeometry();
  const int rows = 10;
  std::vector<int64_t> positions(rows);
  std::iota(positions.begin(), positions.end(), 100);
  const std::vector<uint8_t> keys = Pattern(3, rows, 1), values = Pattern(3, rows, 7);
  std::vector<float> importance(rows, 0.5f);
  OffloadBatch batch{positions, 0, 3, keys, values, importance};
  ASSERT_TRUE(client_internal::ValidateBatch(g, batch).ok());
  client_internal::OffloadChunker chunker("s", g, batch, limit);
  EXPECT_EQ(chunker.layers_per_chunk(), expected_layers_per_chunk);
  std::vector<uint8_t> got_keys(keys.size()), got_values(values.size());
  std::vector<int> covered(3 * rows, 0);
  v1::OffloadChunk chunk;
  while (chunker.Next(&chunk)) {
    EXPECT_LE(chunk.keys().size() + chunk.values().size(), std::max<size_t>(limit, 32));
    EXPECT_EQ(chunk.session_id(), "s");
    EXPECT_EQ(chunk.importance_size(), chunk.positions_size());
    const int n = chunk.positions_size();
    for (int l = chunk.layer_begin(); l < chunk.layer_end(); ++l) {
      for (int i = 0; i < n; ++i) {
        const int r = static_cast<int>(chunk.positions(i) - 100);
        ++covered[l * rows + r];
        const size_t src = ((l - chunk.layer_begin()) * n + i) * 16;
        std::memcpy(&got_keys[(l * rows + r) * 16], chunk.keys().data() + src, 16);
        std::memcpy(&got_values[(l * rows + r) * 16], chunk.values().data() + src, 16);
      }
    }
  }
  EXPECT_THAT(covered, ::testing::Each(1));
  EXPECT_EQ(got_keys, keys);
  EXPECT_EQ(got_values, values);
}

TEST(OffloadChunker, WholeBatchInOneChunk) { CheckChunking(1 << 20, 3); }
TEST(OffloadChunker, SplitsByRows) { CheckChunking(3 * 32 * 4, 3); }  // 4 rows per chunk
TEST(OffloadChunker, SplitsByLayersWhenARowDoesNotFit) { CheckChunking(70, 2); }
TEST(OffloadChunker, OneRowLayerLargerThanTheLimitGoesAlone) { CheckChunking(10, 1); }

TEST(OffloadChunker, ValidateBatchNamesTheField) {
  const RowGeometry g = SmallGeometry();
  std::vector<int64_t> positions = {1, 2};
  std::vector<uint8_t> keys(3 * 2 * 16), values(3 * 2 * 16), short_values(5);
  EXPECT_TRUE(client_internal::ValidateBatch(g, {positions, 0, 3, keys, values, {}}).ok());
  EXPECT_THAT(
      std::string(
          client_internal::ValidateBatch(g, {positions, 0, 3, keys, short_values, {}}).message()),
      HasSubstr("values"));
  EXPECT_THAT(
      std::string(client_internal::ValidateBatch(g, {positions, 1, 4, keys, values, {}}).message()),
      HasSubstr("layer"));
  std::vector<float> importance = {1};
  EXPECT_THAT(
      std::string(
          client_internal::ValidateBatch(g, {positions, 0, 3, keys, values, importance}).message()),
      HasSubstr("importance"));
}

v1::PayloadChunk PayloadChunk(std::vector<int64_t> positions, int lb, int le, size_t row_bytes) {
  v1::PayloadChunk c;
  c.mutable_positions()->Add(positions.begin(), positions.end());
  c.set_layer_begin(lb);
  c.set_layer_end(le);
  c.set_keys(std::string(positions.size() * (le - lb) * row_bytes, 'k'));
  c.set_values(std::string(positions.size() * (le - lb) * row_bytes, 'v'));
  return c;
}

TEST(PayloadAssembler, ReassemblesAndChecks) {
  const RowGeometry g = SmallGeometry();
  RowPayload out;
  out.positions = {7, 3, 9};
  const uint64_t bytes = 2 * 3 * 3 * 16;
  client_internal::PayloadAssembler ok(g, 2, bytes, &out);
  ASSERT_TRUE(ok.Start().ok());
  ASSERT_TRUE(ok.Add(PayloadChunk({7, 3}, 0, 3, 16)).ok());
  EXPECT_FALSE(ok.Finish().ok());  // one chunk missing
  ASSERT_TRUE(ok.Add(PayloadChunk({9}, 0, 3, 16)).ok());
  EXPECT_TRUE(ok.Finish().ok());
  EXPECT_EQ(out.keys.size(), bytes / 2);

  RowPayload out2;
  out2.positions = {7, 3, 9};
  client_internal::PayloadAssembler bad(g, 2, bytes, &out2);
  ASSERT_TRUE(bad.Start().ok());
  v1::PayloadChunk wrong_size = PayloadChunk({7, 3}, 0, 3, 16);
  wrong_size.mutable_keys()->pop_back();
  EXPECT_EQ(bad.Add(wrong_size).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(bad.Add(PayloadChunk({7, 9}, 0, 3, 16)).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(bad.Add(PayloadChunk({5}, 0, 3, 16)).code(), absl::StatusCode::kInternal);
}

TEST(PayloadAssembler, RejectsARepeatedRowLayer) {
  const RowGeometry g = SmallGeometry();
  RowPayload out;
  out.positions = {1, 2};
  client_internal::PayloadAssembler a(g, 3, 2 * 3 * 2 * 16, &out);
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(a.Add(PayloadChunk({1, 2}, 0, 2, 16)).ok());
  EXPECT_EQ(a.Add(PayloadChunk({2}, 1, 3, 16)).code(), absl::StatusCode::kInternal);
}

TEST(StatusConvert, KeepsCodeAndMessage) {
  const absl::Status s =
      client_internal::FromGrpcStatus(grpc::Status(grpc::StatusCode::OUT_OF_RANGE, "budget: x"));
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(s.message(), "budget: x");
  EXPECT_TRUE(client_internal::FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(Retry, RetriesOnlyUnavailable) {
  RetryPolicy policy;
  policy.max_attempts = 3;
  policy.initial_backoff = absl::Milliseconds(1);
  int calls = 0;
  absl::Status s =
      client_internal::RetryUnavailable(policy, absl::Now() + absl::Seconds(10), [&](bool*) {
        ++calls;
        return absl::UnavailableError("down");
      });
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(calls, 3);
  calls = 0;
  s = client_internal::RetryUnavailable(policy, absl::Now() + absl::Seconds(10), [&](bool*) {
    ++calls;
    return absl::InvalidArgumentError("bad");
  });
  EXPECT_EQ(calls, 1);
  calls = 0;
  s = client_internal::RetryUnavailable(policy, absl::Now() + absl::Seconds(10),
                                        [&](bool* may_retry) {
                                          ++calls;
                                          *may_retry = false;
                                          return absl::UnavailableError("mid-stream");
                                        });
  EXPECT_EQ(calls, 1);
  calls = 0;
  s = client_internal::RetryUnavailable(policy, absl::Now() + absl::Seconds(10), [&](bool*) {
    return ++calls < 2 ? absl::UnavailableError("once") : absl::OkStatus();
  });
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(calls, 2);
}

TEST(NormalizeTarget, RelativeAndAbsoluteUnixPaths) {
  EXPECT_EQ(NormalizeTarget("unix://kvtier-data/kvtierd.sock"), "unix:kvtier-data/kvtierd.sock");
  EXPECT_EQ(NormalizeTarget("unix:///run/k.sock"), "unix:///run/k.sock");
  EXPECT_EQ(NormalizeTarget("/run/k.sock"), "unix:/run/k.sock");
  EXPECT_EQ(NormalizeTarget("127.0.0.1:50551"), "127.0.0.1:50551");
}

TEST(Client, ConnectRejectsBadOptions) {
  ClientOptions options;
  options.offload_chunk_bytes = 0;
  EXPECT_EQ(Client::Connect(options).status().code(), absl::StatusCode::kInvalidArgument);
  options = ClientOptions();
  options.retry.max_attempts = 0;
  EXPECT_EQ(Client::Connect(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(Client, NoServerIsUnavailableAfterRetries) {
  ClientOptions options;
  options.target = "unix:///nonexistent-dir/kvtierd.sock";
  options.retry.max_attempts = 3;
  options.retry.initial_backoff = absl::Milliseconds(5);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  ASSERT_TRUE(client.ok());
  const absl::Time start = absl::Now();
  EXPECT_EQ((*client)->Health().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*client)->GetSession("x").status().code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

// A server whose Repair replies with a scripted message sequence. The client may end a
// call (on a protocol error) while the handler is still writing, so the next test step can
// set a new script while an old handler runs: each handler works on its own copy.
class ScriptedServer final : public v1::KvTier::Service {
 public:
  std::atomic<int> calls{0};

  void SetScript(std::vector<v1::RepairResponse> script) {
    absl::MutexLock lock(&mu_);
    script_ = std::move(script);
  }

  grpc::Status Repair(grpc::ServerContext*, const v1::RepairRequest*,
                      grpc::ServerWriter<v1::RepairResponse>* writer) override {
    ++calls;
    std::vector<v1::RepairResponse> script;
    {
      absl::MutexLock lock(&mu_);
      script = script_;
    }
    for (const v1::RepairResponse& m : script) {
      if (!writer->Write(m)) break;
    }
    return grpc::Status::OK;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::RepairResponse> script_ ABSL_GUARDED_BY(mu_);
};

class ScriptedStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ClientOptions options;
    options.target = "127.0.0.1:" + std::to_string(port);
    client_ = *Client::Connect(options);
  }
  void TearDown() override { server_->Shutdown(); }

  static v1::RepairResponse Summary(std::vector<int64_t> chosen, int chunks, uint64_t bytes) {
    v1::RepairResponse m;
    m.mutable_summary()->mutable_chosen()->Add(chosen.begin(), chosen.end());
    m.mutable_summary()->set_payload_chunks(chunks);
    m.mutable_summary()->set_payload_bytes(bytes);
    return m;
  }
  static v1::RepairResponse Chunk(std::vector<int64_t> positions) {
    v1::RepairResponse m;
    *m.mutable_chunk() = PayloadChunk(positions, 0, 3, 16);
    return m;
  }
  static v1::RepairResponse Done() {
    v1::RepairResponse m;
    m.mutable_done()->mutable_timings()->set_total_seconds(0.5);
    return m;
  }
  absl::Status Run() {
    v1::RepairRequest request;
    request.set_session_id("s");
    return client_->Repair(request, SmallGeometry()).status();
  }

  ScriptedServer service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ScriptedStreamTest, WellFormedStreamIsCollected) {
  service_.SetScript({Summary({4, 5}, 2, 2 * 3 * 2 * 16), Chunk({4}), Chunk({5}), Done()});
  v1::RepairRequest request;
  absl::StatusOr<RepairResult> r = client_->Repair(request, SmallGeometry());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->payload.keys, std::string(3 * 2 * 16, 'k'));
  EXPECT_EQ(r->timings.total_seconds(), 0.5);
  EXPECT_GT(r->bytes_received, 3u * 2 * 16 * 2);
}

TEST_F(ScriptedStreamTest, ChunkBeforeSummaryIsInternal) {
  service_.SetScript({Chunk({4}), Summary({4}, 1, 3 * 16 * 2), Done()});
  EXPECT_EQ(Run().code(), absl::StatusCode::kInternal);
}

TEST_F(ScriptedStreamTest, MissingDoneIsInternal) {
  service_.SetScript({Summary({4}, 1, 3 * 16 * 2), Chunk({4})});
  EXPECT_EQ(Run().code(), absl::StatusCode::kInternal);
}

TEST_F(ScriptedStreamTest, MessageAfterDoneIsInternal) {
  service_.SetScript({Summary({4}, 1, 3 * 16 * 2), Chunk({4}), Done(), Done()});
  EXPECT_EQ(Run().code(), absl::StatusCode::kInternal);
}

TEST_F(ScriptedStreamTest, ChunkCountMismatchIsInternal) {
  service_.SetScript({Summary({4, 5}, 1, 2 * 3 * 2 * 16), Chunk({4}), Chunk({5}), Done()});
  EXPECT_EQ(Run().code(), absl::StatusCode::kInternal);
  service_.SetScript({Summary({4, 5}, 2, 2 * 3 * 2 * 16), Chunk({4}), Done()});
  EXPECT_EQ(Run().code(), absl::StatusCode::kInternal);
}

TEST_F(ScriptedStreamTest, PositionsModeNeedsNoGeometry) {
  service_.SetScript({Summary({4, 5}, 0, 0), Done()});
  v1::RepairRequest request;
  request.set_return_mode(v1::RETURN_MODE_POSITIONS);
  absl::StatusOr<RepairResult> r = client_->Repair(request, RowGeometry{});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->payload.positions, ::testing::ElementsAre(4, 5));
  EXPECT_TRUE(r->payload.keys.empty());
}

}  // namespace
}  // namespace kvtier
