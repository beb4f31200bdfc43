// kvtier-replay's inputs and outputs: bad input gives a clear error, numbers are written
// like the reference, and the binary's JSON keys are the reference CSV's columns.
#include "tools/replay/replay_tool.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/replay/json.h"
#include "tools/replay/reference_dir.h"
#include "tools/replay/report.h"
#include "tools/replay/trace.h"

namespace kvtier::replay {
namespace {

using ::testing::HasSubstr;

constexpr char kTinyTrace[] =
    R"({"workload": "tiny", "quant": "fp16", "page_columns": [],
        "pages": [[0, 0, 0, 16, 0, 4000], [1, 1, 16, 32, 1, 4000]],
        "accesses": [0, 1, 0, 0]})";

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  return path;
}

ReplayRequest TinyRequest() {
  ReplayRequest r;
  r.trace_path = WriteTemp("tiny_trace.json", kTinyTrace);
  r.scenario = "small_fp16_prefetch";
  r.policy = "lru";
  return r;
}

TEST(FormatDoubleTest, WritesLikePythonRepr) {
  EXPECT_EQ(FormatDouble(0.0), "0.0");
  EXPECT_EQ(FormatDouble(3.116), "3.116");
  EXPECT_EQ(FormatDouble(0.32308964843750043), "0.32308964843750043");
  EXPECT_EQ(FormatDouble(1.0), "1.0");
  EXPECT_EQ(FormatDouble(1234.5), "1234.5");
  EXPECT_EQ(FormatDouble(0.0001), "0.0001");
  EXPECT_EQ(FormatDouble(0.00001), "1e-05");
  EXPECT_EQ(FormatDouble(1.5e-7), "1.5e-07");
  EXPECT_EQ(FormatDouble(1e15), "1000000000000000.0");
  EXPECT_EQ(FormatDouble(1e16), "1e+16");
  EXPECT_EQ(FormatDouble(-2.5), "-2.5");
}

TEST(ReplayToolTest, GoodRequestGivesAllColumns) {
  absl::StatusOr<ReplayOutput> out = RunReplayRequest(TinyRequest());
  ASSERT_TRUE(out.ok()) << out.status();
  absl::StatusOr<google::protobuf::Value> json = ParseJson(out->report, "report");
  ASSERT_TRUE(json.ok()) << json.status();
  const auto& fields = json->struct_value().fields();
  EXPECT_EQ(fields.size(), ResultColumns().size());
  for (const std::string& column : ResultColumns()) EXPECT_TRUE(fields.contains(column)) << column;
  EXPECT_EQ(fields.at("miss_count").number_value(), 2);
  EXPECT_EQ(fields.at("accesses").number_value(), 4);
  EXPECT_EQ(fields.at("workload").string_value(), "tiny");
}

TEST(ReplayToolTest, CsvHasHeaderAndOneRow) {
  ReplayRequest r = TinyRequest();
  r.format = "csv";
  absl::StatusOr<ReplayOutput> out = RunReplayRequest(r);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->report.substr(0, out->report.find('\n')), ResultCsvHeader());
  EXPECT_THAT(out->report, HasSubstr("small_fp16_prefetch,tiny,lru,fp16,True,4,2,"));
}

TEST(ReplayToolTest, UnknownPolicyIsInvalidArgument) {
  ReplayRequest r = TinyRequest();
  r.policy = "clairvoyant";
  absl::StatusOr<ReplayOutput> out = RunReplayRequest(r);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("unknown policy 'clairvoyant'"));
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("regret_aware"));
}

TEST(ReplayToolTest, UnknownScenarioIsInvalidArgument) {
  ReplayRequest r = TinyRequest();
  r.scenario = "huge";
  absl::StatusOr<ReplayOutput> out = RunReplayRequest(r);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("unknown scenario 'huge'"));
}

TEST(ReplayToolTest, BadFormatAndParamsAreInvalidArgument) {
  ReplayRequest r = TinyRequest();
  r.format = "xml";
  EXPECT_EQ(RunReplayRequest(r).status().code(), absl::StatusCode::kInvalidArgument);
  r = TinyRequest();
  r.policy_params = "window=3";
  absl::StatusOr<ReplayOutput> out = RunReplayRequest(r);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("no parameter 'window'"));
  r.policy_params = "oops";
  EXPECT_EQ(RunReplayRequest(r).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReplayToolTest, MissingTraceIsNotFound) {
  ReplayRequest r = TinyRequest();
  r.trace_path = ::testing::TempDir() + "/no_such_trace.json";
  EXPECT_EQ(RunReplayRequest(r).status().code(), absl::StatusCode::kNotFound);
}

