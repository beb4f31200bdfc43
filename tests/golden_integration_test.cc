// Golden repair cases played through the daemon (float32 sessions): the server's selection
// must equal the reference's exactly, through the SDK and through `kvtierctl repair-case`.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/daemon_harness.h"
#include "tests/integration_util.h"
#include "tests/shared_daemon_test.h"
#include "tools/case_player/case_player.h"
#include "tools/golden/golden_case.h"

namespace kvtier::testing {
namespace {

using ::testing::ElementsAreArray;

class GoldenTest : public SharedDaemonTest<GoldenTest, ::testing::TestWithParam<std::string>> {
 protected:
  void SetUp() override {
    SharedDaemonTest::SetUp();
    if (HasFatalFailure()) return;
    client_ = MakeClient(daemon().unix_target());
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<Client> client_;
};

std::vector<std::string> CaseDirs() { return golden::ListCases(golden::DefaultReferenceDir()); }

TEST(GoldenCases, ReferenceFolderHasCases) {
  EXPECT_FALSE(CaseDirs().empty()) << "no case under " << golden::DefaultReferenceDir();
}

TEST_P(GoldenTest, ServerChoosesExactlyTheExpectedRows) {
  absl::StatusOr<golden::Case> c = golden::LoadCase(GetParam());
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<case_player::CaseOutcome> outcome = case_player::PlayCase(*client_, *c);
  ASSERT_TRUE(outcome.ok()) << outcome.status();
  EXPECT_THAT(outcome->chosen, ElementsAreArray(c->expected_chosen));
  EXPECT_THAT(outcome->sorted, ElementsAreArray(c->expected_sorted));
  for (int64_t p : c->needle_positions) {
    EXPECT_NE(std::find(outcome->chosen.begin(), outcome->chosen.end(), p), outcome->chosen.end())
        << "needle position " << p;
  }
}

std::vector<int64_t> IntList(const google::protobuf::Value& value) {
  std::vector<int64_t> out;
  for (const google::protobuf::Value& v : value.list_value().values()) {
    out.push_back(static_cast<int64_t>(v.number_value()));
  }
  return out;
}

TEST_P(GoldenTest, KvtierctlRepairCasePrintsTheExpectedRows) {
  absl::StatusOr<golden::Case> c = golden::LoadCase(GetParam());
  ASSERT_TRUE(c.ok()) << c.status();
  int exit_code = 0;
  const std::string out = RunCommand(absl::StrCat("'", KVTIERCTL_PATH, "' repair-case --server='",
                                                  daemon().unix_target(), "' '", GetParam(), "'"),
                                     &exit_code);
  ASSERT_EQ(exit_code, 0) << out;
  // Exactly one line of JSON.
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << out;
  google::protobuf::Struct json;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out, &json).ok()) << out;
  EXPECT_THAT(IntList(json.fields().at("chosen")), ElementsAreArray(c->expected_chosen));
  EXPECT_THAT(IntList(json.fields().at("sorted")), ElementsAreArray(c->expected_sorted));
}

TEST(Kvtierctl, RepairCaseFailsClearlyWithoutAServer) {
  const std::vector<std::string> cases = CaseDirs();
  ASSERT_FALSE(cases.empty());
  int exit_code = 0;
  const std::string out = RunCommand(
      absl::StrCat("'", KVTIERCTL_PATH,
                   "' repair-case --deadline_seconds=2 --server=unix:///nonexistent/kvtierd.sock '",
                   cases[0], "' 2>&1"),
      &exit_code);
  EXPECT_NE(exit_code, 0);
  EXPECT_NE(out.find("UNAVAILABLE"), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Reference, GoldenTest, ::testing::ValuesIn(CaseDirs()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(info.param.rfind('/') + 1);
                           for (char& ch : name) {
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace kvtier::testing
