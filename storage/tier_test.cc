#include "storage/tier.h"

#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kvtier::storage {
namespace {

TEST(TierBudget, ReserveAndFree) {
  TierBudget budget("host", 1000);
  EXPECT_EQ(budget.name(), "host");
  EXPECT_EQ(budget.capacity_bytes(), 1000u);
  EXPECT_TRUE(budget.Reserve(600).ok());
  EXPECT_TRUE(budget.Reserve(400).ok());
  EXPECT_EQ(budget.used_bytes(), 1000u);
  absl::Status s = budget.Reserve(1);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(budget.used_bytes(), 1000u);
  budget.Free(400);
  EXPECT_EQ(budget.used_bytes(), 600u);
  EXPECT_TRUE(budget.Reserve(0).ok());
}

TEST(TierBudget, ExhaustedMessageNamesTierRequestUsedAndCapacity) {
  TierBudget budget("nvme-7", 1000);
  ASSERT_TRUE(budget.Reserve(321).ok());
  absl::Status s = budget.Reserve(999);
  ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  const std::string m(s.message());
  EXPECT_NE(m.find("nvme-7"), std::string::npos) << m;
  EXPECT_NE(m.find("999"), std::string::npos) << m;
  EXPECT_NE(m.find("321"), std::string::npos) << m;
  EXPECT_NE(m.find("1000"), std::string::npos) << m;
}

TEST(TierBudget, HugeRequestDoesNotWrap) {
  TierBudget budget("host", 1000);
  ASSERT_TRUE(budget.Reserve(10).ok());
  EXPECT_FALSE(budget.Reserve(~uint64_t{0} - 5).ok());
  EXPECT_EQ(budget.used_bytes(), 10u);
}

TEST(TierBudget, Segments) {
  TierBudget budget("host", 1);
  budget.AddSegments(3);
  budget.AddSegments(-1);
  EXPECT_EQ(budget.segments(), 2);
}

TEST(TierBudget, ConcurrentReservationsNeverOvershoot) {
  constexpr uint64_t kCapacity = 100000;
  TierBudget budget("host", kCapacity);
  std::vector<std::thread> threads;
  std::vector<uint64_t> taken(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&budget, &taken, t] {
      while (budget.Reserve(7).ok()) taken[t] += 7;
    });
  }
  for (auto& th : threads) th.join();
  uint64_t total = 0;
  for (uint64_t x : taken) total += x;
  EXPECT_EQ(total, budget.used_bytes());
  EXPECT_LE(total, kCapacity);
  EXPECT_GT(total + 7, kCapacity);
}

}  // namespace
}  // namespace kvtier::storage
