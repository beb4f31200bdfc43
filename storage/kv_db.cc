#include "storage/kv_db.h"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rocksdb/cache.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace kvtier::storage {
namespace {

rocksdb::Slice ToSlice(absl::string_view s) { return rocksdb::Slice(s.data(), s.size()); }

absl::Status FromRocks(const rocksdb::Status& s, absl::string_view what) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat("rocksdb ", what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(message);
  if (s.IsCorruption()) return absl::DataLossError(message);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) {
    return absl::UnavailableError(message);
  }
  return absl::InternalError(message);
}

using Clock = std::chrono::steady_clock;

}  // namespace

absl::StatusOr<Durability> ParseDurability(absl::string_view name, absl::string_view field) {
  if (name == "none") return Durability::kNone;
  if (name == "wal") return Durability::kWal;
  if (name == "sync") return Durability::kSync;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": unknown durability '", name, "' (none, wal or sync)"));
}

absl::string_view DurabilityName(Durability durability) {
  switch (durability) {
    case Durability::kNone:
      return "none";
    case Durability::kWal:
      return "wal";
    case Durability::kSync:
      return "sync";
  }
  return "?";
}

std::string SessionPrefix(absl::string_view tenant, absl::string_view session) {
  return absl::StrCat("s/", tenant, "/", session, "/");
}
std::string SessionStorageName(absl::string_view session, uint64_t incarnation) {
  // '~' cannot appear in a session id, so names of different ids never share a prefix.
  return absl::StrCat(session, absl::StrFormat("~%016x", incarnation));
}
std::string SessionRecordKey(absl::string_view tenant, absl::string_view session) {
  return absl::StrCat(kSessionRecordPrefix, tenant, "/", session);
}
std::string SegmentPrefix(absl::string_view tenant, absl::string_view session, uint32_t segment) {
  return absl::StrCat(SessionPrefix(tenant, session), absl::StrFormat("g/%08x/", segment));
}
std::string SegmentBaseKey(absl::string_view tenant, absl::string_view session, uint32_t segment) {
  return absl::StrCat(SegmentPrefix(tenant, session, segment), "b");
}
std::string SegmentPatchKey(absl::string_view tenant, absl::string_view session, uint32_t segment,
                            uint64_t seq) {
  return absl::StrCat(SegmentPrefix(tenant, session, segment), absl::StrFormat("p/%016x", seq));
}
std::string PrefixEnd(absl::string_view prefix) {
  // Drop trailing 0xff bytes and bump the last byte left; "" when every key is after.
  std::string end(prefix);
  while (!end.empty() && static_cast<unsigned char>(end.back()) == 0xff) end.pop_back();
  if (!end.empty()) end.back() = static_cast<char>(end.back() + 1);
  return end;
}

// ---- KvBatch ----

class KvBatch::Impl {
 public:
  rocksdb::WriteBatch batch;
};

KvBatch::KvBatch() : impl_(std::make_unique<Impl>()) {}
KvBatch::~KvBatch() = default;
KvBatch::KvBatch(KvBatch&&) noexcept = default;
KvBatch& KvBatch::operator=(KvBatch&&) noexcept = default;

void KvBatch::Put(absl::string_view key, absl::string_view value) {
  impl_->batch.Put(ToSlice(key), ToSlice(value));
}
void KvBatch::DeleteRange(absl::string_view begin, absl::string_view end) {
  impl_->batch.DeleteRange(ToSlice(begin), ToSlice(end));
}
void KvBatch::Delete(absl::string_view key) { impl_->batch.Delete(ToSlice(key)); }
bool KvBatch::empty() const { return impl_->batch.Count() == 0; }
size_t KvBatch::bytes() const { return impl_->batch.GetDataSize(); }

// ---- KvDb ----

class KvDb::Impl {
 public:
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::WriteOptions write_options;
};

KvDb::KvDb(std::unique_ptr<Impl> impl, Durability durability)
    : impl_(std::move(impl)), durability_(durability) {}

KvDb::~KvDb() {
  if (impl_ != nullptr && impl_->db != nullptr) {
    (void)Flush();
    (void)impl_->db->Close();
  }
}

absl::StatusOr<std::unique_ptr<KvDb>> KvDb::Open(const KvDbOptions& options) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_open_files = 512;
  o.keep_log_file_num = 4;
  // Segments are megabytes: keep them in blob files so compactions move only the small
  // index entries, and reclaim the space of overwritten and deleted segments.
  o.enable_blob_files = true;
  o.min_blob_size = 4096;
  o.blob_file_size = 256ull << 20;
  o.enable_blob_garbage_collection = true;
  o.write_buffer_size = 64ull << 20;
  o.max_write_buffer_number = 3;
  o.max_total_wal_size = 512ull << 20;
  const rocksdb::CompressionType compression =
      options.compression ? rocksdb::kLZ4Compression : rocksdb::kNoCompression;
  o.compression = compression;
  o.blob_compression_type = compression;
  o.IncreaseParallelism(2);
  rocksdb::BlockBasedTableOptions table;
  table.block_size = 64 << 10;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::DB* raw = nullptr;
  if (absl::Status s =
          FromRocks(rocksdb::DB::Open(o, options.path, &raw), absl::StrCat("open ", options.path));
      !s.ok()) {
    return s;
  }
  auto impl = std::make_unique<Impl>();
  impl->db.reset(raw);
  impl->write_options.disableWAL = options.durability == Durability::kNone;
  impl->write_options.sync = options.durability == Durability::kSync;
  return std::unique_ptr<KvDb>(new KvDb(std::move(impl), options.durability));
}