TEST(TraceTest, MalformedTracesNameTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{not json", "malformed JSON"},
      {"[1, 2]", "expected a JSON object"},
      {R"({"quant": "fp16", "pages": [], "accesses": []})", "\"workload\""},
      {R"({"workload": "w", "quant": "fp3", "pages": [], "accesses": []})", "fp3"},
      {R"({"workload": "w", "quant": "fp16", "pages": [[0, 0, 0, 16, 0]], "accesses": []})",
       "pages[0]"},
      {R"({"workload": "w", "quant": "fp16", "pages": [[0, 0, 0, 16, 0, 0]], "accesses": []})",
       "pages[0]"},
      {R"({"workload": "w", "quant": "fp16", "pages": [[0,0,0,16,0,8], [0,0,0,16,0,8]],
           "accesses": []})",
       "appears twice"},
      {R"({"workload": "w", "quant": "fp16", "pages": [[0, 0, 0, 16, 0, 8]],
           "accesses": [0, 7]})",
       "accesses[1] names page 7"},
      {R"({"workload": "w", "quant": "fp16", "pages": [[0, 0, 0, 16, 0, 8]],
           "accesses": [0.5]})",
       "accesses[0]"},
  };
  for (const auto& [json, expected] : cases) {
    absl::StatusOr<Trace> trace = ParseTrace(json, "t.json");
    ASSERT_EQ(trace.status().code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_THAT(std::string(trace.status().message()), HasSubstr(expected)) << json;
  }
}

TEST(ReplayToolTest, PageLargerThanTierIsResourceExhausted) {
  ReplayRequest r = TinyRequest();
  r.scenario.clear();
  r.tiers = "fast:1000:0.01:0.01:1000,slow:100000:1:1:100";
  absl::StatusOr<ReplayOutput> out = RunReplayRequest(r);
  ASSERT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("does not fit in tier fast"));
}

TEST(ReplayToolTest, CustomTiersFromFlagAndFileAgree) {
  ReplayRequest flag = TinyRequest();
  flag.scenario.clear();
  flag.tiers = "fast:5000:0.01:0.01:10000,slow:100000:0.2:0.2:2000";
  ReplayRequest file = flag;
  file.tiers.clear();
  file.tiers_file = WriteTemp(
      "tiers.json", R"([["fast", 5000, 0.01, 0.01, 10000], ["slow", 100000, 0.2, 0.2, 2000]])");
  absl::StatusOr<ReplayOutput> a = RunReplayRequest(flag);
  absl::StatusOr<ReplayOutput> b = RunReplayRequest(file);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(a->report, b->report);
  EXPECT_THAT(a->report, HasSubstr("\"scenario\": \"custom\""));
  EXPECT_THAT(a->report, HasSubstr("\"eviction_count\": 2"));
  flag.tiers = "fast:5000:0.01";
  EXPECT_EQ(RunReplayRequest(flag).status().code(), absl::StatusCode::kInvalidArgument);
}

// Runs the real binary; returns its exit status and captures stdout and stderr.
int RunBinary(const std::string& args, std::string& out, std::string& err) {
  const std::string out_path = ::testing::TempDir() + "/replay_stdout.txt";
  const std::string err_path = ::testing::TempDir() + "/replay_stderr.txt";
  const int status = std::system(
      absl::StrCat(KVTIER_REPLAY_BINARY, " ", args, " >", out_path, " 2>", err_path).c_str());
  const auto read = [](const std::string& p) { return ReadTextFile(p).value_or(""); };
  out = read(out_path);
  err = read(err_path);
  return WEXITSTATUS(status);
}

TEST(ReplayBinaryTest, ReplaysAReferenceTraceWithEvents) {
  const std::string trace = TierReferenceDir() + "/traces/default_rag_burst_int4.json";
  const std::string events = ::testing::TempDir() + "/events.jsonl";
  std::string out, err;
  ASSERT_EQ(
      RunBinary(absl::StrCat("--trace ", trace,
                             " --scenario small_int4_no_prefetch --policy lru --events ", events),
                out, err),
      0)
      << err;
  absl::StatusOr<google::protobuf::Value> json = ParseJson(out, "stdout");
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->struct_value().fields().size(), ResultColumns().size());
  EXPECT_EQ(json->struct_value().fields().at("miss_count").number_value(), 74);
  absl::StatusOr<std::string> want =
      ReadTextFile(TierReferenceDir() + "/events/small_int4_no_prefetch__rag_burst__lru.jsonl");
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_EQ(ReadTextFile(events).value_or(""), *want);
}

TEST(ReplayBinaryTest, BadInputExitsNonZeroWithAClearMessage) {
  std::string out, err;
  EXPECT_EQ(RunBinary("--trace x.json --scenario small_fp16_prefetch --policy nope", out, err), 2);
  EXPECT_THAT(err, HasSubstr("unknown policy 'nope'"));
  const std::string bad = WriteTemp("bad_trace.json", "{\"workload\": ");
  EXPECT_EQ(RunBinary(absl::StrCat("--trace ", bad, " --scenario small_fp16_prefetch --policy lru"),
                      out, err),
            2);
  EXPECT_THAT(err, HasSubstr("malformed JSON"));
  EXPECT_EQ(RunBinary("--trace x.json --scenario nowhere --policy lru", out, err), 2);
  EXPECT_THAT(err, HasSubstr("unknown scenario 'nowhere'"));
}

}  // namespace
}  // namespace kvtier::replay
