// AccessTraceRecorder writes traces that kvtier-replay loads and replays: pages, sizes,
// order and counts survive the round trip from several threads, the cap holds, Flush is
// repeatable and reports unwritable paths.
#include "storage/trace/access_trace_recorder.h"

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tools/replay/json.h"
#include "tools/replay/reference_dir.h"
#include "tools/replay/replay_tool.h"
#include "tools/replay/trace.h"

namespace kvtier::storage {
namespace {

std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "/trace_test_", ::getpid(), "_", name);
}

// The page rows of a trace file as written: [index, layer, token_start, token_end,
// head_group, size_bytes], in file order.
std::vector<std::vector<int64_t>> PageRows(const std::string& path) {
  absl::StatusOr<std::string> text = replay::ReadTextFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  absl::StatusOr<google::protobuf::Value> doc = replay::ParseJson(*text, path);
  EXPECT_TRUE(doc.ok()) << doc.status();
  std::vector<std::vector<int64_t>> rows;
  for (const auto& row : doc->struct_value().fields().at("pages").list_value().values()) {
    std::vector<int64_t> cells;
    for (const auto& cell : row.list_value().values()) {
      cells.push_back(static_cast<int64_t>(cell.number_value()));
    }
    rows.push_back(cells);
  }
  return rows;
}

std::vector<std::string> PageColumns(const std::string& path) {
  absl::StatusOr<std::string> text = replay::ReadTextFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  absl::StatusOr<google::protobuf::Value> doc = replay::ParseJson(*text, path);
  EXPECT_TRUE(doc.ok()) << doc.status();
  std::vector<std::string> columns;
  for (const auto& c : doc->struct_value().fields().at("page_columns").list_value().values()) {
    columns.push_back(c.string_value());
  }
  return columns;
}

TracePage Page(uint64_t key, int64_t size_bytes) {
  // Token span [16 * key, 16 * key + 16) lets a test find the key of a page row.
  return TracePage{key,
                   static_cast<int32_t>(key % 16),
                   static_cast<int64_t>(16 * key),
                   static_cast<int64_t>(16 * key + 16),
                   static_cast<int32_t>(key % 8),
                   size_bytes};
}

TEST(AccessTraceRecorderTest, ManyThreadsRoundTripThroughTheReplayLoader) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  constexpr uint64_t kShared = 5;  // keys 0..4 are shared by every thread
  const std::string path = TempPath("threads.json");
  AccessTraceRecorder recorder(path, "live_threads");

  // Thread t alternates its private keys 100 * (t + 1) + (7 i mod 13) with shared key
  // i mod 5, which it records at size 1000 + t (the largest, 1000 + kThreads - 1, wins).
  auto private_key = [](int t, int i) { return uint64_t{100} * (t + 1) + (7 * i) % 13; };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const uint64_t key = private_key(t, i);
        recorder.RecordAccess(Page(key, static_cast<int64_t>(key) * 10));
        recorder.RecordAccess(Page(i % kShared, 1000 + t));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  constexpr int64_t kTotal = int64_t{2} * kThreads * kPerThread;
  constexpr int64_t kDistinct = kShared + kThreads * 13;
  EXPECT_EQ(recorder.accesses(), kTotal);
  EXPECT_EQ(recorder.pages(), kDistinct);
  EXPECT_EQ(recorder.dropped(), 0);
  ASSERT_TRUE(recorder.Flush().ok());
  EXPECT_NE(::access((path + ".tmp").c_str(), F_OK), 0) << "the temporary file is left behind";

  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->workload, "live_threads");
  EXPECT_EQ(trace->quantization_scheme, "fp16");
  ASSERT_EQ(trace->pages.size(), static_cast<size_t>(kDistinct));
  ASSERT_EQ(trace->accesses.size(), static_cast<size_t>(kTotal));

  // Page rows are in index order and carry the recorded layer, span and head group.
  const std::vector<std::vector<int64_t>> rows = PageRows(path);
  ASSERT_EQ(rows.size(), static_cast<size_t>(kDistinct));
  std::vector<uint64_t> key_of(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].size(), 6u);
    EXPECT_EQ(rows[i][0], static_cast<int64_t>(i));
    EXPECT_EQ(trace->pages[i].id, absl::StrCat("page-", i));
    key_of[i] = static_cast<uint64_t>(rows[i][2] / 16);
    const TracePage expected = Page(key_of[i], 0);
    EXPECT_EQ(rows[i][1], expected.layer);
    EXPECT_EQ(rows[i][3], expected.token_end);
    EXPECT_EQ(rows[i][4], expected.head_group);
    const int64_t size = key_of[i] < kShared ? 1000 + kThreads - 1 : key_of[i] * 10;
    EXPECT_EQ(trace->pages[i].size_bytes, size) << "key " << key_of[i];
    EXPECT_EQ(rows[i][5], size);
  }

  // Indices follow first access; counts match; each thread's accesses keep their order.
  std::map<uint64_t, int64_t> count;
  std::vector<std::vector<uint64_t>> per_thread(kThreads);
  uint32_t next_new = 0;
  for (const uint32_t page : trace->accesses) {
    ASSERT_LT(page, trace->pages.size());
    if (page == next_new) ++next_new;
    ASSERT_LT(page, next_new) << "page " << page << " used before a smaller index";
    const uint64_t key = key_of[page];
    ++count[key];
    if (key >= kShared) per_thread[key / 100 - 1].push_back(key);
  }
  EXPECT_EQ(next_new, kDistinct);
  for (uint64_t key = 0; key < kShared; ++key) {
    EXPECT_EQ(count[key], kThreads * kPerThread / kShared) << "key " << key;
  }
  for (int t = 0; t < kThreads; ++t) {
    std::vector<uint64_t> expected;
    for (int i = 0; i < kPerThread; ++i) expected.push_back(private_key(t, i));
    EXPECT_EQ(per_thread[t], expected) << "thread " << t;
  }
}

