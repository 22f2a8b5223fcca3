// A gtest fixture for end-to-end tests around one celld: a model generated once per test binary,
// a temporary directory and policy directory per test, and a celld that must exit 0 at the end.
//
//   class MyTest : public testing::CelldTest {};
//   TEST_F(MyTest, Works) {
//     testing::WritePolicy(policies_, testing::PolicySpec{});
//     StartCelld({});
//     EXPECT_TRUE(Sessions().empty());
//   }
#ifndef CELLHOUSE_TESTS_SUPPORT_CELLD_FIXTURE_H_
#define CELLHOUSE_TESTS_SUPPORT_CELLD_FIXTURE_H_

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ipc/api.pb.h"
#include "tests/support/celld_harness.h"

namespace cellhouse::testing {

class CelldTest : public ::testing::Test {
 protected:
  // The tiny preset, generated on first use and shared by every test of the binary.
  static const std::string& Model();

  void SetUp() override;     // skips without root; policies_ names an empty directory
  void TearDown() override;  // a running celld gets SIGTERM and must exit 0

  // Starts celld; options.model and options.policy_dir default to Model() and policies_.
  void StartCelld(CelldOptions options);
  // `cellctl sessions` as root sees it.
  std::vector<api::SessionInfo> Sessions();

  TempDir local_;
  std::string policies_;
  std::unique_ptr<CelldProcess> celld_;
};

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_SUPPORT_CELLD_FIXTURE_H_
