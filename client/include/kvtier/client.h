// kvtier C++ SDK: a typed client for the kvtier.v1.KvTier gRPC service (see
// proto/kvtier/v1/kvtier.proto for the wire contract and DESIGN.md for the model).
//
// Every call returns absl::Status or absl::StatusOr<T>. A gRPC status is carried over with
// the same code and message; problems the SDK detects itself (a malformed batch, a response
// stream that breaks the protocol) are reported with INVALID_ARGUMENT and INTERNAL.
//
// Example:
//   kvtier::ClientOptions options;
//   options.target = "unix:///run/kvtier/kvtierd.sock";
//   absl::StatusOr<std::unique_ptr<kvtier::Client>> client = kvtier::Client::Connect(options);
//   ...
//   absl::StatusOr<kvtier::v1::SessionInfo> session = (*client)->OpenSession(request);
#ifndef KVTIER_CLIENT_INCLUDE_KVTIER_CLIENT_H_
#define KVTIER_CLIENT_INCLUDE_KVTIER_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier {

// How a call is retried. Only UNAVAILABLE (the server could not be reached, or the connection
// broke) is retried; every other status is returned at once. Attempts share the call's
// deadline: a retry never extends it.
struct RetryPolicy {
  // Attempts in total, including the first. 1 disables retries.
  int max_attempts = 4;
  // Wait before the first retry; it doubles on each retry up to max_backoff. Each wait is
  // multiplied by a random factor in [1 - jitter, 1 + jitter].
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  double jitter = 0.2;
};

struct ClientOptions {
  // Where the daemon listens: "unix:///abs/path.sock", "unix://rel/path.sock" (relative to
  // the working directory), "unix:path", "host:port" or "ipv4:127.0.0.1:port".
  std::string target = "unix://kvtier-data/kvtierd.sock";
  // Deadline of a call that does not set CallOptions::deadline. For streams it covers the
  // whole stream, retries included.
  absl::Duration default_deadline = absl::Seconds(60);
  RetryPolicy retry;
  // Offload splits a batch into stream chunks of at most this many K+V payload bytes.
  size_t offload_chunk_bytes = size_t{4} << 20;
  // Largest gRPC message sent or received, in bytes.
  int max_message_bytes = 256 << 20;
};

// Per-call settings.
struct CallOptions {
  // Overrides ClientOptions::default_deadline when positive.
  absl::Duration deadline = absl::ZeroDuration();
};

// Shape of one row of a session as far as bytes are concerned. Offload needs it to split a
// batch into chunks; Repair and Promote need it to reassemble the payload.
struct RowGeometry {
  int32_t num_layers = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t dtype_bytes = 0;  // 2 for fp16/bf16, 4 for fp32
  // Index-only session (Geometry.index_only): batches carry scoring layers' keys only and
  // no values.
  bool index_only = false;

  // Bytes of the keys (or of the values) of one row in one layer.
  size_t LayerRowBytes() const {
    return static_cast<size_t>(num_kv_heads) * static_cast<size_t>(head_dim) *
           static_cast<size_t>(dtype_bytes);
  }

  // Geometry of a session as returned by OpenSession or GetSession. INVALID_ARGUMENT when
  // a dimension is not positive or the dtype is unspecified or unknown.
  static absl::StatusOr<RowGeometry> FromProto(const v1::Geometry& geometry);
};

// Bytes of one element of `dtype`, or 0 when it is unspecified or unknown.
int32_t DTypeBytes(v1::DType dtype);

// Packs float32 values as the little-endian bytes that Signal.queries (query_dtype float32)
// and Signal.lse_active carry.
std::string Float32Bytes(absl::Span<const float> values);

// A batch of evicted rows for Offload. Borrowed: the spans must stay valid during the call.
struct OffloadBatch {
  // Token positions of the rows, unique, >= 0.
  absl::Span<const int64_t> positions;
  // Layer range [layer_begin, layer_end) carried by keys and values.
  int32_t layer_begin = 0;
  int32_t layer_end = 0;
  // [layer_end - layer_begin][positions.size()][num_kv_heads][head_dim] elements of the
  // session dtype, little-endian.
  absl::Span<const uint8_t> keys;
  absl::Span<const uint8_t> values;  // empty for an index-only session
  // Empty, or one first-stage eviction score per position.
  absl::Span<const float> importance;
};

// Rows returned by Repair or Promote.
struct RowPayload {
  // Row order of `keys` and `values`: RepairSummary.chosen for Repair, the requested
  // positions for Promote.
  std::vector<int64_t> positions;
  // [num_layers][positions.size()][num_kv_heads][head_dim] of the session dtype; empty in
  // RETURN_MODE_POSITIONS.
  std::string keys;
  std::string values;
};

struct RepairResult {
  v1::RepairSummary summary;
  RowPayload payload;           // positions == summary.chosen
  v1::StageTimings timings;     // from `done`: every stage, send and total included
  uint64_t bytes_received = 0;  // serialized size of every response message
};

struct PromoteResult {
  v1::PromoteSummary summary;
  RowPayload payload;  // positions == summary.positions
  v1::StageTimings timings;
  uint64_t bytes_received = 0;
};

