// /statusz through a real kvtierd and a real browser: sessions of two tenants are offloaded
// and repaired through the SDK, then headless Chromium loads the page and the rendered DOM
// must show the version, the cpu scorer, the configured tier capacities, each session
// under its tenant and the repairs with their latencies. /metrics keeps serving beside it.
//
// With KVTIER_STATUSZ_SCREENSHOT=FILE.png the test also saves a 1200x1000 screenshot of
// the page there (docs/statusz.png is made this way).
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"

namespace kvtier::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kHostCapacity = uint64_t{256} << 20;
constexpr uint64_t kDiskCapacity = uint64_t{1} << 30;
constexpr int64_t kRows = 2048;
constexpr int kRepairs = 3;

// /usr/bin/chromium (Debian's package) unless KVTIER_CHROMIUM names another binary.
std::string ChromiumPath() {
  const char* env = std::getenv("KVTIER_CHROMIUM");
  return env != nullptr && *env != '\0' ? env : "/usr/bin/chromium";
}

// Runs headless Chromium on `url` with `mode_flags` (--dump-dom or --screenshot=...), a
// fresh profile under `dir` and a hard time limit; its stderr goes to DIR/chromium.log.
// Chromium needs --no-sandbox when run as root (CI containers); it is harmless otherwise.
std::string RunChromium(const std::string& dir, const std::string& url,
                        const std::string& mode_flags, int* exit_code) {
  const std::string profile = dir + "/chromium-profile";
  const std::string command =
      absl::StrCat("timeout -k 10 240 '", ChromiumPath(),
                   "' --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run "
                   "--no-default-browser-check --disable-extensions --user-data-dir='",
                   profile, "' ", mode_flags, " '", url, "' 2>>'", dir, "/chromium.log'");
  return RunCommand(command, exit_code);
}

std::string ChromiumLog(const std::string& dir) {
  int ignored = 0;
  return RunCommand(absl::StrCat("tail -c 3000 '", dir, "/chromium.log'"), &ignored);
}

