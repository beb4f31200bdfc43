#include "server/statusz.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/repair_log.h"

namespace kvtier::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

// The text between the first `open` after `from` and the next `close`.
std::string Between(const std::string& text, const std::string& open, const std::string& close) {
  const size_t begin = text.find(open);
  if (begin == std::string::npos) return "";
  const size_t end = text.find(close, begin + open.size());
  return text.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

StatusSnapshot BaseSnapshot() {
  StatusSnapshot s;
  s.version = "0.1.0";
  s.scorer = "cpu";
  s.now = absl::FromUnixSeconds(1700000000);
  s.uptime_seconds = 3723;  // 1h 2m 3s
  s.durability = "wal";
  s.placement_policy = "lru";
  s.cold_format = "raw";
  s.high_watermark = 0.9;
  s.low_watermark = 0.8;
  s.tiers = {{"hbm", 0, 0, 0}, {"host", 1ull << 30, 4ull << 30, 12}, {"nvme", 0, 64ull << 30, 0}};
  s.repair_log_capacity = RepairLog::kDefaultCapacity;
  return s;
}

RepairLogEntry Repair(const std::string& session, double total_ms) {
  RepairLogEntry r;
  r.time = absl::FromUnixSeconds(1700000000);
  r.session_id = session;
  r.tenant = "acme";
  r.mode = "exact";
  r.budget = 96;
  r.chosen = 96;
  r.candidates = 4096;
  r.score_seconds = total_ms / 2e3;
  r.select_seconds = 0.0001;
  r.total_seconds = total_ms / 1e3;
  return r;
}

void ExpectBalanced(const std::string& page) {
  for (const char* tag : {"table", "tr", "td", "th", "section", "thead", "tbody"}) {
    EXPECT_EQ(Count(page, absl::StrCat("<", tag, ">")) + Count(page, absl::StrCat("<", tag, " ")),
              Count(page, absl::StrCat("</", tag, ">")))
        << tag;
  }
}

TEST(HtmlEscape, ReplacesEveryMarkupCharacter) {
  EXPECT_EQ(HtmlEscape("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
  EXPECT_EQ(HtmlEscape("plain-id_1.2"), "plain-id_1.2");
  EXPECT_EQ(HtmlEscape(""), "");
}

TEST(NearestRankPercentile, MatchesTheDefinition) {
  EXPECT_EQ(NearestRankPercentile({}, 0.5), 0);
  EXPECT_EQ(NearestRankPercentile({7}, 0.95), 7);
  std::vector<double> values;
  for (int i = 20; i >= 1; --i) values.push_back(i);  // unsorted on purpose
  EXPECT_EQ(NearestRankPercentile(values, 0.5), 10);
  EXPECT_EQ(NearestRankPercentile(values, 0.95), 19);
  EXPECT_EQ(NearestRankPercentile(values, 1.0), 20);
  EXPECT_EQ(NearestRankPercentile(values, 0.0), 1);
  EXPECT_EQ(NearestRankPercentile({1, 2, 3}, 0.5), 2);
  EXPECT_EQ(NearestRankPercentile({1, 2, 3, 4}, 0.5), 2);
}

TEST(FormatBytes, UsesBinaryUnits) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1024), "1.00 KiB");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(uint64_t{8} << 30), "8.00 GiB");
  EXPECT_EQ(FormatBytes(uint64_t{64} << 30), "64.0 GiB");
  EXPECT_EQ(FormatBytes(uint64_t{300} << 20), "300 MiB");
}

TEST(FormatBytes, RoundsBeforeChoosingTheUnit) {
  EXPECT_EQ(FormatBytes(1048575), "1.00 MiB");  // 1023.999 KiB
  EXPECT_EQ(FormatBytes(1047552), "1023 KiB");
  EXPECT_EQ(FormatBytes(10239), "10.0 KiB");  // 9.999 KiB
  EXPECT_EQ(FormatBytes(102399), "100 KiB");  // 99.999 KiB
  EXPECT_EQ(FormatBytes((uint64_t{1} << 30) - 1), "1.00 GiB");
  EXPECT_EQ(FormatBytes(~uint64_t{0}), "16.0 EiB");
}

