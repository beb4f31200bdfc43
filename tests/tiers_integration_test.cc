// The tiers through a real kvtierd: more rows than host RAM holds stay retrievable (the
// demoter moves payloads to RocksDB and reads bring them back), BeginPause stages them,
// tenant quotas refuse with RESOURCE_EXHAUSTED, the metrics show the movement and
// --trace_file records an access trace that kvtier-replay loads.
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"
#include "tools/replay/trace.h"
#include "tools/synthetic/synthetic_client.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kHostCapacity = 6 << 20;
constexpr int64_t kRows = 8192;  // 8 MiB of K+V: more than host RAM

// The value of one sample of the daemon's /metrics, or -1 when it is absent.
double MetricValue(const Daemon& daemon, const std::string& sample) {
  absl::StatusOr<std::string> text = HttpGet(daemon.metrics_port(), "/metrics");
  if (!text.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (!absl::StartsWith(line, sample) || line.size() <= sample.size() ||
        line[sample.size()] != ' ') {
      continue;
    }
    double value = 0;
    if (absl::SimpleAtod(line.substr(sample.size() + 1), &value)) return value;
  }
  return -1;
}

// Polls /metrics until `sample` reaches at least `at_least` (the daemon copies the tier
// counters into its metrics once a second); returns the last value seen.
double AwaitMetric(const Daemon& daemon, const std::string& sample, double at_least) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  double value = MetricValue(daemon, sample);
  while (value < at_least && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    value = MetricValue(daemon, sample);
  }
  return value;
}

// Opens a session shaped like `kv` whose score index covers layer 0 only, so that the
// index (which stays in host RAM) is a small part of each row.
absl::StatusOr<TestSession> OpenIndexLightSession(Client& client, const synthetic::SyntheticKv& kv,
                                                  const std::string& tenant = "") {
  return OpenSession(client, kv, SessionOptions{"", tenant, {0}});
}

// Promotes `positions` in payload mode and checks every byte against the synthetic rows.
void ExpectPromotedBytes(Client& client, const TestSession& session,
                         const synthetic::SyntheticKv& kv, const std::vector<int64_t>& positions) {
  v1::PromoteRequest request;
  request.set_session_id(session.id);
  request.mutable_positions()->Assign(positions.begin(), positions.end());
  request.set_return_mode(v1::RETURN_MODE_PAYLOAD);
  absl::StatusOr<PromoteResult> promoted = client.Promote(request, session.geometry);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  const ExpectedRows expected = ExpectedPayload(kv, positions);
  ASSERT_EQ(promoted->payload.keys.size(), expected.keys.size());
  EXPECT_TRUE(promoted->payload.keys == expected.keys) << "keys differ";
  EXPECT_TRUE(promoted->payload.values == expected.values) << "values differ";
}

std::vector<std::string> TierFlags() {
  return {absl::StrCat("--host_capacity_bytes=", kHostCapacity), "--segment_rows=64",
          "--high_watermark=0.8", "--low_watermark=0.6"};
}

