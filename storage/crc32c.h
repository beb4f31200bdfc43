// CRC32C (Castagnoli) of byte ranges, for the checksums of segments and records stored on
// disk (DESIGN.md §3). Computed with the SSE4.2 crc32 instruction when the CPU has it:
// Debian's RocksDB is built portable, and its CRC32C is table-driven (1.3 GiB/s on the CI
// machine, 11 ms per 14 MiB segment). Otherwise RocksDB's implementation computes it.
// Neither Debian 12's Abseil (20220623, before absl/crc) nor any other Debian package
// offers a hardware CRC32C library, hence these few lines.
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

namespace internal {
// Whether Crc32c uses the SSE4.2 instruction on this CPU.
bool HardwareCrc32c();
// RocksDB's CRC32C of one range: the reference the tests compare the fast path with.
uint32_t RocksDbCrc32c(absl::Span<const std::byte> bytes);
}  // namespace internal

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_CRC32C_H_
