// Synthetic rows through the SDK: opening a session shaped like a SyntheticKv and offloading
// its rows, as kvtierctl's demo and bench and the integration tests do.
#ifndef KVTIER_TOOLS_SYNTHETIC_SYNTHETIC_CLIENT_H_
#define KVTIER_TOOLS_SYNTHETIC_SYNTHETIC_CLIENT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kvtier/client.h"
#include "tools/synthetic/synthetic_kv.h"

namespace kvtier::synthetic {

// Opens an fp16 session with `kv`'s geometry (every layer scoring); `ttl_seconds` 0 leaves
// the daemon's default. Returns the daemon's error when it refuses the session.
absl::StatusOr<v1::SessionInfo> OpenSession(Client& client, const SyntheticKv& kv,
                                            uint32_t ttl_seconds = 0);

// The OpenSession request OpenSession sends, for callers that set more fields.
v1::OpenSessionRequest OpenSessionRequestFor(const SyntheticKv& kv, uint32_t ttl_seconds = 0);

// One Offload call of synthetic rows and where its time went.
struct OffloadedRange {
  int32_t layer_begin = 0;  // layers [layer_begin, layer_end)
  int32_t layer_end = 0;
  v1::OffloadResponse response;
  absl::Duration fill_time;  // generating the K/V rows (an engine's business, not the RPC's)
  absl::Duration call_time;  // Client::Offload alone
};

// Offloads rows `rows` (row indices of `kv`) for layers [layer_begin, layer_end) in one
// Offload call to session `session_id` of row geometry `geometry`. `keys`/`values` are
// scratch buffers, reused across calls; an index-only `geometry` sends keys only (the
// layers must then be scoring layers). Returns Client::Offload's error on failure.
absl::StatusOr<OffloadedRange> OffloadRows(Client& client, const std::string& session_id,
                                           const RowGeometry& geometry, const SyntheticKv& kv,
                                           int32_t layer_begin, int32_t layer_end,
                                           absl::Span<const size_t> rows,
                                           std::vector<uint16_t>* keys,
                                           std::vector<uint16_t>* values);

// Offloads every row of `kv`, `layers_per_call` (>= 1) layers per Offload call in layer
// order (the last call may have fewer), calling `on_range` after each call that succeeded.
// Stops at the first failed call and returns its error.
absl::Status OffloadAllRows(
    Client& client, const std::string& session_id, const RowGeometry& geometry,
    const SyntheticKv& kv, int32_t layers_per_call,
    absl::FunctionRef<void(const OffloadedRange&)> on_range = [](const OffloadedRange&) {});

}  // namespace kvtier::synthetic

#endif  // KVTIER_TOOLS_SYNTHETIC_SYNTHETIC_CLIENT_H_
