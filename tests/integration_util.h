// Helpers shared by the integration tests: a small fp16 geometry that is fast under ASan,
// synthetic sessions with needles, and byte-exact expectations for returned rows.
#ifndef KVTIER_TESTS_INTEGRATION_UTIL_H_
#define KVTIER_TESTS_INTEGRATION_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kvtier/client.h"
#include "tests/daemon_harness.h"
#include "tools/synthetic/synthetic_kv.h"

namespace kvtier::testing {

// 4 layers, 8 query heads, 2 KV heads, head_dim 32: 256 bytes of K (or V) per row-layer.
synthetic::SyntheticOptions SmallOptions(int64_t rows, uint64_t seed);

// A client for `target` with a generous deadline and fast retries.
std::unique_ptr<Client> MakeClient(const std::string& target, size_t offload_chunk_bytes = 0);

// A session opened for a synthetic row set, with its row geometry.
struct TestSession {
  std::string id;
  RowGeometry geometry;
  v1::SessionInfo info;
};

// Opens an fp16 session with kv's geometry (every layer scoring) and optional TTL.
absl::StatusOr<TestSession> OpenSession(Client& client, const synthetic::SyntheticKv& kv,
                                        uint32_t ttl_seconds = 0);

// Opens an fp16 session with kv's geometry and the given id, tenant and scoring layers
// (empty: defaults).
struct SessionOptions {
  std::string id;
  std::string tenant;
  std::vector<int32_t> scoring_layers;
  bool index_only = false;
};
absl::StatusOr<TestSession> OpenSession(Client& client, const synthetic::SyntheticKv& kv,
                                        const SessionOptions& options);

// Offloads every row of `kv`, `layers_per_call` layers per Offload call.
absl::Status OffloadAll(Client& client, const TestSession& session,
                        const synthetic::SyntheticKv& kv, int32_t layers_per_call);

// Keys and values of the rows at `positions` (in that order), every layer, as the API lays
// them out: [layer][row][kv_head][head_dim] fp16.
struct ExpectedRows {
  std::string keys;
  std::string values;
};
ExpectedRows ExpectedPayload(const synthetic::SyntheticKv& kv, absl::Span<const int64_t> positions);

// A RepairKV request aimed at needle `needle` of `kv`.
v1::RepairRequest NeedleRepair(const synthetic::SyntheticKv& kv, const std::string& session_id,
                               int32_t needle, int32_t budget, int32_t num_tokens,
                               v1::ReturnMode mode);

// Runs `command` through the shell, returns its stdout and sets *exit_code (-1 when it did
// not exit normally).
std::string RunCommand(const std::string& command, int* exit_code);

// True when every position of `needle` is in `positions`.
bool Contains(absl::Span<const int64_t> positions, absl::Span<const int64_t> needle);

}  // namespace kvtier::testing

#endif  // KVTIER_TESTS_INTEGRATION_UTIL_H_
