// kvtier-bench ingest: offload and promote throughput through gRPC beside Redis storing the
// same bytes with pipelined SETs and GETs (hiredis), and beside a plain memcpy of them.
//
// Data: --rows rows of the 7B-class geometry (28 layers, 4 KV heads, head_dim 128, fp16:
// 57,344 bytes of K+V per row) in batches of kBatchRows rows, generated before any timing.
// kvtier: one session (score index over 4 layers), one Offload call per batch (the SDK
// splits it into 4 MiB chunks), then one Promote (payload mode) per batch, every byte
// checked. Redis: each batch's keys and values as two values, SET with kPipelineBatches
// batches in flight, then GET the same way, every byte checked. memcpy: the same batches
// copied into a touched buffer. Each measurement runs --reps times; one JSON line per run.
#include "tools/kvtier_bench/ingest.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvtier/client.h"
#include "tools/kvtier_bench/bench_util.h"
#include "tools/synthetic/synthetic_client.h"
#include "tools/synthetic/synthetic_kv.h"

namespace kvtier::bench {
namespace {

constexpr size_t kBatchRows = 512;      // 28 MiB of K+V per batch
constexpr size_t kPipelineBatches = 4;  // Redis: batches in flight

struct Batch {
  std::vector<int64_t> positions;
  std::vector<uint16_t> keys, values;  // [layer][row][kv_head][head_dim]
  size_t bytes() const { return 2 * keys.size() * sizeof(uint16_t); }
};

std::vector<Batch> MakeBatches(const synthetic::SyntheticKv& kv) {
  std::vector<Batch> batches;
  const size_t n = kv.positions().size();
  const int32_t layers = kv.options().num_layers;
  for (size_t begin = 0; begin < n; begin += kBatchRows) {
    std::vector<size_t> rows(std::min(kBatchRows, n - begin));
    std::iota(rows.begin(), rows.end(), begin);
    Batch b;
    for (size_t r : rows) b.positions.push_back(kv.positions()[r]);
    b.keys.resize(static_cast<size_t>(layers) * rows.size() * kv.LayerRowElements());
    b.values.resize(b.keys.size());
    kv.FillKeys(0, layers, rows, absl::MakeSpan(b.keys));
    kv.FillValues(0, layers, rows, absl::MakeSpan(b.values));
    batches.push_back(std::move(b));
  }
  return batches;
}

void Report(const char* impl, const char* op, const std::string& transport, int rep, uint64_t bytes,
            double seconds) {
  std::printf(
      "{\"impl\": \"%s\", \"op\": \"%s\", \"transport\": \"%s\", \"rep\": %d, \"bytes\": %llu, "
      "\"seconds\": %.6f, \"GiBps\": %.3f}\n",
      impl, op, transport.c_str(), rep, static_cast<unsigned long long>(bytes), seconds,
      static_cast<double>(bytes) / seconds / (1024.0 * 1024.0 * 1024.0));
  std::fflush(stdout);
}

absl::Status RunKvtier(const IngestOptions& o, const synthetic::SyntheticKv& kv,
                       const std::vector<Batch>& batches, uint64_t total, int rep) {
  ClientOptions options;
  options.target = o.server;
  options.default_deadline = absl::Seconds(300);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(options);
  if (!client.ok()) return client.status();
  v1::OpenSessionRequest open = synthetic::OpenSessionRequestFor(kv);
  open.mutable_geometry()->mutable_scoring_layers()->Assign(
      std::begin(synthetic::kSevenBIndexLayers), std::end(synthetic::kSevenBIndexLayers));
  absl::StatusOr<v1::SessionInfo> session = (*client)->OpenSession(open);
  if (!session.ok()) return session.status();
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(session->geometry());
  if (!geometry.ok()) return geometry.status();
  const int32_t layers = kv.options().num_layers;

  const auto offload_start = Clock::now();
  for (const Batch& b : batches) {
    OffloadBatch batch{b.positions,
                       0,
                       layers,
                       absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(b.keys.data()),
                                           b.keys.size() * sizeof(uint16_t)),
                       absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(b.values.data()),
                                           b.values.size() * sizeof(uint16_t)),
                       {}};
    absl::StatusOr<v1::OffloadResponse> r =
        (*client)->Offload(session->session_id(), *geometry, batch);
    if (!r.ok()) return r.status();
  }
  Report("kvtier", "offload", o.transport, rep, total, SecondsSince(offload_start));

  const auto promote_start = Clock::now();
  for (const Batch& b : batches) {
    v1::PromoteRequest request;
    request.set_session_id(session->session_id());
    request.set_return_mode(v1::RETURN_MODE_PAYLOAD);
    request.mutable_positions()->Assign(b.positions.begin(), b.positions.end());
    absl::StatusOr<PromoteResult> r = (*client)->Promote(request, *geometry);
    if (!r.ok()) return r.status();
    const size_t half = b.bytes() / 2;
    if (r->payload.keys.size() != half || r->payload.values.size() != half ||
        std::memcmp(r->payload.keys.data(), b.keys.data(), half) != 0 ||
        std::memcmp(r->payload.values.data(), b.values.data(), half) != 0) {
      return absl::DataLossError("kvtier: promoted bytes differ from the offloaded ones");
    }
  }
  Report("kvtier", "promote", o.transport, rep, total, SecondsSince(promote_start));
  return (*client)->ReleaseSession(session->session_id()).status();
}

struct RedisDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
  void operator()(redisReply* r) const { freeReplyObject(r); }
};

