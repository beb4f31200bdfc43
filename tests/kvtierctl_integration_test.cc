// kvtierctl's operator commands (health, sessions, tiers, stats, watch) run as a subprocess
// against a real kvtierd holding sessions made through the SDK. Their --json output is parsed
// back into the messages it claims to be, and checked against what the test put in the daemon:
// session ids, tenants, rows, and tier capacities equal to the daemon's flags.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "kvtierctl/kvtierctl.pb.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"
#include "tests/shared_daemon_test.h"

namespace kvtier::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

constexpr uint64_t kHostCapacity = 96ull << 20;
constexpr uint64_t kDiskCapacity = 512ull << 20;
constexpr int64_t kRows = 1024;

// One kvtierctl run: exit status, stdout and stderr.
struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Parses one line of protobuf JSON into `message`; unknown fields fail the parse, so the
// output must be exactly the message it claims to be.
template <typename Message>
::testing::AssertionResult ParseJson(const std::string& json, Message* message) {
  const auto status = google::protobuf::util::JsonStringToMessage(json, message);
  if (status.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << status.ToString() << " in: " << json;
}

class KvtierctlTest : public SharedDaemonTest<KvtierctlTest> {
 public:
  static std::vector<std::string> DaemonFlags() {
    return {absl::StrCat("--host_capacity_bytes=", kHostCapacity),
            absl::StrCat("--disk_capacity_bytes=", kDiskCapacity)};
  }

 protected:
  void SetUp() override {
    SharedDaemonTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = MakeClient(daemon().unix_target());
    ASSERT_NE(client_, nullptr);
  }

  // Runs kvtierctl with `args` (shell words, already quoted where needed) and --server.
  CtlResult Ctl(const std::string& args) {
    const std::string err_file = absl::StrCat(daemon().dir(), "/kvtierctl.stderr");
    CtlResult result;
    result.out = RunCommand(absl::StrCat("'", KVTIERCTL_PATH, "' ", args, " --server='",
                                         daemon().unix_target(), "' 2>'", err_file, "'"),
                            &result.exit_code);
    result.err = ReadFile(err_file);
    return result;
  }

  // Opens a session with the given id and tenant and offloads `rows` synthetic rows.
  void MakeSession(const std::string& id, const std::string& tenant, int64_t rows, uint64_t seed) {
    const synthetic::SyntheticKv kv(SmallOptions(rows, seed));
    SessionOptions options;
    options.id = id;
    options.tenant = tenant;
    absl::StatusOr<TestSession> session = OpenSession(*client_, kv, options);
    ASSERT_TRUE(session.ok()) << session.status();
    ASSERT_TRUE(OffloadAll(*client_, *session, kv, /*layers_per_call=*/2).ok());
  }

  // The two sessions every test may rely on (made once; tests only add and drop others).
  void EnsureSessions() {
    if (client_->GetSession("ctl-alpha").ok()) return;
    MakeSession("ctl-alpha", "alpha", kRows, 1);
    MakeSession("ctl-beta", "beta", kRows, 2);
  }

  std::unique_ptr<Client> client_;
};

TEST_F(KvtierctlTest, Health) {
  CtlResult plain = Ctl("health");
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_EQ(plain.out, "SERVING\n");

  CtlResult json = Ctl("health --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  google::protobuf::Struct parsed;
  ASSERT_TRUE(ParseJson(json.out, &parsed));
  EXPECT_EQ(parsed.fields().at("status").string_value(), "SERVING");
}

TEST_F(KvtierctlTest, SessionsListsEverySessionAndFiltersByTenant) {
  ASSERT_NO_FATAL_FAILURE(EnsureSessions());
  CtlResult all = Ctl("sessions --json");
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_EQ(std::count(all.out.begin(), all.out.end(), '\n'), 1) << all.out;
  v1::ListSessionsResponse listed;
  ASSERT_TRUE(ParseJson(all.out, &listed));
  std::vector<std::string> ids;
  for (const v1::SessionInfo& s : listed.sessions()) {
    ids.push_back(s.session_id());
    if (s.session_id() == "ctl-alpha") {
      EXPECT_EQ(s.tenant(), "alpha");
      EXPECT_EQ(s.rows_complete(), kRows);
      EXPECT_EQ(s.geometry().num_layers(), 4);
    }
  }
  EXPECT_THAT(ids, ::testing::IsSupersetOf({"ctl-alpha", "ctl-beta"}));

  CtlResult beta = Ctl("sessions list --tenant=beta --json");
  ASSERT_EQ(beta.exit_code, 0) << beta.err;
  v1::ListSessionsResponse only_beta;
  ASSERT_TRUE(ParseJson(beta.out, &only_beta));
  ASSERT_EQ(only_beta.sessions_size(), 1) << beta.out;
  EXPECT_EQ(only_beta.sessions(0).session_id(), "ctl-beta");
  EXPECT_EQ(only_beta.sessions(0).rows_stored(), kRows);

  CtlResult table = Ctl("sessions --tenant=alpha");
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("ctl-alpha"));
  EXPECT_THAT(table.out, Not(HasSubstr("ctl-beta")));
  EXPECT_THAT(table.out, HasSubstr("1 session(s)"));
}

TEST_F(KvtierctlTest, SessionsShow) {
  ASSERT_NO_FATAL_FAILURE(EnsureSessions());
  CtlResult json = Ctl("sessions show ctl-alpha --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  v1::SessionInfo info;
  ASSERT_TRUE(ParseJson(json.out, &info));
  absl::StatusOr<v1::SessionInfo> expected = client_->GetSession("ctl-alpha");
  ASSERT_TRUE(expected.ok()) << expected.status();
  EXPECT_EQ(info.session_id(), "ctl-alpha");
  EXPECT_EQ(info.tenant(), "alpha");
  EXPECT_EQ(info.rows_complete(), kRows);
  EXPECT_EQ(info.rows_candidate(), expected->rows_candidate());
  EXPECT_EQ(info.row_bytes(), expected->row_bytes());
  EXPECT_EQ(info.geometry().head_dim(), 32);
  EXPECT_EQ(info.geometry().scoring_layers_size(), 4);

  CtlResult text = Ctl("sessions show ctl-alpha");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr(absl::StrCat(kRows, " complete")));
  EXPECT_THAT(text.out, HasSubstr("scoring layers  0-3"));
}

TEST_F(KvtierctlTest, SessionsDropReleasesTheSession) {
  ASSERT_NO_FATAL_FAILURE(MakeSession("ctl-drop", "alpha", 512, 3));
  absl::StatusOr<v1::SessionInfo> before = client_->GetSession("ctl-drop");
  ASSERT_TRUE(before.ok()) << before.status();

  CtlResult drop = Ctl("sessions drop ctl-drop --json");
  ASSERT_EQ(drop.exit_code, 0) << drop.err;
  v1::ReleaseResponse released;
  ASSERT_TRUE(ParseJson(drop.out, &released));
  EXPECT_TRUE(released.session_released());
  EXPECT_EQ(released.rows_released(), 512);
  EXPECT_GT(released.bytes_freed(), 0u);
  EXPECT_EQ(client_->GetSession("ctl-drop").status().code(), absl::StatusCode::kNotFound);

  // Gone: show and drop say so, with the code, and exit 1.
  for (const char* verb : {"show", "drop"}) {
    CtlResult missing = Ctl(absl::StrCat("sessions ", verb, " ctl-drop"));
    EXPECT_EQ(missing.exit_code, 1) << verb;
    EXPECT_THAT(missing.out, IsEmpty()) << verb;
    EXPECT_THAT(missing.err, HasSubstr("no session \"ctl-drop\"")) << verb;
    EXPECT_THAT(missing.err, HasSubstr("NOT_FOUND")) << verb;
  }

  // The text form names what was freed.
  ASSERT_NO_FATAL_FAILURE(MakeSession("ctl-drop-2", "beta", 256, 4));
  CtlResult text = Ctl("sessions drop ctl-drop-2");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("dropped session ctl-drop-2: 256 rows"));
  EXPECT_EQ(client_->GetSession("ctl-drop-2").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(KvtierctlTest, TiersReportCapacitiesFromTheFlags) {
  ASSERT_NO_FATAL_FAILURE(EnsureSessions());
  CtlResult json = Ctl("tiers --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  ctl::TierReport report;
  ASSERT_TRUE(ParseJson(json.out, &report));
  std::vector<std::string> names;
  for (const ctl::TierUse& t : report.tiers()) {
    names.push_back(t.name());
    if (t.name() == "host") {
      EXPECT_EQ(t.capacity_bytes(), kHostCapacity);
    } else if (t.name() == "nvme") {
      EXPECT_EQ(t.capacity_bytes(), kDiskCapacity);
    }
    if (t.capacity_bytes() > 0) {
      EXPECT_DOUBLE_EQ(t.used_percent(), 100.0 * static_cast<double>(t.bytes()) /
                                             static_cast<double>(t.capacity_bytes()));
    }
  }
  EXPECT_THAT(names, UnorderedElementsAre("hbm", "host", "nvme"));
  // The sessions' rows are somewhere.
  uint64_t bytes = 0;
  for (const ctl::TierUse& t : report.tiers()) bytes += t.bytes();
  EXPECT_GT(bytes, 0u);

  CtlResult table = Ctl("tiers");
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_THAT(table.out, HasSubstr("96.0 MiB"));   // host capacity
  EXPECT_THAT(table.out, HasSubstr("512.0 MiB"));  // nvme capacity
}

TEST_F(KvtierctlTest, StatsPrintsEveryField) {
  ASSERT_NO_FATAL_FAILURE(EnsureSessions());
  CtlResult json = Ctl("stats --json");
  ASSERT_EQ(json.exit_code, 0) << json.err;
  v1::StatsResponse stats;
  ASSERT_TRUE(ParseJson(json.out, &stats));
  EXPECT_GE(stats.sessions(), 2);
  EXPECT_GE(stats.offloaded_rows(), 2u * kRows);
  EXPECT_EQ(stats.durability(), "wal");
  EXPECT_FALSE(stats.version().empty());
  EXPECT_EQ(stats.tiers_size(), 3);
  // Every field is printed, zeros included, under its proto name.
  google::protobuf::Struct raw;
  ASSERT_TRUE(ParseJson(json.out, &raw));
  const google::protobuf::Descriptor* descriptor = v1::StatsResponse::descriptor();
  for (int i = 0; i < descriptor->field_count(); ++i) {
    EXPECT_TRUE(raw.fields().contains(descriptor->field(i)->name()))
        << descriptor->field(i)->name() << " missing from " << json.out;
  }

  CtlResult text = Ctl("stats");
  ASSERT_EQ(text.exit_code, 0) << text.err;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    if (descriptor->field(i)->name() == "tiers") continue;
    EXPECT_THAT(text.out, HasSubstr(descriptor->field(i)->name() + " "));
  }
  EXPECT_THAT(text.out, HasSubstr("durability         wal"));
  EXPECT_THAT(text.out, HasSubstr("TIER"));
}

// Stats.uptime_seconds and kvtier_start_time_seconds count from the same moment (main's
// start time, before recovery): start time + uptime is the time the Stats call was served.
TEST_F(KvtierctlTest, StatsUptimeCountsFromTheMetricsStartTime) {
  absl::StatusOr<std::string> metrics = HttpGet(daemon().metrics_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const std::string key = "\nkvtier_start_time_seconds ";
  const size_t at = metrics->find(key);
  ASSERT_NE(at, std::string::npos) << *metrics;
  const double start_time = std::stod(metrics->substr(at + key.size()));
  const double before = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  absl::StatusOr<v1::StatsResponse> stats = client_->Stats();
  const double after = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  ASSERT_TRUE(stats.ok()) << stats.status();
  // 5 ms for the clocks' rounding; the recovery before the service was made takes longer.
  EXPECT_GE(start_time + stats->uptime_seconds(), before - 0.005)
      << "start " << start_time << " uptime " << stats->uptime_seconds();
  EXPECT_LE(start_time + stats->uptime_seconds(), after + 0.005)
      << "start " << start_time << " uptime " << stats->uptime_seconds();
}

TEST_F(KvtierctlTest, WatchJsonPrintsOneFramePerLine) {
  ASSERT_NO_FATAL_FAILURE(EnsureSessions());
  CtlResult watch = Ctl("watch --count 2 --interval 0.2 --json");
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  const std::vector<std::string> lines = absl::StrSplit(watch.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << watch.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    ctl::WatchFrame frame;
    ASSERT_TRUE(ParseJson(lines[i], &frame));
    EXPECT_EQ(frame.frame(), static_cast<int64_t>(i + 1));
    EXPECT_EQ(frame.tiers_size(), 3);
    EXPECT_GE(frame.stats().sessions(), 2);
    std::vector<std::string> ids;
    for (const v1::SessionInfo& s : frame.sessions()) ids.push_back(s.session_id());
    EXPECT_THAT(ids, ::testing::IsSupersetOf({"ctl-alpha", "ctl-beta"}));
    // No rate in the first frame: there is nothing to take a difference from.
    EXPECT_EQ(frame.has_repairs_per_second(), i > 0) << lines[i];
    EXPECT_EQ(frame.has_offloaded_rows_per_second(), i > 0) << lines[i];
  }
}

// A running kvtierctl (argv after the program name), its stdout read line by line; stderr
// goes to the test's. Killed and waited for when destroyed.
class CtlProcess {
 public:
  explicit CtlProcess(const std::vector<std::string>& args) {
    std::vector<std::string> words = {KVTIERCTL_PATH};
    words.insert(words.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& w : words) argv.push_back(w.data());
    argv.push_back(nullptr);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    if (pid_ < 0) {
      close(fds[0]);
      return;
    }
    out_ = fdopen(fds[0], "r");
  }
  ~CtlProcess() {
    if (pid_ > 0) kill(pid_, SIGKILL);
    Close();
  }
  CtlProcess(const CtlProcess&) = delete;
  CtlProcess& operator=(const CtlProcess&) = delete;

  // The next line without its newline; empty at the end of the output.
  std::string NextLine() {
    std::string line;
    if (out_ == nullptr) return line;
    char buffer[4096];
    while (std::fgets(buffer, sizeof(buffer), out_) != nullptr) {
      line += buffer;
      if (!line.empty() && line.back() == '\n') {
        line.pop_back();
        break;
      }
    }
    return line;
  }
  // Waits for the process; returns its exit status, or -1 when a signal ended it.
  int Close() {
    if (out_ != nullptr) std::fclose(out_);
    out_ = nullptr;
    if (pid_ <= 0) return -1;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  void Kill() {
    if (pid_ > 0) kill(pid_, SIGTERM);
  }

 private:
  pid_t pid_ = 0;
  FILE* out_ = nullptr;
};

// Whatever the frames' timing, each rate is the counters' growth over the uptime's growth
// between the frame and the one before (both from the frames' own fields), and the rates add
// up to what happened: one repair, one offloaded session.
TEST_F(KvtierctlTest, WatchRatesAreCounterGrowthOverUptimeGrowth) {
  ASSERT_NO_FATAL_FAILURE(EnsureSessions());
  CtlProcess watch({"watch", "--count=120", "--interval=0.5", "--json",
                    absl::StrCat("--server=", daemon().unix_target())});
  ctl::WatchFrame first;
  ASSERT_TRUE(ParseJson(watch.NextLine(), &first));
  EXPECT_FALSE(first.has_repairs_per_second());

  const synthetic::SyntheticKv kv(SmallOptions(kRows, 1));
  absl::StatusOr<v1::SessionInfo> alpha = client_->GetSession("ctl-alpha");
  ASSERT_TRUE(alpha.ok()) << alpha.status();
  absl::StatusOr<RowGeometry> geometry = RowGeometry::FromProto(alpha->geometry());
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  absl::StatusOr<RepairResult> repair = client_->Repair(
      NeedleRepair(kv, "ctl-alpha", 0, /*budget=*/16, /*num_tokens=*/4, v1::RETURN_MODE_POSITIONS),
      *geometry);
  ASSERT_TRUE(repair.ok()) << repair.status();
  ASSERT_NO_FATAL_FAILURE(MakeSession("ctl-watch", "gamma", 128, 5));

  // Frames until one lists the new session: it was sampled after everything above finished.
  ctl::WatchFrame previous = first;
  double repairs = 0, offloaded = 0;  // the rates times their windows, summed
  bool listed = false;
  for (int n = 2; n <= 120 && !listed; ++n) {
    const std::string line = watch.NextLine();
    ASSERT_FALSE(line.empty()) << "watch ended before a frame listed ctl-watch";
    ctl::WatchFrame frame;
    ASSERT_TRUE(ParseJson(line, &frame));
    EXPECT_EQ(frame.frame(), n);
    ASSERT_TRUE(frame.has_repairs_per_second()) << line;
    ASSERT_TRUE(frame.has_offloaded_rows_per_second()) << line;
    const double window = frame.stats().uptime_seconds() - previous.stats().uptime_seconds();
    ASSERT_GT(window, 0) << line;
    EXPECT_NEAR(frame.rate_window_seconds(), window, 1e-9);
    EXPECT_NEAR(frame.repairs_per_second(),
                static_cast<double>(frame.stats().repairs() - previous.stats().repairs()) / window,
                1e-9);
    EXPECT_NEAR(
        frame.offloaded_rows_per_second(),
        static_cast<double>(frame.stats().offloaded_rows() - previous.stats().offloaded_rows()) /
            window,
        1e-6);
    repairs += frame.repairs_per_second() * frame.rate_window_seconds();
    offloaded += frame.offloaded_rows_per_second() * frame.rate_window_seconds();
    for (const v1::SessionInfo& s : frame.sessions()) listed |= s.session_id() == "ctl-watch";
    previous = std::move(frame);
  }
  watch.Kill();
  watch.Close();
  EXPECT_TRUE(listed) << "no frame listed the session opened after frame 1";
  // Nothing else touches the daemon while this test runs.
  EXPECT_EQ(previous.stats().repairs() - first.stats().repairs(), 1u);
  EXPECT_NEAR(repairs, 1.0, 1e-6);
  // The daemon counts a row once per Offload call that carries it (two calls of two layers
  // each here), so the offload grew the counter by at least the 128 rows.
  const uint64_t grown = previous.stats().offloaded_rows() - first.stats().offloaded_rows();
  EXPECT_GE(grown, 128u);
  EXPECT_NEAR(offloaded, static_cast<double>(grown), 1e-3);
  ASSERT_TRUE(client_->ReleaseSession("ctl-watch").ok());
}

TEST_F(KvtierctlTest, WatchTextAppendsFramesWhenNotATerminal) {
  ASSERT_NO_FATAL_FAILURE(EnsureSessions());
  CtlResult watch = Ctl("watch --count=2 --interval=0.2 --top=1");
  ASSERT_EQ(watch.exit_code, 0) << watch.err;
  EXPECT_THAT(watch.out, Not(HasSubstr("\x1b[")));  // no screen clearing into a pipe
  const std::vector<std::string> headers = absl::StrSplit(watch.out, "repairs/s ");
  EXPECT_EQ(headers.size(), 3u) << watch.out;  // two frames
  EXPECT_THAT(watch.out, HasSubstr("frame 2"));
  // The row counter counts a row once per Offload call: the label says so.
  EXPECT_THAT(watch.out, HasSubstr("offload rows/s (per call) "));
  EXPECT_THAT(watch.out, HasSubstr("TIER"));
  EXPECT_THAT(watch.out, HasSubstr("more\n"));  // --top=1 of at least 2 sessions
}

TEST_F(KvtierctlTest, UsageErrorsExit2) {
  for (const char* args :
       {"no-such-command", "sessions show", "sessions drop a b", "sessions frob", "tiers extra",
        "stats extra", "health extra", "watch --interval=0", "watch --count=-1",
        "watch --count=abc", "health --no_such_flag", "stats --json=maybe", "watch --interval=inf",
        "watch --interval=nan", "watch --interval=3601", "watch --interval=-1",
        "health --deadline_seconds=-1", "stats --deadline_seconds=inf"}) {
    CtlResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.err;
    EXPECT_THAT(r.out, IsEmpty()) << args;
    EXPECT_THAT(r.err, Not(IsEmpty())) << args;
  }
}

TEST(KvtierctlNoServer, RpcErrorExits1WithTheCode) {
  for (const char* command : {"health", "sessions", "tiers", "stats", "watch --count=1"}) {
    int exit_code = 0;
    const std::string out = RunCommand(
        absl::StrCat("'", KVTIERCTL_PATH, "' ", command,
                     " --deadline_seconds=1 --server=unix:///nonexistent/kvtierd.sock 2>&1"),
        &exit_code);
    EXPECT_EQ(exit_code, 1) << command << ": " << out;
    EXPECT_THAT(out, HasSubstr("UNAVAILABLE")) << command;
  }
}

// A stand-in daemon on a Unix socket whose Stats answers are scripted, for what a real one
// cannot be made to do on cue: restart between two frames, answer slowly, lose a reply.
class FakeKvTier final : public v1::KvTier::Service {
 public:
  struct Answer {
    double uptime_seconds;
    uint64_t repairs;
  };
  // Stats returns `answers` in turn (the last one again once they run out); when `answers`
  // is empty the uptime is the time since construction. Stats call number `slow_call`
  // (1-based) first sleeps `slow`.
  std::vector<Answer> answers;
  int slow_call = 0;
  absl::Duration slow;
  std::atomic<int> stats_calls{0};
  std::atomic<int> release_calls{0};

  grpc::Status Stats(grpc::ServerContext*, const v1::StatsRequest*,
                     v1::StatsResponse* response) override {
    const int n = ++stats_calls;
    if (n == slow_call) absl::SleepFor(slow);
    response->set_version("fake");
    if (answers.empty()) {
      response->set_uptime_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
    } else {
      const Answer& a = answers[std::min<size_t>(n, answers.size()) - 1];
      response->set_uptime_seconds(a.uptime_seconds);
      response->set_repairs(a.repairs);
    }
    return grpc::Status::OK;
  }
  grpc::Status ListSessions(grpc::ServerContext*, const v1::ListSessionsRequest*,
                            v1::ListSessionsResponse*) override {
    return grpc::Status::OK;
  }
  // As if the session was dropped and the reply lost on the way back.
  grpc::Status Release(grpc::ServerContext*, const v1::ReleaseRequest*,
                       v1::ReleaseResponse*) override {
    ++release_calls;
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "reply lost");
  }

 private:
  const absl::Time started_ = absl::Now();
};

class FakeServer {
 public:
  explicit FakeServer(FakeKvTier* service) {
    char pattern[] = "/tmp/kvtierctl-fake-XXXXXX";
    if (mkdtemp(pattern) == nullptr) return;
    dir_ = pattern;
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("unix:", dir_, "/fake.sock"),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(service);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() {
    if (server_ != nullptr) server_->Shutdown(std::chrono::system_clock::now());
    server_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  bool ok() const { return server_ != nullptr; }
  std::string target() const { return absl::StrCat("unix://", dir_, "/fake.sock"); }

 private:
  std::string dir_;
  std::unique_ptr<grpc::Server> server_;
};

// Frames 1..`count` of `kvtierctl watch --json` against `server` with `flags`.
std::vector<ctl::WatchFrame> WatchFrames(const FakeServer& server, int count,
                                         const std::string& interval) {
  CtlProcess watch({"watch", "--json", absl::StrCat("--count=", count),
                    absl::StrCat("--interval=", interval),
                    absl::StrCat("--server=", server.target())});
  std::vector<ctl::WatchFrame> frames;
  for (std::string line = watch.NextLine(); !line.empty(); line = watch.NextLine()) {
    ctl::WatchFrame frame;
    EXPECT_TRUE(ParseJson(line, &frame));
    frames.push_back(std::move(frame));
  }
  EXPECT_EQ(watch.Close(), 0);
  return frames;
}

TEST(KvtierctlFake, WatchGivesNoRatesAcrossARestart) {
  FakeKvTier fake;
  // Frame 2: the uptime grew by far more than the 0.3 s between the frames: another process,
  // up longer. Frame 3: 0.3 s more, as expected. Frame 4: the uptime went back.
  fake.answers = {{10, 5}, {100, 5}, {100.3, 8}, {2, 0}};
  FakeServer server(&fake);
  ASSERT_TRUE(server.ok());
  const std::vector<ctl::WatchFrame> frames = WatchFrames(server, 4, "0.3");
  ASSERT_EQ(frames.size(), 4u);
  EXPECT_FALSE(frames[0].has_repairs_per_second());
  EXPECT_FALSE(frames[1].has_repairs_per_second()) << "uptime grew 90 s in about 0.3 s";
  EXPECT_EQ(frames[1].rate_window_seconds(), 0);
  ASSERT_TRUE(frames[2].has_repairs_per_second());
  EXPECT_NEAR(frames[2].rate_window_seconds(), 0.3, 1e-9);
  EXPECT_NEAR(frames[2].repairs_per_second(), 3 / 0.3, 1e-9);
  EXPECT_FALSE(frames[3].has_repairs_per_second()) << "uptime went back";
}

TEST(KvtierctlFake, WatchSkipsTicksMissedByASlowFrame) {
  FakeKvTier fake;
  fake.slow_call = 2;
  fake.slow = absl::Milliseconds(1500);
  FakeServer server(&fake);
  ASSERT_TRUE(server.ok());
  const std::vector<ctl::WatchFrame> frames = WatchFrames(server, 5, "0.3");
  ASSERT_EQ(frames.size(), 5u);
  // Frame 2 took 1.5 s: the ticks at 0.6, 0.9 and 1.2 s passed meanwhile. Frames 3, 4 and 5
  // come at the next ticks, 0.3 s apart, not back to back to catch up.
  EXPECT_GE(frames[4].unix_ms() - frames[2].unix_ms(), 300)
      << frames[2].unix_ms() << " " << frames[3].unix_ms() << " " << frames[4].unix_ms();
  EXPECT_GE(frames[2].unix_ms() - frames[1].unix_ms(), 1500);
  // The uptime grew with the clock: every frame after the first has rates.
  for (size_t i = 1; i < frames.size(); ++i) {
    EXPECT_TRUE(frames[i].has_repairs_per_second()) << i;
  }
}

TEST(KvtierctlFake, SessionsDropIsSentOnce) {
  FakeKvTier fake;
  FakeServer server(&fake);
  ASSERT_TRUE(server.ok());
  int exit_code = 0;
  const std::string out =
      RunCommand(absl::StrCat("'", KVTIERCTL_PATH, "' sessions drop gone --deadline_seconds=5",
                              " --server='", server.target(), "' 2>&1"),
                 &exit_code);
  EXPECT_EQ(exit_code, 1) << out;
  EXPECT_THAT(out, HasSubstr("UNAVAILABLE")) << out;
  // A retry after a lost reply would find the session gone and say NOT_FOUND.
  EXPECT_EQ(fake.release_calls.load(), 1);
}

}  // namespace
}  // namespace kvtier::testing