absl::Status KvDb::Write(KvBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  const auto start = Clock::now();
  const size_t bytes = batch.bytes();
  absl::Status s = FromRocks(impl_->db->Write(impl_->write_options, &batch.impl_->batch), "write");
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stats_.writes.fetch_add(1, std::memory_order_relaxed);
  stats_.write_bytes.fetch_add(bytes, std::memory_order_relaxed);
  if (!s.ok()) stats_.errors.fetch_add(1, std::memory_order_relaxed);
  if (observer_) observer_("write", seconds);
  return s;
}

absl::Status KvDb::Get(absl::string_view key, std::string* value) {
  const auto start = Clock::now();
  absl::Status s = FromRocks(impl_->db->Get(rocksdb::ReadOptions(), ToSlice(key), value), "read");
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  stats_.reads.fetch_add(1, std::memory_order_relaxed);
  if (s.ok()) stats_.read_bytes.fetch_add(value->size(), std::memory_order_relaxed);
  if (!s.ok() && !absl::IsNotFound(s)) stats_.errors.fetch_add(1, std::memory_order_relaxed);
  if (observer_) observer_("read", seconds);
  return s;
}

absl::Status KvDb::Scan(
    absl::string_view prefix,
    absl::FunctionRef<bool(absl::string_view key, absl::string_view value)> fn) {
  rocksdb::ReadOptions read;
  const std::string end = PrefixEnd(prefix);
  rocksdb::Slice upper(end);
  if (!end.empty()) read.iterate_upper_bound = &upper;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read));
  for (it->Seek(ToSlice(prefix)); it->Valid(); it->Next()) {
    const rocksdb::Slice k = it->key();
    const rocksdb::Slice v = it->value();
    stats_.reads.fetch_add(1, std::memory_order_relaxed);
    stats_.read_bytes.fetch_add(v.size(), std::memory_order_relaxed);
    if (!fn(absl::string_view(k.data(), k.size()), absl::string_view(v.data(), v.size()))) break;
  }
  return FromRocks(it->status(), "scan");
}

absl::StatusOr<int64_t> KvDb::DeleteSessionsUnless(
    absl::FunctionRef<bool(absl::string_view)> keep) {
  constexpr absl::string_view kSegments = "s/";
  std::vector<std::string> dead;
  {
    rocksdb::ReadOptions read;
    const std::string end = PrefixEnd(kSegments);
    rocksdb::Slice upper(end);
    read.iterate_upper_bound = &upper;
    std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator(read));
    for (it->Seek(ToSlice(kSegments)); it->Valid();) {
      // s/<tenant>/<storage name>/...: the session's prefix ends at the third '/'. A key
      // of another shape is not kvtier's (damage, a foreign writer): it is left alone, and
      // its range is never used, so it cannot cover a live session's keys.
      const absl::string_view key(it->key().data(), it->key().size());
      const size_t tenant_end = key.find('/', kSegments.size());
      const size_t name_end =
          tenant_end == absl::string_view::npos ? tenant_end : key.find('/', tenant_end + 1);
      if (name_end == absl::string_view::npos || tenant_end == kSegments.size() ||
          name_end == tenant_end + 1) {
        it->Seek(ToSlice(absl::StrCat(key, absl::string_view("\0", 1))));
        continue;
      }
      const std::string prefix(key.substr(0, name_end + 1));
      if (!keep(prefix)) dead.push_back(prefix);
      it->Seek(PrefixEnd(prefix));  // never empty: the prefix ends in '/'
    }
    if (absl::Status s = FromRocks(it->status(), "scan"); !s.ok()) return s;
  }
  KvBatch batch;
  for (const std::string& prefix : dead) batch.DeleteRange(prefix, PrefixEnd(prefix));
  if (absl::Status s = Write(batch); !s.ok()) return s;
  return static_cast<int64_t>(dead.size());
}

absl::Status KvDb::Clear() {
  KvBatch batch;
  batch.DeleteRange("", "\xff");
  return Write(batch);
}

absl::Status KvDb::Flush() { return FromRocks(impl_->db->Flush(rocksdb::FlushOptions()), "flush"); }

}  // namespace kvtier::storage
