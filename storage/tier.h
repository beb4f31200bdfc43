// Byte accounting of a storage tier (DESIGN.md §3): host RAM, NVMe (RocksDB) and HBM.
#ifndef KVTIER_STORAGE_TIER_H_
#define KVTIER_STORAGE_TIER_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace kvtier::storage {

// A byte budget shared by every session stored in one tier. Thread-safe (lock-free).
class TierBudget {
 public:
  TierBudget(std::string name, uint64_t capacity_bytes);

  const std::string& name() const { return name_; }
  uint64_t capacity_bytes() const { return capacity_bytes_; }
  uint64_t used_bytes() const { return used_.load(std::memory_order_relaxed); }
  int64_t segments() const { return segments_.load(std::memory_order_relaxed); }

  // Takes `bytes` from the budget, or returns RESOURCE_EXHAUSTED (naming the tier, the
  // request and what is free) and takes nothing.
  absl::Status Reserve(uint64_t bytes);
  // Takes `bytes` even past the capacity: for bytes that already exist (recovery, and a
  // disk record replacing others), where refusing would lose track of them.
  void ForceReserve(uint64_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }
  // Gives back bytes taken by Reserve.
  void Free(uint64_t bytes);
  void AddSegments(int64_t delta) { segments_.fetch_add(delta, std::memory_order_relaxed); }

 private:
  const std::string name_;
  const uint64_t capacity_bytes_;
  std::atomic<uint64_t> used_{0};
  std::atomic<int64_t> segments_{0};
};

}  // namespace kvtier::storage

#endif  // KVTIER_STORAGE_TIER_H_
