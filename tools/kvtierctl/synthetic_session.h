// What `demo` and `bench` share: the 7B-class geometry, a synthetic fp16 session, offload of
// synthetic rows, and small formatting helpers.
#ifndef KVTIER_TOOLS_KVTIERCTL_SYNTHETIC_SESSION_H_
#define KVTIER_TOOLS_KVTIERCTL_SYNTHETIC_SESSION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kvtier/client.h"
#include "tools/synthetic/synthetic_kv.h"

namespace kvtier::ctl {

// 28 layers, 28 query heads, 4 KV heads, head_dim 128 (a 7B-class GQA model).
synthetic::SyntheticOptions SevenBClassOptions(int64_t rows, uint64_t seed);

// Opens an fp16 session with `kv`'s geometry, every layer scoring.
absl::StatusOr<v1::SessionInfo> OpenSyntheticSession(Client& client,
                                                     const synthetic::SyntheticKv& kv);

// Offloads rows `rows` (row indices of `kv`) for layers [layer_begin, layer_end) in one
// Offload call. `keys`/`values` are scratch buffers reused across calls.
absl::StatusOr<v1::OffloadResponse> OffloadRows(
    Client& client, const std::string& session_id, const RowGeometry& geometry,
    const synthetic::SyntheticKv& kv, int32_t layer_begin, int32_t layer_end,
    absl::Span<const size_t> rows, std::vector<uint16_t>* keys, std::vector<uint16_t>* values);

// Offloads every layer of the rows at `positions` again (so promoted rows become repair
// candidates again). INVALID_ARGUMENT when a position is not one of kv's rows.
absl::Status ReoffloadPositions(Client& client, const std::string& session_id,
                                const RowGeometry& geometry, const synthetic::SyntheticKv& kv,
                                absl::Span<const int64_t> positions);

// Float32 values as little-endian bytes.
std::string FloatBytes(const std::vector<float>& values);

// "3-7, 12, 20-31" for ascending positions.
std::string CompactRanges(absl::Span<const int64_t> sorted);

// Nearest-rank percentile (p in [0, 100]) of `values`; 0 when empty.
double Percentile(std::vector<double> values, double p);

}  // namespace kvtier::ctl

#endif  // KVTIER_TOOLS_KVTIERCTL_SYNTHETIC_SESSION_H_
