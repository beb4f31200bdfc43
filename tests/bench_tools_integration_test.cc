// The benchmark tools against a real kvtierd: `kvtier-bench ingest` must offload and promote
// through gRPC with every promoted byte equal to what it offloaded, and report throughput;
// `kvtier-bench envelope` must repair through the server in both modes, and
// bench/envelope_report.py must turn its output into the tables.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
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

// A small envelope (4096 index-only rows, 2 scoring layers): both modes find the needle,
// the fast mode really runs fast and rescores what kvtierd's --fast_first_round says, no
// payload is stored; the report script's tables follow, the oversample table included.
TEST(BenchTools, EnvelopeRepairsThroughTheServerAndReports) {
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start({"--fast_first_round=300"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  int exit_code = 0;
  const std::string out = RunCommand(
      absl::StrCat("'", KVTIER_BENCH_PATH, "' envelope --rows=4096 --layers=2 --index_only ",
                   "--runs=2 --exact_runs=1 --budgets=64 --server='", (*daemon)->unix_target(),
                   "'"),
      &exit_code);
  ASSERT_EQ(exit_code, 0) << out;
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_TRUE(absl::StrContains(lines[0],
                                "\"mode\": \"exact\", \"scored_as\": "
                                "\"SCORING_MODE_EXACT\""))
      << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[0], "\"rescored\": 4096")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[1],
                                "\"mode\": \"fast\", \"scored_as\": "
                                "\"SCORING_MODE_FAST\""))
      << lines[1];
  EXPECT_TRUE(absl::StrContains(lines[1], "\"rescored\": 300")) << lines[1];
  for (const std::string& line : lines) {
    EXPECT_TRUE(absl::StrContains(line, "\"needle_recall\": 1.0000")) << line;
    EXPECT_TRUE(absl::StrContains(line, "\"chosen\": 64")) << line;
    // Keys and sketches of 2 scoring layers and slot metadata: about 3.2 KB, no payload.
    const size_t at = line.find("\"bytes_per_row\": ");
    ASSERT_NE(at, std::string::npos) << line;
    double per_row = 0;
    ASSERT_TRUE(absl::SimpleAtod(line.substr(at + 17, line.find(',', at) - at - 17), &per_row));
    EXPECT_GT(per_row, 3000);
    EXPECT_LT(per_row, 4000);
  }

  const std::string dir = ::testing::TempDir() + "/envelope-report-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/envelope.jsonl") << out;
  // As bench/envelope.sh marks the lines of its --fast_oversample=16 step.
  std::ofstream(dir + "/envelope_oversample.jsonl")
      << "{\"fast_oversample\": 16, " << lines[1].substr(1) << "\n";
  const std::string report =
      RunCommand(absl::StrCat("/usr/bin/python3 '", KVTIER_SOURCE_DIR,
                              "/bench/envelope_report.py' --no-plots --results='", dir, "' 2>&1"),
                 &exit_code);
  EXPECT_EQ(exit_code, 0) << report;
  std::stringstream md;
  md << std::ifstream(dir + "/envelope.md").rdbuf();
  EXPECT_TRUE(absl::StrContains(md.str(), "| 4K | index-only | 2 | 64 | exact | 1 |")) << md.str();
  EXPECT_TRUE(absl::StrContains(md.str(), "| 4K | index-only | 2 | 64 | fast | 2 |")) << md.str();
  EXPECT_TRUE(absl::StrContains(md.str(), "| 4K | 2 (default) | 2 |")) << md.str();
  EXPECT_TRUE(absl::StrContains(md.str(), "| 4K | 16 | 2 |")) << md.str();
  EXPECT_TRUE(std::filesystem::exists(dir + "/envelope.csv"));
  std::filesystem::remove_all(dir);
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
