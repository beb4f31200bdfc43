// KvDb: the NVMe tier's RocksDB database (DESIGN.md §3). Keys are
//   m/<tenant>/<session>                        session record (recovery scans m/)
//   s/<tenant>/<session>/g/<segment:08x>/b      segment base image
//   s/<tenant>/<session>/g/<segment:08x>/p/<seq:016x>  segment patch
// ('/' never appears in tenant or session ids). Values carry their own CRC32C. This is the
// only file of kvtier that includes RocksDB; callers see KvBatch and KvDb.
#ifndef KVTIER_STORAGE_KV_DB_H_
#define KVTIER_STORAGE_KV_DB_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kvtier::storage {

// What an acknowledged write survives (docs/STORAGE.md):
//   kNone: WAL off, segments reach RocksDB only when demoted; a restart starts empty.
//   kWal:  every acknowledged change is in the WAL before the ack; survives the process
//          being killed (not a power loss: the WAL is in the page cache).
//   kSync: as kWal, and the WAL is fsync'd before the ack; survives a power loss.
enum class Durability { kNone, kWal, kSync };

// "none", "wal" or "sync"; INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<Durability> ParseDurability(absl::string_view name, absl::string_view field);
absl::string_view DurabilityName(Durability durability);

struct KvDbOptions {
  std::string path;  // directory, created if missing
  Durability durability = Durability::kWal;
  uint64_t block_cache_bytes = 64ull << 20;
  // Raw KV compresses poorly; quantized cold formats even less. Off by default.
  bool compression = false;
};

// Key builders. Segment keys name a session by its storage name (SessionStorageName), the
// session record by its id.
inline constexpr char kSessionRecordPrefix[] = "m/";
std::string SessionStorageName(absl::string_view session, uint64_t incarnation);
std::string SessionPrefix(absl::string_view tenant, absl::string_view session);
std::string SessionRecordKey(absl::string_view tenant, absl::string_view session);
std::string SegmentPrefix(absl::string_view tenant, absl::string_view session, uint32_t segment);
std::string SegmentBaseKey(absl::string_view tenant, absl::string_view session, uint32_t segment);
std::string SegmentPatchKey(absl::string_view tenant, absl::string_view session, uint32_t segment,
                            uint64_t seq);
// The smallest key after every key that starts with `prefix`; "" when there is none
// (an empty prefix or one of 0xff bytes only): scan to the end.
std::string PrefixEnd(absl::string_view prefix);

// A set of changes applied atomically by KvDb::Write. Not thread-safe.
class KvBatch {
 public:
  KvBatch();
  ~KvBatch();
  KvBatch(KvBatch&&) noexcept;
  KvBatch& operator=(KvBatch&&) noexcept;

  void Put(absl::string_view key, absl::string_view value);
  // Deletes every key in [begin, end).
  void DeleteRange(absl::string_view begin, absl::string_view end);
  void Delete(absl::string_view key);
  bool empty() const;
  size_t bytes() const;  // approximate size of the batch

 private:
  friend class KvDb;
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Latency and volume of the database operations, for metrics. Thread-safe.
struct KvDbStats {
  std::atomic<uint64_t> writes{0};
  std::atomic<uint64_t> write_bytes{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> read_bytes{0};
  std::atomic<uint64_t> errors{0};
};

// Thread-safe (RocksDB is).
class KvDb {
 public:
  // Opens (creating if missing) the database. INTERNAL / UNAVAILABLE with RocksDB's message
  // when it cannot be opened (e.g. another kvtierd holds its lock).
  static absl::StatusOr<std::unique_ptr<KvDb>> Open(const KvDbOptions& options);
  ~KvDb();  // flushes memtables so that a clean shutdown leaves no WAL to replay

  Durability durability() const { return durability_; }

  // Applies `batch` atomically with the durability of the database: an OK return means
  // the batch survives what the durability mode promises.
  absl::Status Write(KvBatch& batch);

  // NOT_FOUND when the key is absent.
  absl::Status Get(absl::string_view key, std::string* value);

  // Calls `fn` for every key starting with `prefix`, in key order, until it returns false.
  absl::Status Scan(absl::string_view prefix,
                    absl::FunctionRef<bool(absl::string_view key, absl::string_view value)> fn);

  // Deletes the segment keys of every session whose prefix (SessionPrefix) `keep` rejects:
  // records left by a session whose deletion a crash interrupted. One seek per session, so
  // it reads one value per session, not every segment. Returns how many sessions' keys
  // went.
  absl::StatusOr<int64_t> DeleteSessionsUnless(absl::FunctionRef<bool(absl::string_view)> keep);

  // Deletes everything (used at start in durability none: nothing is recovered).
  absl::Status Clear();

  // Flushes memtables to files (clean shutdown).
  absl::Status Flush();

  // Observer of each operation's latency, e.g. a metrics histogram; op is "write" or "read".
  void set_latency_observer(std::function<void(const char* op, double seconds)> observer) {
    observer_ = std::move(observer);
  }
  const KvDbStats& stats() const { return stats_; }

 private:
  class Impl;
  KvDb(std::unique_ptr<Impl> impl, Durability durability);

  std::unique_ptr<Impl> impl_;
  const Durability durability_;
  std::function<void(const char*, double)> observer_;
  KvDbStats stats_;
};

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_KV_DB_H_
