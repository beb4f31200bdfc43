#include "client/src/payload_assembler.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvtier::client_internal {

PayloadAssembler::PayloadAssembler(const RowGeometry& geometry, int32_t expected_chunks,
                                   uint64_t expected_bytes, RowPayload* out)
    : geometry_(geometry),
      expected_chunks_(expected_chunks),
      expected_bytes_(expected_bytes),
      out_(out) {}

absl::Status PayloadAssembler::Start() {
  const size_t rows = out_->positions.size();
  index_.reserve(rows);
  for (size_t i = 0; i < rows; ++i) {
    if (!index_.emplace(out_->positions[i], i).second) {
      return absl::InternalError(
          absl::StrCat("summary: position ", out_->positions[i], " appears twice"));
    }
  }
  if (expected_chunks_ < 0) {
    return absl::InternalError(absl::StrCat("summary: payload_chunks ", expected_chunks_));
  }
  if (expected_chunks_ == 0 && expected_bytes_ == 0) return absl::OkStatus();  // positions only
  const uint64_t total =
      2 * static_cast<uint64_t>(geometry_.num_layers) * rows * geometry_.LayerRowBytes();
  if (expected_bytes_ != total) {
    return absl::InternalError(absl::StrCat("summary: payload_bytes ", expected_bytes_, " but ",
                                            rows, " rows of this geometry take ", total));
  }
  out_->keys.resize(total / 2);
  out_->values.resize(total / 2);
  seen_.assign(static_cast<size_t>(geometry_.num_layers) * rows, false);
  return absl::OkStatus();
}

absl::Status PayloadAssembler::Add(const v1::PayloadChunk& chunk) {
  const size_t rows = out_->positions.size();
  if (++chunks_ > expected_chunks_) {
    return absl::InternalError(
        absl::StrCat("payload: more than the announced ", expected_chunks_, " chunks"));
  }
  const int32_t lb = chunk.layer_begin();
  const int32_t le = chunk.layer_end();
  if (lb < 0 || le > geometry_.num_layers || lb >= le) {
    return absl::InternalError(absl::StrCat("payload chunk ", chunks_ - 1, ": layer range [", lb,
                                            ", ", le, ") outside [0, ", geometry_.num_layers, ")"));
  }
  const int n = chunk.positions_size();
  if (n == 0) {
    return absl::InternalError(absl::StrCat("payload chunk ", chunks_ - 1, ": no positions"));
  }
  auto first = index_.find(chunk.positions(0));
  if (first == index_.end()) {
    return absl::InternalError(absl::StrCat("payload chunk ", chunks_ - 1, ": position ",
                                            chunk.positions(0), " was not announced"));
  }
  const size_t r0 = first->second;
  if (r0 + static_cast<size_t>(n) > rows) {
    return absl::InternalError(
        absl::StrCat("payload chunk ", chunks_ - 1, ": positions run past the announced rows"));
  }
  for (int i = 1; i < n; ++i) {
    if (out_->positions[r0 + static_cast<size_t>(i)] != chunk.positions(i)) {
      return absl::InternalError(absl::StrCat("payload chunk ", chunks_ - 1,
                                              ": positions are not a contiguous run of the order"));
    }
  }
  const size_t lrb = geometry_.LayerRowBytes();
  const size_t run = static_cast<size_t>(n) * lrb;
  const size_t expected = run * static_cast<size_t>(le - lb);
  if (chunk.keys().size() != expected || chunk.values().size() != expected) {
    return absl::InternalError(absl::StrCat("payload chunk ", chunks_ - 1, ": keys ",
                                            chunk.keys().size(), " / values ",
                                            chunk.values().size(), " bytes, expected ", expected));
  }
  for (int32_t l = lb; l < le; ++l) {
    for (size_t r = r0; r < r0 + static_cast<size_t>(n); ++r) {
      const size_t bit = static_cast<size_t>(l) * rows + r;
      if (seen_[bit]) {
        return absl::InternalError(absl::StrCat("payload chunk ", chunks_ - 1, ": layer ", l,
                                                " of position ", out_->positions[r],
                                                " sent twice"));
      }
      seen_[bit] = true;
    }
    const size_t src = static_cast<size_t>(l - lb) * run;
    const size_t dst = (static_cast<size_t>(l) * rows + r0) * lrb;
    std::memcpy(out_->keys.data() + dst, chunk.keys().data() + src, run);
    std::memcpy(out_->values.data() + dst, chunk.values().data() + src, run);
  }
  bytes_ += 2 * expected;
  return absl::OkStatus();
}

absl::Status PayloadAssembler::Finish() const {
  if (chunks_ != expected_chunks_) {
    return absl::InternalError(
        absl::StrCat("payload: ", chunks_, " chunks received, ", expected_chunks_, " announced"));
  }
  if (bytes_ != expected_bytes_) {
    return absl::InternalError(
        absl::StrCat("payload: ", bytes_, " bytes received, ", expected_bytes_, " announced"));
  }
  // Chunk and byte counts match and no row-layer repeated, so every row-layer arrived.
  return absl::OkStatus();
}

}  // namespace kvtier::client_internal
