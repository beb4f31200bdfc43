#include "tools/kvtierctl/flags.h"

#include <cmath>
#include <string>

#include "absl/algorithm/container.h"
#include "absl/flags/commandlineflag.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

ABSL_FLAG(std::string, server, "unix://kvtier-data/kvtierd.sock",
          "Daemon address: unix:///abs/path.sock, unix://rel/path.sock or host:port");
ABSL_FLAG(double, deadline_seconds, 0,
          "Deadline of each RPC in seconds, retries included (0: 10 for health, sessions, tiers, "
          "stats and watch; 300 for the other commands)");
ABSL_FLAG(std::string, tenant, "", "sessions, watch: only this tenant's sessions");
ABSL_FLAG(int64_t, rows, 32768, "demo, bench, tier-bench: evicted rows to offload");
ABSL_FLAG(uint64_t, seed, 1,
          "demo, bench, tier-bench: seed of the synthetic rows, signal and bursts");
ABSL_FLAG(int32_t, tokens, 0, "demo, bench: signal tokens T (0: 16 for demo, 64 for bench)");
ABSL_FLAG(int32_t, layers_per_call, 4, "demo: layers per Offload call (as an engine saves them)");
ABSL_FLAG(int32_t, runs, 20,
          "bench: measured repairs per budget and return mode; tier-bench: promoted bursts before "
          "and after BeginPause");
ABSL_FLAG(std::vector<std::string>, budgets, std::vector<std::string>({"96", "5000"}),
          "bench: repair budgets K, comma-separated");
ABSL_FLAG(std::vector<std::string>, modes, std::vector<std::string>({"payload", "positions"}),
          "bench: return modes, comma-separated (payload, positions)");
ABSL_FLAG(std::string, csv, "",
          "bench: write one line per measured repair to this file; tier-bench: append one line per "
          "timed call");

ABSL_FLAG(bool, json, false,
          "health, sessions, tiers, stats, watch: print protobuf JSON (one object per line)");
ABSL_FLAG(double, interval, 2, "watch: seconds between frames (> 0)");
ABSL_FLAG(int64_t, count, 0, "watch: stop after this many frames (0: run until interrupted)");
ABSL_FLAG(int32_t, top, 20, "watch: sessions shown in the text view, largest first");

namespace kvtier::ctl {

absl::StatusOr<std::unique_ptr<Client>> ConnectFromFlags(absl::Duration default_deadline,
                                                         bool retry) {
  ClientOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  const double seconds = absl::GetFlag(FLAGS_deadline_seconds);
  options.default_deadline = seconds > 0 ? absl::Seconds(seconds) : default_deadline;
  if (!retry) options.retry.max_attempts = 1;
  return Client::Connect(options);
}

absl::Status CheckFlagValues() {
  const double deadline = absl::GetFlag(FLAGS_deadline_seconds);
  if (!std::isfinite(deadline) || deadline < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--deadline_seconds must be a finite number of seconds >= 0 (0: the command's default), "
        "got ",
        deadline));
  }
  return absl::OkStatus();
}

namespace {

constexpr absl::string_view kParserFlags[] = {
    "help",    "helpfull",        "helpshort", "helppackage", "helpon",     "helpmatch",
    "version", "only_check_args", "flagfile",  "fromenv",     "tryfromenv", "undefok"};

}  // namespace

absl::Status CheckCommandLine(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') continue;  // a positional argument, or "-"
    arg.remove_prefix(arg[1] == '-' ? 2 : 1);
    const size_t eq = arg.find('=');
    const absl::string_view name = arg.substr(0, eq);
    // The parser's own flags (--helpfull, --flagfile, ...) are left to it; some of them are
    // not in the flag registry.
    if (absl::c_linear_search(kParserFlags, name)) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) {
      // --nofoo sets the boolean flag foo to false.
      const absl::CommandLineFlag* negated =
          absl::ConsumePrefix(&arg, "no") ? absl::FindCommandLineFlag(arg) : nullptr;
      if (negated != nullptr && negated->IsOfType<bool>()) continue;
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    absl::string_view value;
    if (eq != absl::string_view::npos) {
      value = arg.substr(eq + 1);
    } else if (flag->IsOfType<bool>()) {
      continue;
    } else if (i + 1 < argc) {
      value = argv[++i];  // "--flag value"
    } else {
      return absl::InvalidArgumentError(absl::StrCat("flag --", name, " needs a value"));
    }
    // The public API cannot parse a value without setting the flag; setting it now is
    // harmless, since absl::ParseCommandLine sets it again to the same value.
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value \"", value, "\" for --", name, ": ", error));
    }
  }
  return absl::OkStatus();
}

}  // namespace kvtier::ctl
