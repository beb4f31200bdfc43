// The repair scorer: scores offloaded rows against a next-turn signal (DESIGN.md §1).
//
//   s_i = q . k_i / sqrt(D)
//   p_i = exp(s_i - logsumexp(lse_active ∪ {s_j over all candidate rows j}))
//   a_i = mean over scoring layers of (mean over query heads of (max over tokens of p_i))
//
// Query head h reads KV head h / (num_q_heads / num_kv_heads). Without lse_active the
// softmax spans the candidate rows only. The CPU implementation is always built; a CUDA
// implementation of the same interface comes later. Nothing here knows about gRPC or
// about how the storage keeps its rows beyond the KeyBlock layout below.
#ifndef KVTIER_GPU_SCORER_H_
#define KVTIER_GPU_SCORER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace kvtier::scorer {

// Element type of stored keys.
enum class KeyType { kFloat32, kFloat16, kBFloat16 };

// Size in bytes of one element of `type`.
int KeyTypeSize(KeyType type);

struct ScoreShape {
  int32_t num_layers = 0;   // scoring layers only
  int32_t num_q_heads = 0;  // a multiple of num_kv_heads
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  int32_t num_tokens = 0;  // T, signal tokens
  KeyType key_type = KeyType::kFloat32;
};

// Keys of up to `capacity` rows (capacity is ScoreRequest::block_capacity), laid out for
// streaming: [scoring layer][kv_head][head_dim][capacity] of key_type, i.e. for a given
// (layer, kv head, dim) the rows are contiguous. Slots [rows, capacity) hold garbage.
struct KeyBlock {
  const void* keys = nullptr;
  int32_t rows = 0;                // slots in use: [0, rows)
  const uint8_t* valid = nullptr;  // [rows]; nonzero marks a candidate row. Never null.
  // Optional key sketches for the fast mode (gpu/sketch.h): codes [scoring layer][kv_head]
  // [head_dim / 4 rounded up][capacity][4] and scales [scoring layer][kv_head][capacity].
  // Score ignores them.
  const uint8_t* sketch_codes = nullptr;
  const float* sketch_scales = nullptr;
};

struct ScoreRequest {
  ScoreShape shape;
  int32_t block_capacity = 0;  // slots per block, a multiple of 16
  absl::Span<const KeyBlock> blocks;
  // [scoring layer][q_head][token][head_dim] float32.
  absl::Span<const float> queries;
  // Empty, or [scoring layer][q_head][token] float32.
  absl::Span<const float> lse_active;
  // Empty, or [scoring layer][q_head][token]: the softmax normalizer to use as it is (the
  // fast mode's estimate over the whole session, docs/FAST_MODE.md). When set, the
  // normalizer is not computed from the blocks and lse_active is ignored.
  absl::Span<const double> lse_fixed;
  // Empty, or [scoring layer][q_head][token]: receives the normalizer that was used
  // (lse_fixed, or logsumexp of lse_active and every candidate's s).
  absl::Span<double> lse_out;
  // Polled between units of work; when it returns true, Score stops and returns
  // DEADLINE_EXCEEDED. May be empty.
  std::function<bool()> should_stop;
};

// Computes a_i for every slot. Thread-safe: one Scorer may serve concurrent calls.
class Scorer {
 public:
  virtual ~Scorer() = default;

  // Short name exported in metrics and summaries ("cpu", "cuda").
  virtual std::string_view name() const = 0;

  // Writes a_i for slot r of block b to scores[b * block_capacity + r]. Slots that are not
  // valid candidates get -infinity. `scores` must hold blocks.size() * block_capacity
  // entries. Returns INVALID_ARGUMENT when spans do not match the shape, DEADLINE_EXCEEDED
  // when should_stop fired. With no candidates at all, every slot is -infinity and the
  // result is OK.
  virtual absl::Status Score(const ScoreRequest& request, absl::Span<double> scores) = 0;

  // The fast mode's first pass (docs/FAST_MODE.md): from the blocks' sketches, writes a
  // proxy of every slot's score to proxy[b * block_capacity + r] (-infinity for slots that
  // are not candidates); higher ranks first. INVALID_ARGUMENT when a block with candidates
  // has no sketch or spans do not match; DEADLINE_EXCEEDED when should_stop fired.
  virtual absl::Status FirstPass(const ScoreRequest& request, absl::Span<float> proxy) = 0;
};

// The CPU scorer: vectorized (AVX-512, AVX2 or portable, chosen at run time) and spread
// over `num_threads` threads (0: one per hardware thread). Identical key rows always get
// bit-identical scores, so ties are broken only by the ranking rules.
std::unique_ptr<Scorer> MakeCpuScorer(int num_threads = 0);

// A plain float64 implementation of the same math: slow, obviously correct, used by tests
// as the reference for the fast paths.
absl::Status ReferenceScore(const ScoreRequest& request, absl::Span<double> scores);

// Converts `count` elements of fp16 / bf16 / fp32 little-endian bytes to float32.
void ConvertToFloat32(KeyType type, const void* src, int64_t count, float* dst);

}  // namespace kvtier::scorer

#endif  // KVTIER_GPU_SCORER_H_
