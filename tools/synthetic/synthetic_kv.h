// Synthetic KV rows for demos, benchmarks and tests: fp16 keys and values of a compressed
// cache's evicted rows (positions with gaps), with planted "needle" spans whose keys point
// along a per-needle direction, and next-turn signals aimed at one needle.
//
// Everything is a pure function of the options and (layer, position), so any subset of rows
// can be regenerated bit for bit (to re-offload rows, or to check a returned payload).
#ifndef KVTIER_TOOLS_SYNTHETIC_SYNTHETIC_KV_H_
#define KVTIER_TOOLS_SYNTHETIC_SYNTHETIC_KV_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/types/span.h"

namespace kvtier::synthetic {

// IEEE binary16 bits of `value`, rounded to nearest even (overflow gives infinity).
uint16_t FloatToHalf(float value);

struct SyntheticOptions {
  int32_t num_layers = 28;
  int32_t num_q_heads = 28;
  int32_t num_kv_heads = 4;
  int32_t head_dim = 128;
  int64_t num_rows = 32768;
  // Needle spans of consecutive positions; num_needles <= head_dim (their directions are
  // orthogonal).
  int32_t num_needles = 4;
  int32_t needle_min_rows = 8;
  int32_t needle_max_rows = 16;
  // Before each row (outside needles) a gap of 1..max_gap positions with this probability.
  double gap_probability = 0.1;
  int32_t max_gap = 8;
  uint64_t seed = 1;
  // Ordinary key elements are ~N(0, 1). A needle key is 0.5 * noise plus this times
  // sqrt(head_dim) along its needle's unit direction, in every layer and KV head.
  float needle_key_scale = 2.0f;
};

struct Needle {
  size_t first_row = 0;  // index into positions()
  size_t num_rows = 0;
  std::vector<int64_t> positions;  // consecutive
};

// Immutable after construction; thread-safe for concurrent const use.
class SyntheticKv {
 public:
  explicit SyntheticKv(const SyntheticOptions& options);

  const SyntheticOptions& options() const { return options_; }
  // Ascending positions of the rows (row index -> position).
  const std::vector<int64_t>& positions() const { return positions_; }
  const std::vector<Needle>& needles() const { return needles_; }
  // Row index of `position`, or -1 when it is not a row.
  int64_t RowOf(int64_t position) const;

  // fp16 elements of one row in one layer: num_kv_heads * head_dim.
  size_t LayerRowElements() const {
    return static_cast<size_t>(options_.num_kv_heads) * static_cast<size_t>(options_.head_dim);
  }

  // Writes fp16 keys (values) of `rows` (row indices) for layers [layer_begin, layer_end)
  // into `out`, laid out [layer][row][kv_head][head_dim]. `out` must hold exactly
  // (layer_end - layer_begin) * rows.size() * LayerRowElements() elements.
  void FillKeys(int32_t layer_begin, int32_t layer_end, absl::Span<const size_t> rows,
                absl::Span<uint16_t> out) const;
  void FillValues(int32_t layer_begin, int32_t layer_end, absl::Span<const size_t> rows,
                  absl::Span<uint16_t> out) const;

  // Float32 queries for every layer: [layer][q_head][token][head_dim], each
  // query_scale * sqrt(head_dim) along needle `needle`'s direction plus N(0, noise^2).
  std::vector<float> Queries(int32_t needle, int32_t num_tokens, float query_scale, float noise,
                             uint64_t seed) const;

 private:
  void FillRowKeys(int32_t layer, size_t row, uint16_t* out) const;

  const SyntheticOptions options_;
  std::vector<int64_t> positions_;
  std::vector<Needle> needles_;
  std::vector<int32_t> needle_of_row_;            // -1 outside needles
  std::vector<std::vector<float>> directions_;    // [needle][head_dim], unit length
  absl::flat_hash_map<int64_t, int64_t> row_of_;  // position -> row
};

// 28 layers, 28 query heads, 4 KV heads, head_dim 128 (a 7B-class GQA model), 4 needles.
SyntheticOptions SevenBClassOptions(int64_t rows, uint64_t seed);

// Scoring layers of the benchmarks' sessions at that shape: a score index over 4 of the 28
// layers, so that host RAM mostly holds payloads.
inline constexpr int32_t kSevenBIndexLayers[] = {0, 9, 18, 27};

}  // namespace kvtier::synthetic

#endif  // KVTIER_TOOLS_SYNTHETIC_SYNTHETIC_KV_H_