// A connection to one kvtier daemon.
//
// Thread-safe: one Client may be shared by any number of threads; calls do not serialize
// each other (gRPC multiplexes them on one channel).
class Client {
 public:
  // Creates a client for options.target. Does not wait for the server: the first call
  // connects (and retries per options.retry). INVALID_ARGUMENT when an option is out of
  // range (empty target, chunk bytes 0, max_attempts < 1, ...).
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ClientOptions& options);

  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // grpc.health.v1 Check for `service` ("" is the server as a whole). OK when SERVING;
  // UNAVAILABLE when the server answers anything else or cannot be reached.
  absl::Status Health(const std::string& service = "", const CallOptions& call = {});

  // Opens a session. Returns its SessionInfo (session id, normalized geometry, TTL).
  // Errors: INVALID_ARGUMENT (field named), ALREADY_EXISTS, RESOURCE_EXHAUSTED.
  // Note: retried on UNAVAILABLE; with an empty session_id a retry after a lost response
  // may leave an unused session behind (it expires with its TTL).
  absl::StatusOr<v1::SessionInfo> OpenSession(const v1::OpenSessionRequest& request,
                                              const CallOptions& call = {});

  // Stores a batch of rows of session `session_id` whose geometry is `geometry`. The batch
  // is split into chunks of at most ClientOptions::offload_chunk_bytes of K+V bytes: by rows,
  // and when one row's layers do not fit, also by layer ranges. All chunks go in one client
  // stream. On UNAVAILABLE the whole stream is sent again (re-offloading a position
  // overwrites it, so this is safe). INVALID_ARGUMENT without contacting the server when
  // the batch does not match the geometry. Server errors as in the proto: the chunks before
  // the failing one stay stored.
  absl::StatusOr<v1::OffloadResponse> Offload(const std::string& session_id,
                                              const RowGeometry& geometry,
                                              const OffloadBatch& batch,
                                              const CallOptions& call = {});

  // Sends pre-built chunks as one Offload stream, as they are (no checks, no splitting).
  // For engines that chunk themselves, and for testing the server's validation.
  absl::StatusOr<v1::OffloadResponse> OffloadChunks(absl::Span<const v1::OffloadChunk> chunks,
                                                    const CallOptions& call = {});

  // Runs a repair and collects its stream: the summary, the payload reassembled into
  // contiguous [layer][row][kv_head][head_dim] arrays in `chosen` order (`geometry` is the
  // session's), and the final timings. INTERNAL when the stream breaks the protocol (summary
  // not first, done not last or missing, chunk sizes or positions inconsistent with the
  // summary or the geometry). Retried on UNAVAILABLE only while nothing has been received;
  // set request.request_id to make a retry return the same selection.
  absl::StatusOr<RepairResult> Repair(const v1::RepairRequest& request, const RowGeometry& geometry,
                                      const CallOptions& call = {});

  // Returns explicitly named rows; the stream is collected and checked as for Repair, the
  // payload in request.positions order. NOT_FOUND when a position is not stored and complete.
  absl::StatusOr<PromoteResult> Promote(const v1::PromoteRequest& request,
                                        const RowGeometry& geometry, const CallOptions& call = {});

  // Drops rows or a whole session (request.whole_session). Idempotent for rows; NOT_FOUND
  // for an unknown session.
  absl::StatusOr<v1::ReleaseResponse> Release(const v1::ReleaseRequest& request,
                                              const CallOptions& call = {});

  // Convenience forms of Release.
  absl::StatusOr<v1::ReleaseResponse> ReleaseRows(const std::string& session_id,
                                                  absl::Span<const int64_t> positions,
                                                  const CallOptions& call = {});
  absl::StatusOr<v1::ReleaseResponse> ReleaseSession(const std::string& session_id,
                                                     const CallOptions& call = {});

  // The agent paused: stages the session's payloads that are on disk back into host RAM
  // (as far as they fit) before the Repair arrives. NOT_FOUND for an unknown session.
  absl::StatusOr<v1::BeginPauseResponse> BeginPause(const std::string& session_id,
                                                    const CallOptions& call = {});

  // Session counts and geometry. NOT_FOUND for an unknown (or expired) session.
  absl::StatusOr<v1::SessionInfo> GetSession(const std::string& session_id,
                                             const CallOptions& call = {});

  // Sessions of `tenant` ("" for every tenant).
  absl::StatusOr<std::vector<v1::SessionInfo>> ListSessions(const std::string& tenant = "",
                                                            const CallOptions& call = {});

  // Server-wide occupancy per tier and counters.
  absl::StatusOr<v1::StatsResponse> Stats(const CallOptions& call = {});

  const ClientOptions& options() const { return options_; }

 private:
  class Impl;
  Client(const ClientOptions& options, std::unique_ptr<Impl> impl);

  const ClientOptions options_;
  const std::unique_ptr<Impl> impl_;
};

// The gRPC target string for `target` as accepted by ClientOptions::target
// ("unix://rel/path" becomes "unix:rel/path"; everything else is passed through).
std::string NormalizeTarget(const std::string& target);

}  // namespace kvtier

#endif  // KVTIER_CLIENT_INCLUDE_KVTIER_CLIENT_H_
