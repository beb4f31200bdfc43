// The benchmark tools against a real kvtierd: `kvtier-bench ingest` must offload and promote
// through gRPC with every promoted byte equal to what it offloaded, and report throughput.
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"

namespace kvtier::testing {
namespace {

// The "GiBps" value of one JSON line of kvtier-bench, or -1.
double Rate(const std::string& line) {
  const size_t at = line.find("\"GiBps\": ");
  if (at == std::string::npos) return -1;
  double value = -1;
  std::string number = line.substr(at + 9);
  number = number.substr(0, number.find('}'));
  return absl::SimpleAtod(number, &value) ? value : -1;
}

TEST(BenchTools, IngestOffloadsAndPromotesVerifiedBytes) {
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start();
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  int exit_code = 0;
  const std::string out =
      RunCommand(absl::StrCat("'", KVTIER_BENCH_PATH, "' ingest --rows=1024 --reps=1 --server='",
                              (*daemon)->unix_target(), "'"),
                 &exit_code);
  ASSERT_EQ(exit_code, 0) << out;  // non-zero when a promoted byte differs
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << out;
  EXPECT_TRUE(absl::StrContains(lines[0], "\"impl\": \"kvtier\", \"op\": \"offload\"")) << out;
  EXPECT_TRUE(absl::StrContains(lines[1], "\"impl\": \"kvtier\", \"op\": \"promote\"")) << out;
  EXPECT_TRUE(absl::StrContains(lines[2], "\"impl\": \"memcpy\"")) << out;
  // 1024 rows x 57,344 bytes of K+V.
  for (const std::string& line : lines) {
    EXPECT_TRUE(absl::StrContains(line, "\"bytes\": 58720256")) << line;
    EXPECT_GT(Rate(line), 0) << line;
  }
}

TEST(BenchTools, IngestRefusesMissingTargets) {
  int exit_code = 0;
  const std::string out =
      RunCommand(absl::StrCat("'", KVTIER_BENCH_PATH, "' ingest --rows=1024 2>&1"), &exit_code);
  EXPECT_EQ(exit_code, 2) << out;
  EXPECT_TRUE(absl::StrContains(out, "--server")) << out;
}

}  // namespace
}  // namespace kvtier::testing
