#include "tests/daemon_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

extern char** environ;

namespace kvtier::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(10);

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

// Parses the ready file's JSON with protobuf's JSON parser (numbers come back as doubles).
absl::Status ParseReady(const std::string& text, int* tcp_port, int* metrics_port) {
  google::protobuf::Struct ready;
  if (!google::protobuf::util::JsonStringToMessage(text, &ready).ok()) {
    return absl::InvalidArgumentError(absl::StrCat("ready file is not JSON: ", text));
  }
  const auto& fields = ready.fields();
  auto tcp = fields.find("tcp_port");
  auto metrics = fields.find("metrics_port");
  if (tcp == fields.end() || metrics == fields.end()) {
    return absl::InvalidArgumentError(absl::StrCat("ready file lacks ports: ", text));
  }
  *tcp_port = static_cast<int>(tcp->second.number_value());
  *metrics_port = static_cast<int>(metrics->second.number_value());
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(const std::vector<std::string>& extra_flags,
                                                      absl::Duration timeout,
                                                      const std::string& binary) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp", "/kvtierd-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  std::unique_ptr<Daemon> daemon(new Daemon());
  daemon->dir_ = pattern;
  daemon->unix_socket_ = daemon->dir_ + "/kvtierd.sock";
  daemon->args_ = {
      binary.empty() ? std::string(KVTIERD_PATH) : binary,
      "--unix_socket=" + daemon->unix_socket_,
      "--listen=127.0.0.1:0",
      "--metrics_listen=127.0.0.1:0",
      "--data_dir=" + daemon->dir_ + "/data",
      "--ready_file=" + daemon->dir_ + "/ready.json",
  };
  daemon->args_.insert(daemon->args_.end(), extra_flags.begin(), extra_flags.end());
  if (absl::Status s = daemon->Spawn(timeout); !s.ok()) return s;  // ~Daemon stops the child
  return daemon;
}

absl::Status Daemon::Spawn(absl::Duration timeout) {
  const std::string ready_file = dir_ + "/ready.json";
  const std::string log_file = dir_ + "/kvtierd.log";
  std::error_code ec;
  std::filesystem::remove(ready_file, ec);  // a restart must not see the last run's file
  std::vector<std::string> args = args_;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_file.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  pid_t pid;
  const int err = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    stopped_ = true;
    return absl::InternalError(absl::StrCat("posix_spawn ", argv[0], ": ", std::strerror(err)));
  }
  pid_ = pid;
  stopped_ = false;

  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int wait_status;
    if (waitpid(pid, &wait_status, WNOHANG) == pid) {
      stopped_ = true;
      exit_code_ = ExitCode(wait_status);
      return absl::UnavailableError(absl::StrCat("kvtierd exited with ", ExitCode(wait_status),
                                                 " before it was ready; log:\n", LogTail()));
    }
    // The daemon renames the file into place, so a file that exists is complete.
    if (std::filesystem::exists(ready_file)) {
      return ParseReady(ReadFile(ready_file), &tcp_port_, &metrics_port_);
    }
    if (absl::Now() >= deadline) {
      return absl::UnavailableError(absl::StrCat(
          "kvtierd not ready after ", absl::FormatDuration(timeout), "; log:\n", LogTail()));
    }
    absl::SleepFor(kPollInterval);
  }
}

absl::StatusOr<int> Daemon::Kill() {
  if (stopped_) return exit_code_;
  stopped_ = true;
  kill(pid_, SIGKILL);
  int wait_status;
  while (waitpid(pid_, &wait_status, 0) < 0 && errno == EINTR) {
  }
  exit_code_ = ExitCode(wait_status);
  return exit_code_;
}

absl::Status Daemon::Restart(absl::Duration timeout) {
  if (!stopped_) {
    return absl::FailedPreconditionError("Restart: the daemon is still running");
  }
  return Spawn(timeout);
}

Daemon::~Daemon() {
  if (!stopped_) Stop().IgnoreError();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

absl::StatusOr<int> Daemon::Stop(absl::Duration timeout) {
  if (stopped_) return exit_code_;
  stopped_ = true;
  kill(pid_, SIGTERM);
  const absl::Time deadline = absl::Now() + timeout;
  int wait_status;
  while (true) {
    const pid_t r = waitpid(pid_, &wait_status, WNOHANG);
    if (r == pid_) {
      exit_code_ = ExitCode(wait_status);
      return exit_code_;
    }
    if (r < 0 && errno != EINTR) {
      exit_code_ = absl::InternalError(absl::StrCat("waitpid: ", std::strerror(errno)));
      return exit_code_;
    }
    if (absl::Now() >= deadline) break;
    absl::SleepFor(kPollInterval);
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &wait_status, 0);
  exit_code_ = absl::DeadlineExceededError(absl::StrCat("kvtierd did not exit within ",
                                                        absl::FormatDuration(timeout),
                                                        " of SIGTERM; killed. Log:\n", LogTail()));
  return exit_code_;
}

std::string Daemon::LogTail(size_t bytes) const {
  const std::string log = ReadFile(dir_ + "/kvtierd.log");
  return log.size() <= bytes ? log : log.substr(log.size() - bytes);
}

absl::StatusOr<std::string> HttpGet(int port, const std::string& path, absl::Duration timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() { close(fd); }
  } closer{fd};
  const timeval tv = absl::ToTimeval(timeout);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect 127.0.0.1:", port, ": ", std::strerror(errno)));
  }
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1:", port, "\r\n\r\n");
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return absl::UnavailableError(absl::StrCat("send: ", std::strerror(errno)));
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[16384];
  while (true) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) break;  // HTTP/1.0: the server closes after the body
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("recv: ", std::strerror(errno)));
    }
    response.append(buf, static_cast<size_t>(n));
  }
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    return absl::InternalError("HTTP response without a header end");
  }
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) {
    return absl::InternalError(absl::StrCat("HTTP ", status_line));
  }
  return response.substr(header_end + 4);
}

}  // namespace kvtier::testing