TEST(TiersIntegration, MoreRowsThanHostRamStayRetrievable) {
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(TierFlags());
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::unique_ptr<Client> client = MakeClient((*daemon)->unix_target());
  const synthetic::SyntheticKv kv(SmallOptions(kRows, 11));
  absl::StatusOr<TestSession> session = OpenIndexLightSession(*client, kv);
  ASSERT_TRUE(session.ok()) << session.status();
  ASSERT_TRUE(OffloadAll(*client, *session, kv, 4).ok());

  absl::StatusOr<v1::SessionInfo> info = client->GetSession(session->id);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->rows_complete(), kRows);
  EXPECT_GT(info->segments_on_disk(), 0);
  EXPECT_LE(info->bytes(), kHostCapacity);
  absl::StatusOr<v1::StatsResponse> stats = client->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->durability(), "wal");
  EXPECT_EQ(stats->placement_policy(), "lru");
  for (const v1::TierStats& tier : stats->tiers()) {
    if (tier.name() == "host") {
      EXPECT_LE(tier.bytes(), kHostCapacity);
    }
    if (tier.name() == "nvme") {  // the demoter may still be moving segments: no equality
      EXPECT_GT(tier.segments(), 0);
      EXPECT_LE(tier.segments(), info->segments());
    }
  }
  EXPECT_GT(AwaitMetric(**daemon, "kvtier_tier_moves_total{direction=\"host_to_nvme\"}", 1), 0);
  EXPECT_GT(AwaitMetric(**daemon, "kvtier_tier_moved_bytes_total{direction=\"host_to_nvme\"}", 1),
            0);

  // A repair over a store mostly on disk finds the needle and returns the right bytes.
  v1::RepairRequest repair = NeedleRepair(kv, session->id, 1, 64, 8, v1::RETURN_MODE_PAYLOAD);
  // The session scores layer 0 only: keep that layer's queries ([layer][...] float32).
  std::string* queries = repair.mutable_signal()->mutable_queries();
  queries->resize(queries->size() / static_cast<size_t>(kv.options().num_layers));
  absl::StatusOr<RepairResult> repaired = client->Repair(repair, session->geometry);
  ASSERT_TRUE(repaired.ok()) << repaired.status();
  EXPECT_TRUE(Contains(repaired->summary.chosen(), kv.needles()[1].positions));
  const std::vector<int64_t> chosen(repaired->summary.chosen().begin(),
                                    repaired->summary.chosen().end());
  const ExpectedRows expected = ExpectedPayload(kv, chosen);
  EXPECT_TRUE(repaired->payload.keys == expected.keys);
  EXPECT_TRUE(repaired->payload.values == expected.values);

  // Every row reads back bit-exact, 512 at a time.
  const std::vector<int64_t>& positions = kv.positions();
  for (size_t begin = 0; begin < positions.size(); begin += 512) {
    const size_t end = std::min(positions.size(), begin + 512);
    ExpectPromotedBytes(*client, *session, kv,
                        std::vector<int64_t>(positions.begin() + static_cast<ptrdiff_t>(begin),
                                             positions.begin() + static_cast<ptrdiff_t>(end)));
    if (::testing::Test::HasFailure()) break;
  }
  EXPECT_GT(AwaitMetric(**daemon, "kvtier_policy_accesses_total{result=\"miss\"}", 1), 0);
  const double loaded =
      AwaitMetric(**daemon, "kvtier_tier_moves_total{direction=\"nvme_to_host\"}", 0) +
      MetricValue(**daemon, "kvtier_tier_moves_total{direction=\"nvme_read_through\"}");
  EXPECT_GT(loaded, 0);

  // Releasing the session gives every tier's bytes back (a demotion copy in flight when the
  // release lands gives its bytes back when it finishes: poll, bounded).
  ASSERT_TRUE(client->ReleaseSession(session->id).ok());
  uint64_t held = 1;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       held > 0 && absl::Now() < deadline;) {
    stats = client->Stats();
    ASSERT_TRUE(stats.ok());
    held = 0;
    for (const v1::TierStats& tier : stats->tiers()) held += tier.bytes();
    if (held > 0) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(held, 0u);
  absl::StatusOr<int> code = (*daemon)->Stop();
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0) << (*daemon)->LogTail();
}

