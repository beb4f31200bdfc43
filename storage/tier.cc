#include "storage/tier.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace kvtier::storage {

TierBudget::TierBudget(std::string name, uint64_t capacity_bytes)
    : name_(std::move(name)), capacity_bytes_(capacity_bytes) {}

absl::Status TierBudget::Reserve(uint64_t bytes) {
  uint64_t used = used_.load(std::memory_order_relaxed);
  while (true) {
    // Written as a subtraction so that a huge request cannot wrap around.
    if (bytes > capacity_bytes_ || used > capacity_bytes_ - bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "tier ", name_, ": cannot reserve ", bytes, " bytes (", used, " of ", capacity_bytes_,
          " bytes used, ", used < capacity_bytes_ ? capacity_bytes_ - used : 0, " free)"));
    }
    if (used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed,
                                    std::memory_order_relaxed)) {
      return absl::OkStatus();
    }
  }
}

void TierBudget::Free(uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

}  // namespace kvtier::storage
