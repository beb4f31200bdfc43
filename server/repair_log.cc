#include "server/repair_log.h"

#include <algorithm>
#include <utility>

namespace kvtier::server {

RepairLog::RepairLog(size_t capacity) : capacity_(std::max<size_t>(capacity, 1)) {}

void RepairLog::Record(RepairLogEntry entry) {
  absl::MutexLock lock(&mu_);
  if (entries_.size() == capacity_) entries_.pop_front();
  entries_.push_back(std::move(entry));
}

std::vector<RepairLogEntry> RepairLog::Recent() const {
  absl::MutexLock lock(&mu_);
  return std::vector<RepairLogEntry>(entries_.rbegin(), entries_.rend());
}

}  // namespace kvtier::server