TEST(AccessTraceRecorderTest, ReplayOfATraceThatFitsMissesOncePerPage) {
  const std::string path = TempPath("replay.json");
  AccessTraceRecorder recorder(path, "fits");
  const int64_t sizes[] = {1000, 2000, 3000};
  for (int round = 0; round < 3; ++round) {
    for (uint64_t key = 0; key < 3; ++key) recorder.RecordAccess(Page(key + 40, sizes[key]));
  }
  recorder.RecordAccess(Page(40, 1000));
  ASSERT_TRUE(recorder.Flush().ok());

  replay::ReplayRequest request;
  request.trace_path = path;
  request.scenario = "small_fp16_no_prefetch";  // tier 0 holds 64,000 bytes: all 3 pages
  request.policy = "lru";
  absl::StatusOr<replay::ReplayOutput> out = replay::RunReplayRequest(request);
  ASSERT_TRUE(out.ok()) << out.status();
  absl::StatusOr<google::protobuf::Value> report = replay::ParseJson(out->report, "report");
  ASSERT_TRUE(report.ok()) << report.status();
  const auto& fields = report->struct_value().fields();
  EXPECT_EQ(fields.at("workload").string_value(), "fits");
  EXPECT_EQ(fields.at("accesses").number_value(), 10);
  EXPECT_EQ(fields.at("miss_count").number_value(), 3);  // one cold miss per distinct page
  EXPECT_EQ(fields.at("eviction_count").number_value(), 0);
  EXPECT_EQ(fields.at("demand_bytes_moved").number_value(), 6000);
  // Cold loads tier3 -> tier0 cost 2.5 + 0.02 + size / 2000 each; the 7 hits 0.02 each.
  EXPECT_NEAR(fields.at("avg_latency_ms").number_value(),
              (3 * 2.52 + 6000 / 2000.0 + 7 * 0.02) / 10, 1e-12);
}

TEST(AccessTraceRecorderTest, PageColumnsAreThoseOfTheReferenceTraces) {
  const std::string path = TempPath("columns.json");
  AccessTraceRecorder recorder(path, "columns", "int4");
  recorder.RecordAccess(Page(1, 100));
  ASSERT_TRUE(recorder.Flush().ok());
  const std::vector<std::string> expected = {"page_index(page_id=page-<i>)",
                                             "layer",
                                             "token_start",
                                             "token_end",
                                             "head_group",
                                             "size_bytes"};
  EXPECT_EQ(PageColumns(path), expected);
  const std::string reference = replay::TierReferenceDir() + "/traces/default_rag_burst_fp16.json";
  if (std::ifstream(reference).good()) {
    EXPECT_EQ(PageColumns(reference), expected);
  } else {
    GTEST_LOG_(INFO) << "no reference trace at " << reference << "; checked the literal only";
  }
  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->quantization_scheme, "int4");
}

TEST(AccessTraceRecorderTest, CapStopsRecordingAndCountsDrops) {
  const std::string path = TempPath("cap.json");
  AccessTraceRecorder recorder(path, "capped", "fp16", /*max_accesses=*/5);
  for (uint64_t key = 0; key < 8; ++key) recorder.RecordAccess(Page(key, 100));
  recorder.RecordAccess(Page(0, 999));  // dropped: does not change page 0's size
  EXPECT_EQ(recorder.accesses(), 5);
  EXPECT_EQ(recorder.pages(), 5);
  EXPECT_EQ(recorder.dropped(), 4);
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->accesses, (std::vector<uint32_t>{0, 1, 2, 3, 4}));
  ASSERT_EQ(trace->pages.size(), 5u);
  EXPECT_EQ(trace->pages[0].size_bytes, 100);
}

TEST(AccessTraceRecorderTest, ZeroCapGivesAnEmptyLoadableTrace) {
  const std::string path = TempPath("empty.json");
  AccessTraceRecorder recorder(path, "empty", "fp16", /*max_accesses=*/0);
  recorder.RecordAccess(Page(1, 100));
  EXPECT_EQ(recorder.dropped(), 1);
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_TRUE(trace->pages.empty());
  EXPECT_TRUE(trace->accesses.empty());
}

