#include "storage/crc32c.h"

#include <cstring>
#include <string>

#include "rocksdb/file_checksum.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace kvtier::storage {
namespace {

#if defined(__x86_64__)
// The SSE4.2 crc32 instruction computes CRC32C (Castagnoli) directly: 8 bytes per
// instruction, about 5x the table-driven code of a portable RocksDB build on the CI kind.
__attribute__((target("sse4.2"))) uint32_t ExtendSse42(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    c = _mm_crc32_u64(c, word);
  }
  auto c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = _mm_crc32_u8(c32, *p);
  return ~c32;
}
#endif

}  // namespace

namespace internal {

bool HardwareCrc32c() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("sse4.2");
  return has;
#else
  return false;
#endif
}

uint32_t RocksDbCrc32c(absl::Span<const std::byte> bytes) {
  // RocksDB exports its CRC32C through the file-checksum API: a generator that is updated
  // piece by piece and finalized to the standard CRC32C, big-endian.
  static const std::shared_ptr<rocksdb::FileChecksumGenFactory> factory =
      rocksdb::GetFileChecksumGenCrc32cFactory();
  std::unique_ptr<rocksdb::FileChecksumGenerator> generator =
      factory->CreateFileChecksumGenerator(rocksdb::FileChecksumGenContext());
  generator->Update(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  generator->Finalize();
  const std::string big_endian = generator->GetChecksum();
  uint32_t value = 0;
  for (const char c : big_endian) value = (value << 8) | static_cast<uint8_t>(c);
  return value;
}

}  // namespace internal

// With SSE4.2 the state is the CRC so far; without it, RocksDB's generator.
class Crc32c::Impl {
 public:
  Impl() {
    if (!internal::HardwareCrc32c()) {
      static const std::shared_ptr<rocksdb::FileChecksumGenFactory> factory =
          rocksdb::GetFileChecksumGenCrc32cFactory();
      generator = factory->CreateFileChecksumGenerator(rocksdb::FileChecksumGenContext());
    }
  }
  uint32_t crc = 0;
  std::unique_ptr<rocksdb::FileChecksumGenerator> generator;
};

Crc32c::Crc32c() : impl_(std::make_unique<Impl>()) {}
Crc32c::~Crc32c() = default;

void Crc32c::Update(const void* data, size_t size) {
  if (impl_->generator != nullptr) {
    impl_->generator->Update(static_cast<const char*>(data), size);
    return;
  }
#if defined(__x86_64__)
  impl_->crc = ExtendSse42(impl_->crc, static_cast<const uint8_t*>(data), size);
#endif
}

uint32_t Crc32c::Value() {
  if (impl_->generator == nullptr) return impl_->crc;
  impl_->generator->Finalize();
  const std::string big_endian = impl_->generator->GetChecksum();
  uint32_t value = 0;
  for (const char c : big_endian) value = (value << 8) | static_cast<uint8_t>(c);
  return value;
}

uint32_t ComputeCrc32c(absl::Span<const std::byte> bytes) {
  Crc32c crc;
  crc.Update(bytes.data(), bytes.size());
  return crc.Value();
}

}  // namespace kvtier::storage