// The element that starts with `open` up to the next `close`, or "" when absent.
std::string Element(const std::string& dom, const std::string& open, const std::string& close) {
  const size_t begin = dom.find(open);
  if (begin == std::string::npos) return "";
  const size_t end = dom.find(close, begin);
  return dom.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The number in the cell `<td ... data-stage="stage">N</td>` of `row`, or -1.
double StageMillis(const std::string& row, const std::string& stage) {
  const std::string key = absl::StrCat("data-stage=\"", stage, "\">");
  const size_t at = row.find(key);
  if (at == std::string::npos) return -1;
  const size_t end = row.find('<', at);
  double value = -1;
  if (!absl::SimpleAtod(row.substr(at + key.size(), end - at - key.size()), &value)) return -1;
  return value;
}

TEST(StatuszChromium, RendersTheDaemonsState) {
  ASSERT_TRUE(std::filesystem::exists(ChromiumPath()))
      << ChromiumPath() << " is missing: scripts/install-deps.sh installs Debian's chromium";
  absl::StatusOr<std::unique_ptr<Daemon>> daemon =
      Daemon::Start({absl::StrCat("--host_capacity_bytes=", kHostCapacity),
                     absl::StrCat("--disk_capacity_bytes=", kDiskCapacity)});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string& dir = (*daemon)->dir();
  std::unique_ptr<Client> client = MakeClient((*daemon)->unix_target());

  // Two tenants: one session repaired kRepairs times, one only offloaded.
  const synthetic::SyntheticKv kv(SmallOptions(kRows, 7));
  absl::StatusOr<TestSession> repaired =
      OpenSession(*client, kv, SessionOptions{"agent-7", "acme-research", {}});
  ASSERT_TRUE(repaired.ok()) << repaired.status();
  ASSERT_TRUE(OffloadAll(*client, *repaired, kv, 2).ok());
  absl::StatusOr<TestSession> idle =
      OpenSession(*client, kv, SessionOptions{"chat-42", "team-b", {}});
  ASSERT_TRUE(idle.ok()) << idle.status();
  ASSERT_TRUE(OffloadAll(*client, *idle, kv, 4).ok());
  for (int i = 0; i < kRepairs; ++i) {
    const v1::RepairRequest request =
        NeedleRepair(kv, repaired->id, i % 3, 64, 8, v1::RETURN_MODE_PAYLOAD);
    absl::StatusOr<RepairResult> result = client->Repair(request, repaired->geometry);
    ASSERT_TRUE(result.ok()) << result.status();
  }
  absl::StatusOr<v1::StatsResponse> stats = client->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();

  const std::string url = absl::StrCat("http://127.0.0.1:", (*daemon)->metrics_port(), "/statusz");
  int exit_code = 0;
  const std::string dom = RunChromium(dir, url, "--dump-dom", &exit_code);
  ASSERT_EQ(exit_code, 0) << "chromium failed:\n" << ChromiumLog(dir);
  ASSERT_THAT(dom, HasSubstr("</html>")) << dom << "\n" << ChromiumLog(dir);

  EXPECT_THAT(dom, HasSubstr("<title>kvtierd status</title>"));
  EXPECT_THAT(dom, HasSubstr(absl::StrCat("<td id=\"version\">", stats->version(), "</td>")));
  EXPECT_THAT(dom, HasSubstr("<td id=\"scorer\">cpu</td>"));
  EXPECT_THAT(dom, HasSubstr("<td id=\"durability\">wal</td>"));
  EXPECT_THAT(dom, HasSubstr("<td id=\"policy\">lru</td>"));
  EXPECT_THAT(dom, HasSubstr("<td id=\"cold-format\">raw</td>"));

  // Tiers with the configured capacities; the host tier holds what was offloaded.
  const std::string host = Element(dom, "<tr data-tier=\"host\">", "</tr>");
  EXPECT_THAT(host, HasSubstr(absl::StrCat("data-bytes=\"", kHostCapacity, "\">256 MiB<")));
  EXPECT_THAT(host, HasSubstr("class=\"percent\""));
  EXPECT_THAT(host, ::testing::Not(HasSubstr("data-bytes=\"0\"")));
  const std::string nvme = Element(dom, "<tr data-tier=\"nvme\">", "</tr>");
  EXPECT_THAT(nvme, HasSubstr(absl::StrCat("data-bytes=\"", kDiskCapacity, "\">1.00 GiB<")));

  // Sessions by tenant: each tenant's sums and each session under its tenant.
  EXPECT_THAT(dom, HasSubstr("2 open sessions of 2 tenants."));
  EXPECT_THAT(
      Element(dom, "<tr data-tenant=\"acme-research\"><td>", "</tr>"),
      HasSubstr(absl::StrCat("<td class=\"num\">1</td><td class=\"num\">", kRows, "</td>")));
  EXPECT_THAT(
      Element(dom, "<tr data-tenant=\"team-b\"><td>", "</tr>"),
      HasSubstr(absl::StrCat("<td class=\"num\">1</td><td class=\"num\">", kRows, "</td>")));
  EXPECT_THAT(dom, HasSubstr("<tr data-tenant=\"acme-research\" data-session=\"agent-7\">"
                             "<td>acme-research</td><td class=\"id\">agent-7</td>"));
  EXPECT_THAT(dom, HasSubstr("<tr data-tenant=\"team-b\" data-session=\"chat-42\">"
                             "<td>team-b</td><td class=\"id\">chat-42</td>"));

  // The repairs, newest first, with per-stage latencies and their percentiles.
  EXPECT_EQ(Count(dom, "<tr class=\"repair\" data-session=\"agent-7\">"), size_t{kRepairs});
  EXPECT_EQ(Count(dom, "<tr class=\"repair\" data-session=\"chat-42\">"), 0u);
  const std::string newest = Element(dom, "<tr class=\"repair\"", "</tr>");
  EXPECT_THAT(newest, HasSubstr("<td>acme-research</td><td class=\"id\">agent-7</td><td>exact</td>"
                                "<td class=\"num\">64</td><td class=\"num\">64</td>"));
  EXPECT_GT(StageMillis(newest, "total"), 0);
  EXPECT_GE(StageMillis(newest, "total"), StageMillis(newest, "score"));
  const std::string p50 = Element(dom, "<tr data-quantile=\"p50\">", "</tr>");
  const std::string p95 = Element(dom, "<tr data-quantile=\"p95\">", "</tr>");
  EXPECT_GT(StageMillis(p50, "total"), 0);
  EXPECT_GE(StageMillis(p95, "total"), StageMillis(p50, "total"));

  // The page stands alone: no scripts.
  EXPECT_THAT(dom, ::testing::Not(HasSubstr("<script")));

  // /metrics still serves Prometheus text on the same port; other paths are 404.
  absl::StatusOr<std::string> metrics = HttpGet((*daemon)->metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(*metrics, HasSubstr("\nkvtier_repairs_total 3\n"));
  EXPECT_THAT(*metrics, HasSubstr("\nexposer_scrapes_total "));
  absl::StatusOr<std::string> missing = HttpGet((*daemon)->metrics_port(), "/nope");
  EXPECT_THAT(missing.status().message(), HasSubstr("404"));

  if (const char* shot = std::getenv("KVTIER_STATUSZ_SCREENSHOT"); shot != nullptr && *shot) {
    const std::string flags =
        absl::StrCat("--hide-scrollbars --window-size=1200,1000 --screenshot='", shot, "'");
    RunChromium(dir, url, flags, &exit_code);
    EXPECT_EQ(exit_code, 0) << ChromiumLog(dir);
    EXPECT_TRUE(std::filesystem::exists(shot)) << ChromiumLog(dir);
  }

  absl::StatusOr<int> stopped = (*daemon)->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(*stopped, 0) << (*daemon)->LogTail();
}

}  // namespace
}  // namespace kvtier::testing