TEST(RenderStatusz, EmptyStateSaysSo) {
  const std::string page = RenderStatusz(BaseSnapshot());
  EXPECT_THAT(page, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(page, HasSubstr("<td id=\"version\">0.1.0</td>"));
  EXPECT_THAT(page, HasSubstr("<td id=\"scorer\">cpu</td>"));
  EXPECT_THAT(page, HasSubstr("<td id=\"uptime\">1h 2m 3s</td>"));
  EXPECT_THAT(page, HasSubstr("<td id=\"durability\">wal</td>"));
  EXPECT_THAT(page, HasSubstr("<td id=\"policy\">lru</td>"));
  EXPECT_THAT(page, HasSubstr("<td id=\"cold-format\">raw</td>"));
  EXPECT_THAT(page, HasSubstr("No open sessions."));
  EXPECT_THAT(page, HasSubstr("No repairs yet."));
  EXPECT_THAT(page, Not(HasSubstr("session-table")));
  EXPECT_THAT(page, Not(HasSubstr("repair-table")));
  // Self-contained: no scripts, no external assets, no refresh unless asked.
  EXPECT_THAT(page, Not(HasSubstr("<script")));
  EXPECT_THAT(page, Not(HasSubstr("http://")));
  EXPECT_THAT(page, Not(HasSubstr("https://")));
  EXPECT_THAT(page, Not(HasSubstr("<link")));
  EXPECT_THAT(page, Not(HasSubstr("http-equiv")));
  ExpectBalanced(page);
}

TEST(RenderStatusz, RefreshIsOptional) {
  EXPECT_THAT(RenderStatusz(BaseSnapshot(), 10),
              HasSubstr("<meta http-equiv=\"refresh\" content=\"10\">"));
}

TEST(RenderStatusz, TiersShowCapacityAndUse) {
  const std::string page = RenderStatusz(BaseSnapshot());
  const std::string host = Between(page, "<tr data-tier=\"host\">", "</tr>");
  EXPECT_THAT(host, HasSubstr("data-bytes=\"1073741824\">1.00 GiB<"));
  EXPECT_THAT(host, HasSubstr("data-bytes=\"4294967296\">4.00 GiB<"));
  EXPECT_THAT(host, HasSubstr("width:25.0%"));
  EXPECT_THAT(host, HasSubstr(">25.0%<"));
  EXPECT_THAT(host, HasSubstr("<td class=\"num\">12</td>"));
  const std::string hbm = Between(page, "<tr data-tier=\"hbm\">", "</tr>");
  EXPECT_THAT(hbm, HasSubstr("not configured"));
  const std::string nvme = Between(page, "<tr data-tier=\"nvme\">", "</tr>");
  EXPECT_THAT(nvme, HasSubstr(">0.0%<"));
  EXPECT_THAT(nvme, HasSubstr(">64.0 GiB<"));
}

TEST(RenderStatusz, OverfullTierBarIsCappedAndMarked) {
  StatusSnapshot s = BaseSnapshot();
  s.tiers = {{"host", 3000, 2000, 1}};
  const std::string page = RenderStatusz(s);
  EXPECT_THAT(page, HasSubstr("<span class=\"full\" style=\"width:100.0%\">"));
  EXPECT_THAT(page, HasSubstr(">150.0%<"));
}

TEST(RenderStatusz, SessionsGroupedByTenant) {
  StatusSnapshot s = BaseSnapshot();
  s.tenants = {{"", 1, 10, 2048}, {"acme", 2, 3000, 3u << 20}};
  s.sessions = {{"s0", "", 10, 2048, 1, 0, absl::ToUnixMillis(s.now) + 90'000},
                {"s1", "acme", 1000, 1u << 20, 4, 1, absl::ToUnixMillis(s.now) + 3'600'000},
                {"s2", "acme", 2000, 2u << 20, 8, 0, absl::ToUnixMillis(s.now) + 60'000}};
  s.total_sessions = 3;
  const std::string page = RenderStatusz(s);
  EXPECT_THAT(page, HasSubstr("3 open sessions of 2 tenants."));
  const std::string acme = Between(page, "<tr data-tenant=\"acme\"><td>acme</td>", "</tr>");
  EXPECT_THAT(acme, HasSubstr("<td class=\"num\">2</td><td class=\"num\">3000</td>"));
  EXPECT_THAT(acme, HasSubstr(">3.00 MiB<"));
  EXPECT_THAT(page, HasSubstr("(default)"));
  const std::string s1 = Between(page, "data-session=\"s1\">", "</tr>");
  EXPECT_THAT(s1, HasSubstr("<td class=\"id\">s1</td><td class=\"num\">1000</td>"));
  EXPECT_THAT(s1, HasSubstr("<td>1h 0m 0s</td>"));
  EXPECT_THAT(page, HasSubstr("<td>1m 30s</td>"));
  EXPECT_THAT(page, Not(HasSubstr("Showing the first")));
  ExpectBalanced(page);

  s.total_sessions = 500;
  EXPECT_THAT(RenderStatusz(s), HasSubstr("Showing the first 3 of 500 sessions."));
}

TEST(RenderStatusz, EscapesSessionIdsTenantsAndModes) {
  StatusSnapshot s = BaseSnapshot();
  s.version = "1<b>";
  const std::string evil_id = "<script>alert(1)</script>";
  const std::string evil_tenant = "t\"><img src=x onerror=alert(2)>&'";
  s.tenants = {{evil_tenant, 1, 1, 1}};
  s.sessions = {{evil_id, evil_tenant, 1, 1, 1, 0, 0}};
  s.total_sessions = 1;
  RepairLogEntry r = Repair(evil_id, 5);
  r.tenant = evil_tenant;
  r.mode = "<i>x</i>";
  s.repairs = {r};
  const std::string page = RenderStatusz(s);
  EXPECT_THAT(page, Not(HasSubstr("<script")));
  EXPECT_THAT(page, Not(HasSubstr("<img")));
  EXPECT_THAT(page, Not(HasSubstr("<i>")));
  EXPECT_THAT(page, Not(HasSubstr("<b>")));
  EXPECT_THAT(page, HasSubstr("data-tenant=\"t&quot;&gt;&lt;img"));
  EXPECT_THAT(page, HasSubstr("&lt;script&gt;alert(1)&lt;/script&gt;"));
  EXPECT_THAT(page, HasSubstr("t&quot;&gt;&lt;img src=x onerror=alert(2)&gt;&amp;&#39;"));
  EXPECT_THAT(page, HasSubstr("&lt;i&gt;x&lt;/i&gt;"));
  EXPECT_THAT(page, HasSubstr("1&lt;b&gt;"));
  // Once in the session table, once in the repair table (text) and twice in attributes.
  EXPECT_EQ(Count(page, "&lt;script&gt;alert(1)&lt;/script&gt;"), 4u);
  ExpectBalanced(page);
}

TEST(RenderStatusz, RepairsWithPercentiles) {
  StatusSnapshot s = BaseSnapshot();
  for (int ms = 20; ms >= 1; --ms) s.repairs.push_back(Repair(absl::StrCat("s", ms), ms));
  const std::string page = RenderStatusz(s);
  EXPECT_THAT(page, HasSubstr("The last 20 repairs (up to 32 are kept)"));
  EXPECT_EQ(Count(page, "<tr class=\"repair\""), 20u);
  const std::string p50 = Between(page, "<tr data-quantile=\"p50\">", "</tr>");
  const std::string p95 = Between(page, "<tr data-quantile=\"p95\">", "</tr>");
  EXPECT_THAT(p50, HasSubstr("data-stage=\"total\">10.00<"));
  EXPECT_THAT(p50, HasSubstr("data-stage=\"score\">5.00<"));
  EXPECT_THAT(p50, HasSubstr("data-stage=\"select\">0.10<"));
  EXPECT_THAT(p95, HasSubstr("data-stage=\"total\">19.00<"));
  // Every stage ran in every repair: no count row.
  EXPECT_THAT(page, HasSubstr("Percentiles are over these repairs."));
  EXPECT_THAT(page, Not(HasSubstr("<tr class=\"count\">")));
  // Newest first, as given; each row has its own numbers.
  const std::string first = Between(page, "<tr class=\"repair\"", "</tr>");
  EXPECT_THAT(first, HasSubstr("<td class=\"id\">s20</td>"));
  EXPECT_THAT(first, HasSubstr("<td title=\"2023-11-14\">22:13:20.000</td>"));
  EXPECT_THAT(first, HasSubstr("<td>exact</td><td class=\"num\">96</td><td class=\"num\">96</td>"
                               "<td class=\"num\">4096</td>"));
  EXPECT_THAT(first, HasSubstr("data-stage=\"total\">20.00<"));
  ExpectBalanced(page);
}

TEST(RenderStatusz, StagePercentilesLeaveOutRepairsWhereTheStageDidNotRun) {
  StatusSnapshot s = BaseSnapshot();
  // Four exact payload repairs: score 10..40 ms, gather 1..4 ms, total 20..80 ms.
  for (int i = 1; i <= 4; ++i) {
    RepairLogEntry r = Repair(absl::StrCat("exact", i), 20.0 * i);
    r.gather_seconds = i / 1e3;
    r.send_seconds = i / 1e3;
    s.repairs.push_back(r);
  }
  // Entries whose stages would drag the percentiles down as zeros.
  RepairLogEntry replay = Repair("replay", 0.5);
  replay.mode = "replay";
  replay.score_seconds = replay.select_seconds = 0;
  replay.gather_seconds = replay.send_seconds = 0.0001;
  RepairLogEntry oldest = Repair("oldest", 3);
  oldest.mode = "oldest";
  oldest.score_seconds = oldest.select_seconds = 0;
  oldest.gather_seconds = oldest.send_seconds = 0.002;
  RepairLogEntry positions = Repair("positions", 30);
  positions.positions_only = true;
  s.repairs.push_back(replay);
  s.repairs.push_back(oldest);
  s.repairs.push_back(positions);

  EXPECT_FALSE(RepairStageRan(replay, "total"));
  EXPECT_FALSE(RepairStageRan(oldest, "score"));
  EXPECT_TRUE(RepairStageRan(oldest, "gather"));
  EXPECT_FALSE(RepairStageRan(positions, "send"));
  EXPECT_TRUE(RepairStageRan(positions, "select"));

  const std::string page = RenderStatusz(s);
  const std::string p50 = Between(page, "<tr data-quantile=\"p50\">", "</tr>");
  // score over the 4 exact and the positions-only repair: 10, 15, 20, 30, 40 ms.
  EXPECT_THAT(p50, HasSubstr("data-stage=\"score\">20.00<"));
  // gather over the 4 exact and the oldest repair: 1, 2, 2, 3, 4 ms.
  EXPECT_THAT(p50, HasSubstr("data-stage=\"gather\">2.00<"));
  // total over all but the replay: 3, 20, 30, 40, 60, 80 ms.
  EXPECT_THAT(p50, HasSubstr("data-stage=\"total\">30.00<"));
  const std::string counts = Between(page, "<tr class=\"count\">", "</tr>");
  EXPECT_THAT(counts, HasSubstr("data-stage=\"score\">5 repairs<"));
  EXPECT_THAT(counts, HasSubstr("data-stage=\"gather\">5 repairs<"));
  EXPECT_THAT(counts, HasSubstr("data-stage=\"total\">6 repairs<"));
  EXPECT_THAT(page, HasSubstr("Each stage's percentiles are over the repairs in which it ran"));
  ExpectBalanced(page);

  // Only replays: no stage ran, no number to show.
  s.repairs = {replay};
  const std::string only_replays = RenderStatusz(s);
  EXPECT_THAT(Between(only_replays, "<tr data-quantile=\"p95\">", "</tr>"),
              HasSubstr("data-stage=\"total\">&mdash;<"));
  EXPECT_THAT(only_replays, HasSubstr("data-stage=\"total\">0 repairs<"));
}

TEST(RepairLog, KeepsTheNewestUpToCapacity) {
  RepairLog log(3);
  EXPECT_TRUE(log.Recent().empty());
  for (int i = 1; i <= 5; ++i) log.Record(Repair(absl::StrCat("s", i), i));
  const std::vector<RepairLogEntry> recent = log.Recent();
  ASSERT_EQ(recent.size(), 3u);
  EXPECT_EQ(recent[0].session_id, "s5");
  EXPECT_EQ(recent[1].session_id, "s4");
  EXPECT_EQ(recent[2].session_id, "s3");
  EXPECT_EQ(RepairLog(0).capacity(), 1u);
}

}  // namespace
}  // namespace kvtier::server
