#include "gpu/internal/score_request_check.h"

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace kvtier::scorer::internal {
namespace {

// a * b, or -1 on overflow (inputs are non-negative).
int64_t MulOrMinusOne(int64_t a, int64_t b) {
  int64_t out;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &out)) return -1;
  return out;
}

absl::Status Positive(const char* field, int32_t value) {
  if (value > 0) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(field, " must be positive, got ", value));
}

}  // namespace

absl::Status CheckScoreRequest(const ScoreRequest& request, size_t scores_size) {
  const ScoreShape& shape = request.shape;
  for (absl::Status s : {Positive("shape.num_layers", shape.num_layers),
                         Positive("shape.num_q_heads", shape.num_q_heads),
                         Positive("shape.num_kv_heads", shape.num_kv_heads),
                         Positive("shape.head_dim", shape.head_dim),
                         Positive("shape.num_tokens", shape.num_tokens)}) {
    if (!s.ok()) return s;
  }
  if (shape.num_q_heads % shape.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("shape.num_q_heads (", shape.num_q_heads,
                                                   ") must be a multiple of shape.num_kv_heads (",
                                                   shape.num_kv_heads, ")"));
  }
  switch (shape.key_type) {
    case KeyType::kFloat32:
    case KeyType::kFloat16:
    case KeyType::kBFloat16:
      break;
    default:
      return absl::InvalidArgumentError("shape.key_type is not a known KeyType");
  }
  if (request.block_capacity <= 0 || request.block_capacity % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "block_capacity must be a positive multiple of 16, got ", request.block_capacity));
  }
  const int64_t lse_size =
      MulOrMinusOne(MulOrMinusOne(shape.num_layers, shape.num_q_heads), shape.num_tokens);
  const int64_t query_size = MulOrMinusOne(lse_size, shape.head_dim);
  if (query_size < 0 || static_cast<int64_t>(request.queries.size()) != query_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("queries has ", request.queries.size(),
                     " floats; the shape needs layers*q_heads*tokens*head_dim = ", query_size));
  }
  if (!request.lse_active.empty() && static_cast<int64_t>(request.lse_active.size()) != lse_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("lse_active has ", request.lse_active.size(),
                     " floats; it must be empty or layers*q_heads*tokens = ", lse_size));
  }
  if (!request.lse_fixed.empty() && static_cast<int64_t>(request.lse_fixed.size()) != lse_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("lse_fixed has ", request.lse_fixed.size(),
                     " entries; it must be empty or layers*q_heads*tokens = ", lse_size));
  }
  if (!request.lse_out.empty() && static_cast<int64_t>(request.lse_out.size()) != lse_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("lse_out has ", request.lse_out.size(),
                     " entries; it must be empty or layers*q_heads*tokens = ", lse_size));
  }
  const int64_t slots =
      MulOrMinusOne(static_cast<int64_t>(request.blocks.size()), request.block_capacity);
  if (slots < 0 || static_cast<uint64_t>(slots) != scores_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scores has ", scores_size, " entries; it must be blocks*block_capacity = ", slots));
  }
  for (size_t b = 0; b < request.blocks.size(); ++b) {
    const KeyBlock& block = request.blocks[b];
    if (block.rows < 0 || block.rows > request.block_capacity) {
      return absl::InvalidArgumentError(
          absl::StrCat("blocks[", b, "].rows = ", block.rows, " is outside [0, block_capacity]"));
    }
    if (block.rows > 0 && block.keys == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("blocks[", b, "].keys is null"));
    }
    if (block.rows > 0 && block.valid == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("blocks[", b, "].valid is null"));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvtier::scorer::internal
