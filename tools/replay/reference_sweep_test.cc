// Replays every row of the reference default_sweep_results.csv from its trace and checks
// the result row (counts and bytes exactly, avg latency to 1e-9 relative, every other
// column as written), and diffs the reference per-event logs line by line.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "storage/policy/placement_policy.h"
#include "tools/replay/cost_model.h"
#include "tools/replay/json.h"
#include "tools/replay/reference_dir.h"
#include "tools/replay/replay_engine.h"
#include "tools/replay/report.h"
#include "tools/replay/trace.h"

namespace kvtier::replay {
namespace {

// Splits one CSV record as Python's csv module writes it (quoted fields, "" escapes).
std::vector<std::string> SplitCsv(const std::string& line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cells.back().push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        cells.back().push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.emplace_back();
    } else if (c != '\r') {
      cells.back().push_back(c);
    }
  }
  return cells;
}

std::vector<std::string> ReadLines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (std::string& line : lines) {
    if (!line.empty() && line.back() == '\r') line.pop_back();  // csv writes \r\n
  }
  while (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

struct CellRun {
  Scenario scenario;
  Trace trace;
  ReplayResult result;
};

// Replays (scenario, workload, policy) from traces/; fails the test when anything is missing.
::testing::AssertionResult ReplayCell(const std::string& scenario_name, const std::string& workload,
                                      const std::string& policy_name, bool record_events,
                                      CellRun& run) {
  absl::StatusOr<Scenario> scenario = FindScenario(scenario_name);
  if (!scenario.ok()) return ::testing::AssertionFailure() << scenario.status();
  run.scenario = *scenario;
  const std::string trace_path = absl::StrCat(TierReferenceDir(), "/traces/default_", workload, "_",
                                              scenario->quantization_scheme, ".json");
  absl::StatusOr<Trace> trace = LoadTraceFile(trace_path);
  if (!trace.ok()) return ::testing::AssertionFailure() << trace.status();
  run.trace = *std::move(trace);
  absl::StatusOr<std::unique_ptr<policy::PlacementPolicy>> policy =
      policy::MakePlacementPolicy(policy_name, {});
  if (!policy.ok()) return ::testing::AssertionFailure() << policy.status();
  ReplayOptions options;
  options.prefetch_enabled = scenario->prefetch_enabled;
  options.record_events = record_events;
  absl::StatusOr<ReplayResult> result =
      Replay(scenario->tiers, run.trace.pages, run.trace.accesses, **policy, options);
  if (!result.ok()) return ::testing::AssertionFailure() << result.status();
  run.result = *std::move(result);
  return ::testing::AssertionSuccess();
}

TEST(ReferenceSweepTest, EveryRowIsReproduced) {
  const std::string path = TierReferenceDir() + "/default_sweep_results.csv";
  absl::StatusOr<std::string> text = ReadTextFile(path);
  ASSERT_TRUE(text.ok()) << text.status() << " (set KVTIER_TIER_REFERENCE_DIR)";
  const std::vector<std::string> lines = ReadLines(*text);
  ASSERT_EQ(lines.size(), 151u) << "header + 5 scenarios x 5 workloads x 6 policies";
  ASSERT_EQ(lines[0], ResultCsvHeader());
  const std::vector<std::string>& columns = ResultColumns();

  int matched = 0;
  for (size_t row = 1; row < lines.size(); ++row) {
    const std::vector<std::string> want = SplitCsv(lines[row]);
    ASSERT_EQ(want.size(), columns.size()) << lines[row];
    SCOPED_TRACE(absl::StrCat(want[0], "/", want[1], "/", want[2]));
    CellRun run;
    ASSERT_TRUE(ReplayCell(want[0], want[1], want[2], false, run));
    const RunLabel label{want[0], run.trace.workload, want[2], run.trace.quantization_scheme,
                         run.scenario.prefetch_enabled};
    const std::vector<std::string> got =
        SplitCsv(ResultCsvRow(label, run.result.metrics, run.scenario.tiers));
    ASSERT_EQ(got.size(), columns.size());
    bool same = true;
    for (size_t i = 0; i < columns.size(); ++i) {
      if (columns[i] == "avg_latency_ms") {
        const double w = std::strtod(want[i].c_str(), nullptr);
        const double g = std::strtod(got[i].c_str(), nullptr);
        EXPECT_LE(std::fabs(g - w), 1e-9 * std::fabs(w))
            << "avg_latency_ms " << got[i] << " want " << want[i];
        same = same && std::fabs(g - w) <= 1e-9 * std::fabs(w);
      } else {
        EXPECT_EQ(got[i], want[i]) << columns[i];
        same = same && got[i] == want[i];
      }
    }
    matched += same ? 1 : 0;
  }
  EXPECT_EQ(matched, 150);
}

TEST(ReferenceSweepTest, EventLogsMatchLineByLine) {
  const std::filesystem::path dir = std::filesystem::path(TierReferenceDir()) / "events";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir << " (set KVTIER_TIER_REFERENCE_DIR)";
  int logs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".jsonl") continue;
    ++logs;
    const std::string stem = entry.path().stem().string();
    SCOPED_TRACE(stem);
    const std::vector<std::string> parts = absl::StrSplit(stem, "__");
    ASSERT_EQ(parts.size(), 3u);
    CellRun run;
    ASSERT_TRUE(ReplayCell(parts[0], parts[1], parts[2], true, run));
    absl::StatusOr<std::string> text = ReadTextFile(entry.path().string());
    ASSERT_TRUE(text.ok()) << text.status();
    const std::vector<std::string> want = ReadLines(*text);
    const std::vector<std::string> got =
        ReadLines(EventLogJsonl(run.result, run.scenario.tiers, run.trace.pages));
    for (size_t i = 0; i < std::min(want.size(), got.size()); ++i) {
      ASSERT_EQ(got[i], want[i]) << "first divergence at line " << i + 1;
    }
    ASSERT_EQ(got.size(), want.size());
  }
  EXPECT_EQ(logs, 6);
}

}  // namespace
}  // namespace kvtier::replay
