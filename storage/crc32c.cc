#include "storage/crc32c.h"

#include <string>

#include "rocksdb/file_checksum.h"

namespace kvtier::storage {

// RocksDB exports its CRC32C through the file-checksum API: a generator that is updated
// piece by piece and finalized to the standard CRC32C, big-endian.
class Crc32c::Impl {
 public:
  Impl() {
    static const std::shared_ptr<rocksdb::FileChecksumGenFactory> factory =
        rocksdb::GetFileChecksumGenCrc32cFactory();
    generator_ = factory->CreateFileChecksumGenerator(rocksdb::FileChecksumGenContext());
  }
  std::unique_ptr<rocksdb::FileChecksumGenerator> generator_;
};

Crc32c::Crc32c() : impl_(std::make_unique<Impl>()) {}
Crc32c::~Crc32c() = default;

void Crc32c::Update(const void* data, size_t size) {
  impl_->generator_->Update(static_cast<const char*>(data), size);
}

uint32_t Crc32c::Value() {
  impl_->generator_->Finalize();
  const std::string big_endian = impl_->generator_->GetChecksum();
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
