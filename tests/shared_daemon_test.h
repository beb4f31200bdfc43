// A GoogleTest fixture base that shares one kvtierd across the tests of a suite
// (prometheus-cpp's exposer takes ~2 s to stop, so one daemon per test would be slow).
//
//   class FlowTest : public SharedDaemonTest<FlowTest> { ... };
//   // optional: static std::vector<std::string> DaemonFlags() { return {"--x=1"}; }
#ifndef KVTIER_TESTS_SHARED_DAEMON_TEST_H_
#define KVTIER_TESTS_SHARED_DAEMON_TEST_H_

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/daemon_harness.h"

namespace kvtier::testing {

template <typename Derived, typename Base = ::testing::Test>
class SharedDaemonTest : public Base {
 public:
  // Extra kvtierd flags of the suite; a fixture hides this to add its own.
  static std::vector<std::string> DaemonFlags() { return {}; }

  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(Derived::DaemonFlags());
    if (daemon.ok()) {
      daemon_ = std::move(*daemon);
    } else {
      start_error_ = daemon.status().ToString();
    }
  }

  // SIGTERM must drain and exit 0.
  static void TearDownTestSuite() {
    if (daemon_ == nullptr) return;
    absl::StatusOr<int> code = daemon_->Stop();
    EXPECT_TRUE(code.ok()) << code.status();
    if (code.ok()) {
      EXPECT_EQ(*code, 0) << daemon_->LogTail();
    }
    daemon_.reset();
  }

 protected:
  void SetUp() override { ASSERT_NE(daemon_, nullptr) << start_error_; }

  static Daemon& daemon() { return *daemon_; }

 private:
  static inline std::unique_ptr<Daemon> daemon_;
  static inline std::string start_error_;
};

}  // namespace kvtier::testing

#endif  // KVTIER_TESTS_SHARED_DAEMON_TEST_H_
