// CRC32C (Castagnoli) of byte ranges, for the checksums of segments and records stored on
// disk (DESIGN.md §3). Computed by RocksDB's hardware-accelerated implementation.
#ifndef KVTIER_STORAGE_CRC32C_H_
#define KVTIER_STORAGE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/types/span.h"

namespace kvtier::storage {

// Incremental CRC32C: Update over pieces, then Value. The standard CRC32C (iSCSI) value,
// e.g. 0xE3069283 for "123456789". Not thread-safe; cheap to create.
class Crc32c {
 public:
  Crc32c();
  ~Crc32c();
  Crc32c(const Crc32c&) = delete;
  Crc32c& operator=(const Crc32c&) = delete;

  void Update(const void* data, size_t size);
  // The checksum of everything passed to Update. Call once.
  uint32_t Value();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// CRC32C of one range.
uint32_t ComputeCrc32c(absl::Span<const std::byte> bytes);

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_CRC32C_H_