absl::Status RunRedis(const IngestOptions& o, const std::vector<Batch>& batches, uint64_t total,
                      int rep) {
  std::unique_ptr<redisContext, RedisDeleter> c(o.redis_socket.empty()
                                                    ? redisConnect("127.0.0.1", o.redis_port)
                                                    : redisConnectUnix(o.redis_socket.c_str()));
  if (c == nullptr || c->err != 0) {
    return absl::UnavailableError(
        absl::StrCat("redis: cannot connect: ", c == nullptr ? "no memory" : c->errstr));
  }
  const std::string transport = o.redis_socket.empty() ? "tcp" : "unix";
  auto reply = [&](int type) -> absl::Status {
    void* raw = nullptr;
    if (redisGetReply(c.get(), &raw) != REDIS_OK || raw == nullptr) {
      return absl::UnavailableError(absl::StrCat("redis: ", c->errstr));
    }
    std::unique_ptr<redisReply, RedisDeleter> r(static_cast<redisReply*>(raw));
    if (r->type != type) return absl::InternalError("redis: unexpected reply");
    return absl::OkStatus();
  };
  // SET: keys and values of batch i as "k<i>" and "v<i>", kPipelineBatches in flight
  // (hiredis 0.14's format knows %d, not %zu).
  const auto set_start = Clock::now();
  for (size_t i = 0; i < batches.size(); ++i) {
    const Batch& b = batches[i];
    const size_t half = b.bytes() / 2;
    redisAppendCommand(c.get(), "SET k%d %b", static_cast<int>(i), b.keys.data(), half);
    redisAppendCommand(c.get(), "SET v%d %b", static_cast<int>(i), b.values.data(), half);
    if (i + 1 >= kPipelineBatches) {
      for (int k = 0; k < 2; ++k) {
        if (absl::Status s = reply(REDIS_REPLY_STATUS); !s.ok()) return s;
      }
    }
  }
  for (size_t i = 0; i < std::min(batches.size(), kPipelineBatches - 1) * 2; ++i) {
    if (absl::Status s = reply(REDIS_REPLY_STATUS); !s.ok()) return s;
  }
  Report("redis", "set", transport, rep, total, SecondsSince(set_start));

  // GET the same way, each value checked.
  const auto get_start = Clock::now();
  size_t next_reply = 0;
  auto check = [&]() -> absl::Status {
    const Batch& b = batches[next_reply / 2];
    const uint16_t* want = next_reply % 2 == 0 ? b.keys.data() : b.values.data();
    void* raw = nullptr;
    if (redisGetReply(c.get(), &raw) != REDIS_OK || raw == nullptr) {
      return absl::UnavailableError(absl::StrCat("redis: ", c->errstr));
    }
    std::unique_ptr<redisReply, RedisDeleter> r(static_cast<redisReply*>(raw));
    if (r->type != REDIS_REPLY_STRING || r->len != b.bytes() / 2 ||
        std::memcmp(r->str, want, r->len) != 0) {
      return absl::DataLossError("redis: a value read back differs");
    }
    ++next_reply;
    return absl::OkStatus();
  };
  for (size_t i = 0; i < batches.size(); ++i) {
    redisAppendCommand(c.get(), "GET k%d", static_cast<int>(i));
    redisAppendCommand(c.get(), "GET v%d", static_cast<int>(i));
    if (i + 1 >= kPipelineBatches) {
      for (int k = 0; k < 2; ++k) {
        if (absl::Status s = check(); !s.ok()) return s;
      }
    }
  }
  while (next_reply < 2 * batches.size()) {
    if (absl::Status s = check(); !s.ok()) return s;
  }
  Report("redis", "get", transport, rep, total, SecondsSince(get_start));
  std::unique_ptr<redisReply, RedisDeleter> flushed(
      static_cast<redisReply*>(redisCommand(c.get(), "FLUSHALL")));
  return flushed == nullptr ? absl::UnavailableError("redis: FLUSHALL failed") : absl::OkStatus();
}

void RunMemcpy(const std::vector<Batch>& batches, uint64_t total, int rep) {
  static std::vector<uint8_t>* target = new std::vector<uint8_t>();
  if (target->size() != total) target->assign(total, 1);  // touched: no page faults timed
  const auto start = Clock::now();
  size_t at = 0;
  for (const Batch& b : batches) {
    const size_t half = b.bytes() / 2;
    std::memcpy(target->data() + at, b.keys.data(), half);
    std::memcpy(target->data() + at + half, b.values.data(), half);
    at += b.bytes();
  }
  Report("memcpy", "copy", "memory", rep, total, SecondsSince(start));
}

}  // namespace

int RunIngest(const IngestOptions& o) {
  if (o.rows < static_cast<int64_t>(kBatchRows) || o.reps < 1 ||
      (o.server.empty() && o.redis_socket.empty() && o.redis_port == 0)) {
    std::fprintf(stderr,
                 "kvtier-bench ingest: need --rows >= %zu, --reps >= 1, and --server and/or "
                 "--redis_socket / --redis_port\n",
                 kBatchRows);
    return 2;
  }
  const synthetic::SyntheticKv kv(synthetic::SevenBClassOptions(o.rows, 1));
  const std::vector<Batch> batches = MakeBatches(kv);
  uint64_t total = 0;
  for (const Batch& b : batches) total += b.bytes();
  for (int rep = 0; rep < o.reps; ++rep) {
    if (!o.server.empty()) {
      if (absl::Status s = RunKvtier(o, kv, batches, total, rep); !s.ok()) {
        std::fprintf(stderr, "kvtier-bench ingest: %s\n", s.ToString().c_str());
        return 1;
      }
    }
    if (!o.redis_socket.empty() || o.redis_port != 0) {
      if (absl::Status s = RunRedis(o, batches, total, rep); !s.ok()) {
        std::fprintf(stderr, "kvtier-bench ingest: %s\n", s.ToString().c_str());
        return 1;
      }
    }
    RunMemcpy(batches, total, rep);
  }
  return 0;
}

}  // namespace kvtier::bench