TEST(AccessTraceRecorderTest, SecondFlushHasEarlierAndLaterAccesses) {
  const std::string path = TempPath("twice.json");
  AccessTraceRecorder recorder(path, "twice");
  recorder.RecordAccess(Page(7, 100));
  recorder.RecordAccess(Page(8, 100));
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> first = replay::LoadTraceFile(path);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->accesses, (std::vector<uint32_t>{0, 1}));

  recorder.RecordAccess(Page(9, 100));
  recorder.RecordAccess(Page(7, 300));  // grows page 0 after it was flushed
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> second = replay::LoadTraceFile(path);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->accesses, (std::vector<uint32_t>{0, 1, 2, 0}));
  ASSERT_EQ(second->pages.size(), 3u);
  EXPECT_EQ(second->pages[0].size_bytes, 300);

  ASSERT_TRUE(recorder.Flush().ok());  // nothing new: same trace again
  absl::StatusOr<replay::Trace> third = replay::LoadTraceFile(path);
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->accesses, second->accesses);
}

TEST(AccessTraceRecorderTest, SizesAreClampedAndSpansWidened) {
  const std::string path = TempPath("clamp.json");
  AccessTraceRecorder recorder(path, "clamp");
  recorder.RecordAccess(TracePage{1, 3, 32, 48, 2, 0});
  recorder.RecordAccess(TracePage{2, 0, 0, 16, 0, -5});
  recorder.RecordAccess(TracePage{3, 0, 0, 16, 0, AccessTraceRecorder::kMaxPageBytes * 4});
  recorder.RecordAccess(TracePage{1, 9, 16, 40, 9, 0});  // layer and head group stay 3, 2
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  ASSERT_EQ(trace->pages.size(), 3u);
  EXPECT_EQ(trace->pages[0].size_bytes, 1);
  EXPECT_EQ(trace->pages[1].size_bytes, 1);
  EXPECT_EQ(trace->pages[2].size_bytes, AccessTraceRecorder::kMaxPageBytes);
  EXPECT_EQ(PageRows(path)[0], (std::vector<int64_t>{0, 3, 16, 48, 2, 1}));
}

TEST(AccessTraceRecorderTest, WorkloadIsEscaped) {
  const std::string path = TempPath("escape.json");
  const std::string workload = "tenant \"a\"\\b\nc\x01";
  AccessTraceRecorder recorder(path, workload);
  recorder.RecordAccess(Page(1, 100));
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->workload, workload);
}

TEST(AccessTraceRecorderTest, UnwritablePathIsAnErrorNamingThePath) {
  // A path under a regular file fails even for root.
  const std::string file = TempPath("not_a_dir");
  std::ofstream(file) << "x";
  const std::string path = file + "/trace.json";
  AccessTraceRecorder recorder(path, "nowhere");
  recorder.RecordAccess(Page(1, 100));
  const absl::Status status = recorder.Flush();
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find(path), std::string_view::npos) << status;
  EXPECT_EQ(recorder.accesses(), 1);  // nothing is lost
}

TEST(AccessTraceRecorderTest, FailedFlushLosesNothing) {
  const std::string dir = TempPath("retry_dir");
  const std::string path = dir + "/trace.json";
  AccessTraceRecorder recorder(path, "retry");
  recorder.RecordAccess(Page(1, 100));
  ASSERT_FALSE(recorder.Flush().ok());  // the directory does not exist yet
  recorder.RecordAccess(Page(2, 100));
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->accesses, (std::vector<uint32_t>{0, 1}));
}

TEST(AccessTraceRecorderTest, UnknownQuantIsInvalidArgument) {
  AccessTraceRecorder recorder(TempPath("quant.json"), "q", "bf16");
  const absl::Status status = recorder.Flush();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("quant"), std::string_view::npos) << status;
}

TEST(AccessTraceRecorderTest, FlushWhileRecording) {
  const std::string path = TempPath("concurrent.json");
  AccessTraceRecorder recorder(path, "concurrent");
  std::vector<std::thread> writers;
  for (int t = 0; t < 3; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) recorder.RecordAccess(Page((t * 31 + i) % 50, 64));
    });
  }
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(recorder.Flush().ok());
    absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
    ASSERT_TRUE(trace.ok()) << trace.status();
  }
  for (std::thread& w : writers) w.join();
  ASSERT_TRUE(recorder.Flush().ok());
  absl::StatusOr<replay::Trace> trace = replay::LoadTraceFile(path);
  ASSERT_TRUE(trace.ok()) << trace.status();
  EXPECT_EQ(trace->accesses.size(), 6000u);
  EXPECT_EQ(trace->pages.size(), 50u);
}

}  // namespace
}  // namespace kvtier::storage
