// Request validation: every check names the offending field, and nothing here mutates
// server state, so a rejected request changes nothing.
#ifndef KVTIER_SERVER_VALIDATION_H_
#define KVTIER_SERVER_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gpu/selection.h"
#include "kvtier/v1/kvtier.pb.h"
#include "storage/geometry.h"

namespace kvtier::server {

// Limits of v1 requests (docs/API.md lists them).
inline constexpr int32_t kMaxBudget = 1 << 20;
inline constexpr int32_t kMaxBurst = 1024;
inline constexpr int32_t kMaxSignalTokens = 4096;
// num_q_heads x num_tokens: bounds the scorer's per-thread score tile (query vectors x
// segment rows x 4 bytes: 16 MiB at 256-row segments, 64 MiB at 1024).
inline constexpr int64_t kMaxQueryVectors = 16384;
inline constexpr int64_t kMaxPromotePositions = 1 << 20;
inline constexpr int32_t kDefaultBurstLeft = 2;
inline constexpr int32_t kDefaultBurstRight = 20;

// Maps and validates a wire geometry (INVALID_ARGUMENT naming "geometry.<field>").
absl::StatusOr<storage::Geometry> GeometryFromProto(const v1::Geometry& proto);
void GeometryToProto(const storage::Geometry& geometry, v1::Geometry* proto);

// `field` is the name used in the error message.
absl::Status ValidateSessionId(absl::string_view field, absl::string_view id, bool allow_empty);
// Empty tenants are allowed (they mean "default").
absl::Status ValidateTenant(absl::string_view tenant);

// Repair settings after defaults are applied.
enum class ScoringMode { kAuto, kExact, kFast };

struct RepairParams {
  scorer::SelectorKind selector = scorer::SelectorKind::kRepairKv;
  ScoringMode scoring = ScoringMode::kAuto;
  scorer::PackOptions pack;
  bool positions_only = false;
};

// Validates everything in a RepairRequest that does not need the session.
absl::StatusOr<RepairParams> ValidateRepairRequest(const v1::RepairRequest& request);

// The signal decoded to float32, checked against the session geometry.
struct DecodedSignal {
  int32_t num_tokens = 0;
  std::vector<float> queries;     // [scoring layer][q_head][token][head_dim]
  std::vector<float> lse_active;  // empty or [scoring layer][q_head][token]
};
absl::StatusOr<DecodedSignal> DecodeSignal(const v1::RepairRequest& request,
                                           const storage::Geometry& geometry);

// Positions of a Promote: non-empty, unique, non-negative, at most kMaxPromotePositions.
absl::Status ValidatePromotePositions(const google::protobuf::RepeatedField<int64_t>& positions);

}  // namespace kvtier::server

#endif  // KVTIER_SERVER_VALIDATION_H_
