#include "tools/kvtier_bench/bench_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <thread>

namespace kvtier::bench {

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

double StreamReadSeconds(size_t bytes) {
  const size_t words = std::max<size_t>(1, bytes / 8);
  std::vector<uint64_t> buffer(words);
  std::iota(buffer.begin(), buffer.end(), uint64_t{1});
  std::vector<double> times;
  uint64_t sink = 0;
  for (int rep = 0; rep < 5; ++rep) {
    uint64_t sums[2] = {0, 0};
    const auto start = Clock::now();
    std::thread other([&] {
      uint64_t s = 0;
      for (size_t i = words / 2; i < words; ++i) s += buffer[i];
      sums[1] = s;
    });
    uint64_t s = 0;
    for (size_t i = 0; i < words / 2; ++i) s += buffer[i];
    sums[0] = s;
    other.join();
    times.push_back(SecondsSince(start));
    sink += sums[0] + sums[1];
  }
  if (sink == 42) std::printf(" ");  // keeps the sums alive
  return Percentile(times, 0.5);
}

std::vector<int32_t> SourceLayers(int32_t count) {
  std::vector<int32_t> out;
  for (int32_t i = 0; i < count; ++i) out.push_back(count == 1 ? 0 : i * 27 / (count - 1));
  return out;
}

}  // namespace kvtier::bench