TEST(TiersIntegration, BeginPauseStagesPayloadsBackIntoHostRam) {
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(TierFlags());
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::unique_ptr<Client> client = MakeClient((*daemon)->unix_target());
  // Two sessions: offloading the second pushes the first one's payloads to disk.
  const synthetic::SyntheticKv kv(SmallOptions(2048, 12));
  const synthetic::SyntheticKv other(SmallOptions(kRows - 2048, 13));
  absl::StatusOr<TestSession> first = OpenIndexLightSession(*client, kv);
  absl::StatusOr<TestSession> second = OpenIndexLightSession(*client, other);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE(OffloadAll(*client, *first, kv, 4).ok());
  ASSERT_TRUE(OffloadAll(*client, *second, other, 4).ok());
  absl::StatusOr<v1::SessionInfo> before = client->GetSession(first->id);
  ASSERT_TRUE(before.ok());
  ASSERT_GT(before->segments_on_disk(), 0) << "the first session should have been demoted";

  absl::StatusOr<v1::BeginPauseResponse> paused = client->BeginPause(first->id);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_GT(paused->segments_loaded(), 0);
  EXPECT_EQ(paused->segments_loaded() + paused->segments_left(), before->segments_on_disk());
  EXPECT_EQ(paused->segments_resident() + paused->segments_loaded() + paused->segments_left(),
            before->segments());
  absl::StatusOr<v1::SessionInfo> after = client->GetSession(first->id);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->segments_on_disk(), paused->segments_left());
  EXPECT_GT(AwaitMetric(**daemon, "kvtier_tier_moves_total{direction=\"nvme_to_host_prefetch\"}",
                        static_cast<double>(paused->segments_loaded())),
            0);

  EXPECT_EQ(client->BeginPause("no-such-session").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client->BeginPause("bad id!").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TiersIntegration, TenantQuotaIsResourceExhaustedForThatTenantOnly) {
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start({"--segment_rows=64", "--tenant_quotas=tiny=200000"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::unique_ptr<Client> client = MakeClient((*daemon)->unix_target());
  const synthetic::SyntheticKv kv(SmallOptions(1024, 14));
  absl::StatusOr<TestSession> tiny = OpenIndexLightSession(*client, kv, "tiny");
  absl::StatusOr<TestSession> roomy = OpenIndexLightSession(*client, kv, "roomy");
  ASSERT_TRUE(tiny.ok() && roomy.ok());
  absl::Status refused = OffloadAll(*client, *tiny, kv, 4);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(std::string(refused.message()), ::testing::HasSubstr("tenant tiny"));
  absl::StatusOr<v1::SessionInfo> info = client->GetSession(tiny->id);
  ASSERT_TRUE(info.ok());
  EXPECT_LE(static_cast<uint64_t>(info->segments()) * 64 * kv.options().num_layers * 2 * 128,
            200000u);
  EXPECT_TRUE(OffloadAll(*client, *roomy, kv, 4).ok());
  EXPECT_GE(AwaitMetric(**daemon, "kvtier_quota_rejections_total", 1), 1);
}

TEST(TiersIntegration, TraceFileRecordsSegmentAccessesForReplay) {
  const std::string trace =
      ::testing::TempDir() + "/kvtierd-trace-" + std::to_string(getpid()) + ".json";
  std::filesystem::remove(trace);
  std::vector<std::string> flags = TierFlags();
  flags.push_back("--trace_file=" + trace);
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(flags);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  std::unique_ptr<Client> client = MakeClient((*daemon)->unix_target());
  const synthetic::SyntheticKv kv(SmallOptions(4096, 15));
  absl::StatusOr<TestSession> session = OpenIndexLightSession(*client, kv);
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(OffloadAll(*client, *session, kv, 2).ok());
  ExpectPromotedBytes(*client, *session, kv,
                      std::vector<int64_t>(kv.positions().begin(), kv.positions().begin() + 256));
  absl::StatusOr<int> code = (*daemon)->Stop();  // flushes the trace
  ASSERT_TRUE(code.ok() && *code == 0) << (*daemon)->LogTail();

  absl::StatusOr<replay::Trace> loaded = replay::LoadTraceFile(trace);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  // 64 segments of 64 rows, each written twice (two layer ranges), then 4 of them read.
  EXPECT_EQ(loaded->pages.size(), 64u);
  EXPECT_GE(loaded->accesses.size(), 64u * 2 + 4);
  std::filesystem::remove(trace);
}

// The tier benchmark's own run on a daemon too small for its rows: it must finish, report
// the paused session's segments on disk, stage some back, and find every promoted byte
// equal to what it offloaded.
TEST(TiersIntegration, TierBenchPromotesBitExactRowsFromDisk) {
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start({absl::StrCat("--host_capacity_bytes=", 96 << 20)});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  int exit_code = 0;
  const std::string out =
      RunCommand(absl::StrCat("'", KVTIERCTL_PATH, "' tier-bench --rows=2048 --runs=2 --server='",
                              (*daemon)->unix_target(), "'"),
                 &exit_code);
  ASSERT_EQ(exit_code, 0) << out;
  // | durability | host MiB | MiB/s | call ms | on disk / segments | ... | bit-exact |
  const std::vector<std::string> fields = absl::StrSplit(out, '|');
  ASSERT_EQ(fields.size(), 11u) << out;
  EXPECT_EQ(absl::StripAsciiWhitespace(fields[1]), "wal");
  EXPECT_EQ(absl::StripAsciiWhitespace(fields[2]), "96");
  const std::vector<std::string> disk = absl::StrSplit(fields[5], '/');
  ASSERT_EQ(disk.size(), 2u) << out;
  int on_disk = 0, segments = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(disk[0]), &on_disk)) << out;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(disk[1]), &segments)) << out;
  EXPECT_GT(on_disk, 0) << out;
  EXPECT_LE(on_disk, segments) << out;
  // "0.05 s, 42 MiB (840 MiB/s)": BeginPause brought some of P's payloads back.
  const std::vector<std::string> pause = absl::StrSplit(fields[7], ' ', absl::SkipEmpty());
  ASSERT_GE(pause.size(), 4u) << out;
  double loaded_mib = 0;
  ASSERT_TRUE(absl::SimpleAtod(pause[2], &loaded_mib)) << out;
  EXPECT_GT(loaded_mib, 0) << out;
  EXPECT_EQ(absl::StripAsciiWhitespace(fields[9]), "yes");
}

}  // namespace
}  // namespace kvtier::testing
