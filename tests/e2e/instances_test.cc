// celld instances and what others can see of them, end to end: two real celld on one cgroup
// subtree (the second is refused before it touches anything, the first keeps serving), one
// subtree per instance by default, and a session's id nowhere another user can read it.
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "ipc/messages.h"
#include "supervisor/cgroup/driver.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

using testing::CelldProcess;
using testing::CommandResult;
using testing::PolicySpec;

constexpr uid_t kTenant = 4242;
constexpr uid_t kOther = 4343;

class InstancesTest : public testing::CelldTest {
 protected:
  void SetUp() override {
    CelldTest::SetUp();
    if (IsSkipped()) return;
    PolicySpec policy;
    policy.uids = {0, kTenant, kOther};
    testing::WritePolicy(policies_, policy);
  }

  static Result<std::string> Turn(cli::SessionClient& s) {
    api::Generate g;
    g.set_prompt("Once upon a time");
    g.set_max_new_tokens(4);
    std::string text;
    CH_ASSIGN_OR_RETURN(api::Done d, s.Generate(g, [&](const api::Piece& p) { text += p.text(); }));
    static_cast<void>(d);
    return text;
  }
};

// The second celld on the same subtree would have taken the first's session cgroups for a
// crashed predecessor's leftovers and killed their workers; it is refused instead, before it
// touches a cgroup or maps the model, and the first keeps serving its sessions.
TEST_F(InstancesTest, ASecondCelldOnTheSameSubtreeIsRefusedAndTheFirstKeepsServing) {
  std::string subtree = "e2e-two-" + std::to_string(::getpid());
  StartCelld({.subtree = subtree});
  auto session = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(session) << session.error().message();
  ASSERT_TRUE(Turn(*session));
  auto listed = Sessions();
  ASSERT_EQ(listed.size(), 1u);
  pid_t worker = listed[0].worker_pid();

  auto second =
      CelldProcess::Start(local_, {.model = Model(), .policy_dir = policies_, .subtree = subtree});
  ASSERT_FALSE(second) << "a second celld started on the subtree '" << subtree << "'";
  const std::string& why = second.error().message();
  EXPECT_NE(why.find("another celld is running on the cgroup subtree"), std::string::npos) << why;
  EXPECT_NE(why.find("held by pid " + std::to_string(celld_->pid())), std::string::npos) << why;
  EXPECT_NE(why.find("--cgroup-subtree NAME). Refusing."), std::string::npos) << why;
  EXPECT_EQ(why.find("zygote pid"), std::string::npos) << "it mapped the model first:\n" << why;

  // The first is untouched: its session lives and serves, it opens new ones.
  EXPECT_EQ(::kill(worker, 0), 0) << "the first celld's worker was killed";
  auto more = Turn(*session);
  EXPECT_TRUE(more) << more.error().message();
  auto another = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(another) << another.error().message() << "\n" << celld_->Log();
  EXPECT_TRUE(Turn(*another));
  EXPECT_EQ(celld_->Log().find("left by a previous celld"), std::string::npos);
  EXPECT_TRUE(session->Close());
  EXPECT_TRUE(another->Close());
}

// Without --cgroup-subtree each celld takes one named after its socket: two on two sockets share
// this process's cgroup and both serve.
TEST_F(InstancesTest, EachCelldHasItsOwnSubtreeByDefault) {
  StartCelld({.default_subtree = true});
  auto second = CelldProcess::Start(
      local_, {.model = Model(), .policy_dir = policies_, .default_subtree = true});
  ASSERT_TRUE(second) << second.error().message();
  EXPECT_NE(celld_->subtree(), (*second)->subtree());
  EXPECT_EQ(celld_->subtree(), cgroup::InstanceSubtree(celld_->socket()));
  for (const CelldProcess* c : {celld_.get(), second->get()}) {
    auto s = cli::SessionClient::Open(c->socket(), {});
    ASSERT_TRUE(s) << s.error().message() << "\n" << c->Log();
    EXPECT_TRUE(Turn(*s));
    EXPECT_TRUE(s->Close());
    bool found = false;
    for (const std::string& dir : testing::CgroupSubtreeDirs(c->subtree())) {
      found |= ::access((dir + "/sessions").c_str(), F_OK) == 0;
    }
    EXPECT_TRUE(found) << c->subtree();
  }
  EXPECT_TRUE((*second)->Terminate().Success()) << (*second)->Log();
}

// Another user could read a live session's id (a secret: with the token it re-attaches) from its
// cgroup's name, and its worker's pid, CPU time and memory from the cgroup's files. Now the
// cgroups are named by number and only root may look into them; the id shows in nothing a
// process list or /proc shows.
TEST_F(InstancesTest, ASessionsIdShowsNowhereAnotherUserCanRead) {
  StartCelld({});
  CommandResult opened = testing::RunCellctl(celld_->socket(), {"--json", "open"}, kTenant);
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  auto listed = Sessions();
  ASSERT_EQ(listed.size(), 1u);
  const std::string id = ipc::IdToHex(listed[0].session_id());
  const std::string proc = "/proc/" + std::to_string(listed[0].worker_pid());

  for (const std::string& file :
       {proc + "/cgroup", proc + "/cmdline", proc + "/comm", proc + "/status",
        "/proc/" + std::to_string(celld_->pid()) + "/cmdline"}) {
    auto text = ReadFileToString(file, 1 << 20);
    ASSERT_TRUE(text) << file;
    EXPECT_EQ(text->find(id), std::string::npos) << file << ": " << *text;
  }
  auto cgroups = ReadFileToString(proc + "/cgroup", 1 << 20);
  ASSERT_TRUE(cgroups);
  EXPECT_NE(cgroups->find("/" + celld_->subtree() + "/sessions/"), std::string::npos) << *cgroups;

  size_t checked = 0;
  for (const std::string& dir : testing::CgroupSubtreeDirs(celld_->subtree())) {
    const std::string sessions_dir = dir + "/sessions";
    auto sessions = ListDirectory(sessions_dir);
    if (!sessions) continue;
    for (const std::string& path : {dir, sessions_dir}) {
      struct stat st {};
      ASSERT_EQ(::stat(path.c_str(), &st), 0) << path;
      EXPECT_EQ(st.st_mode & 0777, 0700u) << path;
    }
    for (const std::string& name : *sessions) {
      std::string path = sessions_dir;
      path += "/";
      path += name;
      if (!ListDirectory(path)) continue;  // a file, not a cgroup
      EXPECT_TRUE(ParseUint64(name, "cgroup name")) << name;
      EXPECT_EQ(name.find(id), std::string::npos);
      struct stat st {};
      ASSERT_EQ(::stat(path.c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 0777, 0700u) << name;
      ++checked;
    }
    // As another user: the directory cannot be listed, its files cannot be read.
    CommandResult ls = testing::RunCommand({"/bin/ls", sessions_dir}, "", kOther);
    EXPECT_NE(ls.exit_code, 0) << ls.out;
    CommandResult cat =
        testing::RunCommand({"/bin/cat", sessions_dir + "/1/cgroup.procs"}, "", kOther);
    EXPECT_NE(cat.exit_code, 0) << cat.out;
  }
  EXPECT_GT(checked, 0u);
}

}  // namespace
}  // namespace cellhouse
