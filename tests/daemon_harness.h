// Starts the real kvtierd as a child process for integration tests: a fresh temporary
// directory, a Unix socket in it, TCP and metrics on 127.0.0.1 port 0, and the ready file
// polled (never a blind sleep) until every listener is up.
#ifndef KVTIER_TESTS_DAEMON_HARNESS_H_
#define KVTIER_TESTS_DAEMON_HARNESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvtier::testing {

// One running kvtierd. Not thread-safe (owned by one test suite).
class Daemon {
 public:
  // Starts `binary` (default: the kvtierd built with the tests) with
  //   --unix_socket=DIR/kvtierd.sock --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0
  //   --data_dir=DIR/data --ready_file=DIR/ready.json
  // followed by `extra_flags`, in a new directory DIR under $TMPDIR (or /tmp); its output
  // goes to DIR/kvtierd.log. Waits up to `timeout` for the ready file. UNAVAILABLE with the
  // log's tail when the daemon exits first or the wait times out (the child is killed).
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(
      const std::vector<std::string>& extra_flags = {}, absl::Duration timeout = absl::Seconds(60),
      const std::string& binary = "");

  // Stops the daemon if it still runs (as Stop) and removes DIR.
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Sends SIGTERM and waits up to `timeout` for the exit; returns the exit code (128 + n when
  // killed by signal n). After the timeout the daemon is killed with SIGKILL and
  // DEADLINE_EXCEEDED is returned. Calling it again returns the same result.
  absl::StatusOr<int> Stop(absl::Duration timeout = absl::Seconds(30));

  // Kills the daemon with SIGKILL (a crash: nothing is flushed) and reaps it. Returns 137.
  absl::StatusOr<int> Kill();

  // Starts the daemon again in the same DIR with the same flags (after Stop or Kill), and
  // waits for it to be ready as Start does. Ports may change.
  absl::Status Restart(absl::Duration timeout = absl::Seconds(60));

  // "unix:///.../kvtierd.sock"
  std::string unix_target() const { return "unix://" + unix_socket_; }
  // "127.0.0.1:<port>"
  std::string tcp_target() const { return "127.0.0.1:" + std::to_string(tcp_port_); }
  const std::string& unix_socket() const { return unix_socket_; }
  int tcp_port() const { return tcp_port_; }
  int metrics_port() const { return metrics_port_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }

  // The last `bytes` bytes of the daemon's log.
  std::string LogTail(size_t bytes = 4000) const;

 private:
  Daemon() = default;
  // Spawns the daemon with args_ and waits for its ready file.
  absl::Status Spawn(absl::Duration timeout);

  std::string dir_;
  std::vector<std::string> args_;
  std::string unix_socket_;
  pid_t pid_ = -1;
  int tcp_port_ = 0;
  int metrics_port_ = 0;
  bool stopped_ = false;
  absl::StatusOr<int> exit_code_ = 0;
};

// Body of `GET path` from an HTTP/1.0 server on 127.0.0.1:`port`. UNAVAILABLE when the
// connection fails, INTERNAL on a non-200 response.
absl::StatusOr<std::string> HttpGet(int port, const std::string& path,
                                    absl::Duration timeout = absl::Seconds(10));

}  // namespace kvtier::testing

#endif  // KVTIER_TESTS_DAEMON_HARNESS_H_
