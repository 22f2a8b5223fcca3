// Policy administration end to end: `cellctl policy check`, `policy list`, and reloading the
// directory with `cellctl reload` and SIGHUP.
#include <signal.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

using testing::CelldProcess;
using testing::CommandResult;
using testing::PolicySpec;
using testing::RunCellctl;

class PolicyAdminTest : public testing::CelldTest {
 protected:
  void SetUp() override {
    CelldTest::SetUp();
    if (IsSkipped()) return;
    testing::WritePolicy(policies_, PolicySpec{});
  }
  void Start() { StartCelld({}); }
  std::string PolicyNames() {
    CommandResult r = RunCellctl(celld_->socket(), {"policy", "list"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string names;
    for (std::string_view line : Split(r.out, '\n')) {
      if (line.empty() || StartsWith(line, "NAME")) continue;
      names += std::string(line.substr(0, line.find(' '))) + " ";
    }
    return names;
  }
};

TEST_F(PolicyAdminTest, CheckPrintsTheEffectivePolicyAndFilterOrTheProblem) {
  std::string good = testing::SourceDir() + "/policy/examples/strict.textproto";
  CommandResult ok = testing::RunCommand({testing::BinPath("cellctl"), "policy", "check", good});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("name: \"strict\""), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("read"), std::string::npos) << ok.out;  // an allowed system call

  std::string bad = local_.File("broken.textproto");
  ASSERT_TRUE(
      CreateFileWithContent(bad, "name: \"broken\"\nuids: 0\ncgroup { memory_max: 5 }\n", 0644));
  CommandResult no = testing::RunCommand({testing::BinPath("cellctl"), "policy", "check", bad});
  EXPECT_EQ(no.exit_code, 1);
  EXPECT_NE(no.err.find("broken.textproto:3:"), std::string::npos) << no.err;
}

TEST_F(PolicyAdminTest, ReloadSwapsTheWholeSetOrNothingAndSessionsKeepTheirPolicy) {
  Start();
  EXPECT_EQ(PolicyNames(), "default ");
  // A running session under the old "default".
  auto session = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(session);
  uint32_t old_context = session->opened().context_length();

  // All valid: the new set replaces the old at once.
  PolicySpec extra;
  extra.name = "extra";
  testing::WritePolicy(policies_, extra);
  PolicySpec smaller;
  smaller.context_length = 64;
  testing::WritePolicy(policies_, smaller);  // "default" changes too
  CommandResult reload = RunCellctl(celld_->socket(), {"reload"});
  ASSERT_EQ(reload.exit_code, 0) << reload.err;
  EXPECT_EQ(PolicyNames(), "default extra ");
  auto fresh = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->opened().context_length(), 64u);
  // The session that started before keeps its policy.
  EXPECT_EQ(session->ready().context_length(), old_context);
  api::Generate g;
  g.set_prompt("still here");
  g.set_max_new_tokens(4);
  EXPECT_TRUE(session->Generate(g, [](const api::Piece&) {}));

  // One invalid file: the old set stays, the error names the file, for the caller and the log.
  ASSERT_TRUE(CreateFileWithContent(policies_ + "/bad.textproto",
                                    "name: \"bad\"\nuids: 0\nnot_a_field: 1\n", 0644));
  reload = RunCellctl(celld_->socket(), {"reload"});
  EXPECT_EQ(reload.exit_code, 1);
  EXPECT_NE(reload.err.find("bad.textproto:3:"), std::string::npos) << reload.err;
  EXPECT_NE(reload.err.find("POLICY_INVALID"), std::string::npos) << reload.err;
  EXPECT_EQ(PolicyNames(), "default extra ");

  // SIGHUP does the same; fixed files are picked up.
  ASSERT_EQ(::unlink((policies_ + "/bad.textproto").c_str()), 0);
  ASSERT_EQ(::unlink((policies_ + "/extra.textproto").c_str()), 0);
  ASSERT_EQ(::kill(celld_->pid(), SIGHUP), 0);
  // A signal is handled whenever celld's loop gets to it: wait for the reload, bounded only
  // against a hang.
  testing::PollUntil([&] { return PolicyNames() == "default "; });
  EXPECT_EQ(PolicyNames(), "default ");
  EXPECT_TRUE(session->Close());
  EXPECT_TRUE(fresh->Close());
}

TEST_F(PolicyAdminTest, OnlyRootMayReload) {
  PolicySpec open_to_all;
  open_to_all.uids = {0, 4242};
  testing::WritePolicy(policies_, open_to_all);
  Start();
  CommandResult r = RunCellctl(celld_->socket(), {"reload"}, uid_t{4242});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("PERMISSION_DENIED"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace cellhouse
