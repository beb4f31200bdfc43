#include "server/validation.h"

#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "gpu/scorer.h"

namespace kvtier::server {
namespace {

storage::DType DTypeFromProto(v1::DType dtype) {
  switch (dtype) {
    case v1::DTYPE_FLOAT16:
      return storage::DType::kFloat16;
    case v1::DTYPE_BFLOAT16:
      return storage::DType::kBFloat16;
    case v1::DTYPE_FLOAT32:
      return storage::DType::kFloat32;
    default:
      return storage::DType::kUnspecified;
  }
}

v1::DType DTypeToProto(storage::DType dtype) {
  switch (dtype) {
    case storage::DType::kFloat16:
      return v1::DTYPE_FLOAT16;
    case storage::DType::kBFloat16:
      return v1::DTYPE_BFLOAT16;
    case storage::DType::kFloat32:
      return v1::DTYPE_FLOAT32;
    default:
      return v1::DTYPE_UNSPECIFIED;
  }
}

bool IsIdChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

absl::Status ValidateIdString(absl::string_view field, absl::string_view value, size_t max_len,
                              bool allow_empty) {
  if (value.empty()) {
    if (allow_empty) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  }
  if (value.size() > max_len) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": longer than ", max_len, " characters"));
  }
  for (char c : value) {
    if (!IsIdChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": only [A-Za-z0-9._-] are allowed"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckBurst(absl::string_view field, int32_t value) {
  if (value < 0) return absl::InvalidArgumentError(absl::StrCat(field, ": must be >= 0"));
  if (value > kMaxBurst) {
    return absl::OutOfRangeError(absl::StrCat(field, ": ", value, " exceeds ", kMaxBurst));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<storage::Geometry> GeometryFromProto(const v1::Geometry& proto) {
  storage::Geometry g;
  g.num_layers = proto.num_layers();
  g.num_q_heads = proto.num_q_heads();
  g.num_kv_heads = proto.num_kv_heads();
  g.head_dim = proto.head_dim();
  g.dtype = DTypeFromProto(proto.dtype());
  g.scoring_layers.assign(proto.scoring_layers().begin(), proto.scoring_layers().end());
  g.index_only = proto.index_only();
  if (absl::Status s = storage::ValidateAndNormalizeGeometry(g); !s.ok()) return s;
  return g;
}

void GeometryToProto(const storage::Geometry& geometry, v1::Geometry* proto) {
  proto->set_num_layers(geometry.num_layers);
  proto->set_num_q_heads(geometry.num_q_heads);
  proto->set_num_kv_heads(geometry.num_kv_heads);
  proto->set_head_dim(geometry.head_dim);
  proto->set_dtype(DTypeToProto(geometry.dtype));
  proto->mutable_scoring_layers()->Assign(geometry.scoring_layers.begin(),
                                          geometry.scoring_layers.end());
  proto->set_index_only(geometry.index_only);
}

absl::Status ValidateSessionId(absl::string_view field, absl::string_view id, bool allow_empty) {
  return ValidateIdString(field, id, 128, allow_empty);
}

absl::Status ValidateTenant(absl::string_view tenant) {
  return ValidateIdString("tenant", tenant, 64, /*allow_empty=*/true);
}

absl::StatusOr<RepairParams> ValidateRepairRequest(const v1::RepairRequest& request) {
  if (absl::Status s = ValidateSessionId("session_id", request.session_id(), false); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateIdString("request_id", request.request_id(), 128, true); !s.ok()) {
    return s;
  }
  RepairParams params;
  if (request.budget() < 1) {
    return absl::InvalidArgumentError(absl::StrCat("budget: must be >= 1, got ", request.budget()));
  }
  if (request.budget() > kMaxBudget) {
    return absl::OutOfRangeError(
        absl::StrCat("budget: ", request.budget(), " exceeds the maximum ", kMaxBudget));
  }
  params.pack.budget = request.budget();
  params.pack.burst_left = request.has_burst_left() ? request.burst_left() : kDefaultBurstLeft;
  params.pack.burst_right = request.has_burst_right() ? request.burst_right() : kDefaultBurstRight;
  if (absl::Status s = CheckBurst("burst_left", params.pack.burst_left); !s.ok()) return s;
  if (absl::Status s = CheckBurst("burst_right", params.pack.burst_right); !s.ok()) return s;
  params.pack.seed = request.seed();
  switch (request.selector()) {
    case v1::SELECTOR_UNSPECIFIED:
    case v1::SELECTOR_REPAIRKV:
      params.selector = scorer::SelectorKind::kRepairKv;
      break;
    case v1::SELECTOR_OLDEST:
      params.selector = scorer::SelectorKind::kOldest;
      break;
    case v1::SELECTOR_RANDOM:
      params.selector = scorer::SelectorKind::kRandom;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("selector: unknown value ", static_cast<int>(request.selector())));
  }
  switch (request.scoring_mode()) {
    case v1::SCORING_MODE_AUTO:
      params.scoring = ScoringMode::kAuto;
      break;
    case v1::SCORING_MODE_EXACT:
      params.scoring = ScoringMode::kExact;
      break;
    case v1::SCORING_MODE_FAST:
      params.scoring = ScoringMode::kFast;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("scoring_mode: unknown value ", static_cast<int>(request.scoring_mode())));
  }
  switch (request.return_mode()) {
    case v1::RETURN_MODE_UNSPECIFIED:
    case v1::RETURN_MODE_PAYLOAD:
      params.positions_only = false;
      break;
    case v1::RETURN_MODE_POSITIONS:
      params.positions_only = true;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("return_mode: unknown value ", static_cast<int>(request.return_mode())));
  }
  return params;
}

absl::StatusOr<DecodedSignal> DecodeSignal(const v1::RepairRequest& request,
                                           const storage::Geometry& geometry) {
  if (!request.has_signal()) {
    return absl::InvalidArgumentError("signal: required by SELECTOR_REPAIRKV");
  }
  const v1::Signal& signal = request.signal();
  if (signal.num_tokens() < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("signal.num_tokens: must be >= 1, got ", signal.num_tokens()));
  }
  if (signal.num_tokens() > kMaxSignalTokens) {
    return absl::OutOfRangeError(absl::StrCat("signal.num_tokens: ", signal.num_tokens(),
                                              " exceeds the maximum ", kMaxSignalTokens));
  }
  const int64_t query_vectors = int64_t{geometry.num_q_heads} * signal.num_tokens();
  if (query_vectors > kMaxQueryVectors) {
    return absl::OutOfRangeError(absl::StrCat(
        "signal.num_tokens: ", signal.num_tokens(), " tokens x ", geometry.num_q_heads,
        " q heads = ", query_vectors, " query vectors exceeds the maximum ", kMaxQueryVectors));
  }
  scorer::KeyType query_type;
  switch (signal.query_dtype()) {
    case v1::DTYPE_UNSPECIFIED:
    case v1::DTYPE_FLOAT32:
      query_type = scorer::KeyType::kFloat32;
      break;
    case v1::DTYPE_FLOAT16:
      query_type = scorer::KeyType::kFloat16;
      break;
    case v1::DTYPE_BFLOAT16:
      query_type = scorer::KeyType::kBFloat16;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("signal.query_dtype: unknown value ",
                                                     static_cast<int>(signal.query_dtype())));
  }
  const int64_t layers = static_cast<int64_t>(geometry.scoring_layers.size());
  const int64_t lse_count = layers * geometry.num_q_heads * signal.num_tokens();
  const int64_t query_count = lse_count * geometry.head_dim;
  const int64_t expected_bytes = query_count * scorer::KeyTypeSize(query_type);
  if (static_cast<int64_t>(signal.queries().size()) != expected_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "signal.queries: expected ", expected_bytes, " bytes ([", layers, " scoring layers][",
        geometry.num_q_heads, " q heads][", signal.num_tokens(), " tokens][", geometry.head_dim,
        "] x ", scorer::KeyTypeSize(query_type), " bytes), got ", signal.queries().size()));
  }
  if (!signal.lse_active().empty() &&
      static_cast<int64_t>(signal.lse_active().size()) != lse_count * 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "signal.lse_active: expected empty or ", lse_count * 4,
        " bytes (float32 [scoring layer][q head][token]), got ", signal.lse_active().size()));
  }
  DecodedSignal decoded;
  decoded.num_tokens = signal.num_tokens();
  decoded.queries.resize(query_count);
  scorer::ConvertToFloat32(query_type, signal.queries().data(), query_count,
                           decoded.queries.data());
  for (int64_t i = 0; i < query_count; ++i) {
    if (!std::isfinite(decoded.queries[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("signal.queries: element ", i, " is not finite"));
    }
  }
  if (!signal.lse_active().empty()) {
    decoded.lse_active.resize(lse_count);
    scorer::ConvertToFloat32(scorer::KeyType::kFloat32, signal.lse_active().data(), lse_count,
                             decoded.lse_active.data());
    for (int64_t i = 0; i < lse_count; ++i) {
      // -inf is meaningful (an empty active cache); NaN and +inf are not.
      const float v = decoded.lse_active[i];
      if (std::isnan(v) || (std::isinf(v) && v > 0)) {
        return absl::InvalidArgumentError(
            absl::StrCat("signal.lse_active: element ", i, " is NaN or +inf"));
      }
    }
  }
  return decoded;
}

absl::Status ValidatePromotePositions(const google::protobuf::RepeatedField<int64_t>& positions) {
  if (positions.empty()) return absl::InvalidArgumentError("positions: empty");
  if (positions.size() > kMaxPromotePositions) {
    return absl::OutOfRangeError(absl::StrCat("positions: ", positions.size(),
                                              " exceeds the maximum ", kMaxPromotePositions));
  }
  absl::flat_hash_set<int64_t> seen;
  seen.reserve(positions.size());
  for (int i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("positions[", i, "]: ", positions[i], " is negative"));
    }
    if (!seen.insert(positions[i]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("positions[", i, "]: ", positions[i], " is duplicated"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvtier::server
