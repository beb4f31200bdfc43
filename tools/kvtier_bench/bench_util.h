// Helpers shared by kvtier-bench's modes: timing, percentiles, the machine's streaming-read
// floor, and the scoring layers of the 7B shape.
#ifndef KVTIER_TOOLS_KVTIER_BENCH_BENCH_UTIL_H_
#define KVTIER_TOOLS_KVTIER_BENCH_BENCH_UTIL_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvtier::bench {

using Clock = std::chrono::steady_clock;

inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Nearest-rank percentile, p in (0, 1]; 0 when `v` is empty.
double Percentile(std::vector<double> v, double p);

// Seconds to read `bytes` once with two threads (summing 64-bit words), median of 5: the
// memory-bandwidth floor of a pass that must read that many bytes.
double StreamReadSeconds(size_t bytes);

// `count` layers of the 7B shape's 28, spread evenly (0 and 27 included when count > 1).
std::vector<int32_t> SourceLayers(int32_t count);

}  // namespace kvtier::bench

#endif  // KVTIER_TOOLS_KVTIER_BENCH_BENCH_UTIL_H_
