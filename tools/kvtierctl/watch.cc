// kvtierctl watch: a live view of the daemon. Every --interval seconds one Stats and one
// ListSessions call make a frame: tiers, sessions, repairs/s and offload rows/s (the rates
// from the counters of two successive Stats calls). On a terminal each frame replaces the last;
// otherwise frames are appended, which suits logs and tests.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tools/kvtierctl/commands.h"
#include "tools/kvtierctl/flags.h"
#include "tools/kvtierctl/output.h"

namespace kvtier::ctl {
namespace {

constexpr char kUsage[] =
    "kvtierctl watch [--interval=SECONDS] [--count=N] [--tenant=T] [--top=N] [--json]";
// Longest --interval, in seconds.
constexpr double kMaxInterval = 3600;
// How much more the daemon's uptime may grow between two frames than the client's clock did
// before the frames are taken to come from two daemon processes.
constexpr double kRestartSlackSeconds = 1;
// Cursor home, then clear the screen (ANSI/VT100).
constexpr char kClearScreen[] = "\x1b[H\x1b[2J";

// Sets the frame's rates from the growth of the counters since `previous`. `wall_seconds` is
// the most the daemon's uptime can have grown between the two Stats calls: the client's time
// from sending the previous call to receiving this one's reply. Leaves the rates absent when
// there is no previous frame or the daemon restarted in between: its uptime went back, grew
// more than wall_seconds + kRestartSlackSeconds (a daemon restarted and up longer than the old
// one was), or a counter shrank.
void SetRates(const v1::StatsResponse* previous, double wall_seconds, WatchFrame& frame) {
  if (previous == nullptr) return;
  const v1::StatsResponse& now = frame.stats();
  const double window = now.uptime_seconds() - previous->uptime_seconds();
  if (window <= 0 || window > wall_seconds + kRestartSlackSeconds ||
      now.repairs() < previous->repairs() || now.offloaded_rows() < previous->offloaded_rows()) {
    return;
  }
  frame.set_rate_window_seconds(window);
  frame.set_repairs_per_second(static_cast<double>(now.repairs() - previous->repairs()) / window);
  frame.set_offloaded_rows_per_second(
      static_cast<double>(now.offloaded_rows() - previous->offloaded_rows()) / window);
}

std::string Uptime(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds);
  if (s >= 3600) return absl::StrFormat("%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%.1fs", seconds);
}

std::string Rate(bool present, double value) {
  return present ? absl::StrFormat("%.1f", value) : std::string("-");
}

std::string RenderText(const WatchFrame& frame, double interval, int32_t top) {
  const v1::StatsResponse& s = frame.stats();
  std::string out = absl::StrFormat(
      "kvtierd %s at %s  scorer %s  up %s  %s  (frame %d, every %gs)\n", s.version(),
      absl::GetFlag(FLAGS_server), s.scorer(), Uptime(s.uptime_seconds()),
      LocalTime(frame.unix_ms()), frame.frame(), interval);
  absl::StrAppendFormat(
      &out,
      "repairs/s %s   offload rows/s (per call) %s   repairs %d   offload rows (per call) %d   "
      "sessions %d   rows %d\n\n",
      Rate(frame.has_repairs_per_second(), frame.repairs_per_second()),
      Rate(frame.has_offloaded_rows_per_second(), frame.offloaded_rows_per_second()), s.repairs(),
      s.offloaded_rows(), s.sessions(), s.rows());
  absl::StrAppend(&out, TierTable(frame.tiers()), "\n");
  // Largest sessions first: they are the ones that move the tiers.
  std::vector<v1::SessionInfo> sessions(frame.sessions().begin(), frame.sessions().end());
  std::stable_sort(
      sessions.begin(), sessions.end(),
      [](const v1::SessionInfo& a, const v1::SessionInfo& b) { return a.bytes() > b.bytes(); });
  absl::StrAppend(&out, SessionTable(sessions, std::max(0, top)));
  return out;
}

}  // namespace

int RunWatch(const std::vector<std::string>& args) {
  if (!args.empty()) return UsageFailure("watch", "takes no arguments", kUsage);
  const double interval = absl::GetFlag(FLAGS_interval);
  const int64_t count = absl::GetFlag(FLAGS_count);
  if (!std::isfinite(interval) || !(interval > 0) || interval > kMaxInterval) {
    return UsageFailure(
        "watch", absl::StrCat("--interval must be above 0 and at most ", kMaxInterval, " seconds"),
        kUsage);
  }
  if (count < 0) return UsageFailure("watch", "--count must be >= 0", kUsage);
  const bool json = absl::GetFlag(FLAGS_json);
  const bool tty = isatty(STDOUT_FILENO) == 1;

  absl::StatusOr<std::unique_ptr<Client>> client = ConnectFromFlags(kOperatorDeadline);
  if (!client.ok()) return RpcFailure("watch", client.status());
  const absl::Time start = absl::Now();
  WatchFrame previous;
  absl::Time previous_sent;  // when the previous frame's Stats call was sent
  for (int64_t n = 1; count == 0 || n <= count; ++n) {
    WatchFrame frame;
    frame.set_frame(n);
    const absl::Time sent = absl::Now();
    frame.set_unix_ms(absl::ToUnixMillis(sent));
    absl::StatusOr<v1::StatsResponse> stats = (*client)->Stats();
    if (!stats.ok()) return RpcFailure("watch", stats.status());
    const double wall_seconds = absl::ToDoubleSeconds(absl::Now() - previous_sent);
    absl::StatusOr<std::vector<v1::SessionInfo>> sessions =
        (*client)->ListSessions(absl::GetFlag(FLAGS_tenant));
    if (!sessions.ok()) return RpcFailure("watch", sessions.status());
    *frame.mutable_stats() = std::move(*stats);
    *frame.mutable_tiers() = TierUseOf(frame.stats()).tiers();
    for (v1::SessionInfo& s : *sessions) *frame.add_sessions() = std::move(s);
    SetRates(n > 1 ? &previous.stats() : nullptr, wall_seconds, frame);

    if (json) {
      PrintJson(frame);
    } else {
      const std::string text = RenderText(frame, interval, absl::GetFlag(FLAGS_top));
      // One write per frame, so that a terminal never shows half of one.
      std::printf("%s%s%s", tty ? kClearScreen : "", text.c_str(), tty ? "" : "\n");
    }
    std::fflush(stdout);
    previous = std::move(frame);
    previous_sent = sent;
    if (count != 0 && n == count) break;
    // Frames keep to a fixed cadence from the start, however long the calls took. Ticks that
    // passed while a frame was slow are skipped, not made up with frames back to back.
    const absl::Duration step = absl::Seconds(interval);
    const absl::Time now = absl::Now();
    const double ticks = std::floor(absl::FDivDuration(now - start, step)) + 1;
    absl::SleepFor(start + step * ticks - now);
  }
  return 0;
}

}  // namespace kvtier::ctl
