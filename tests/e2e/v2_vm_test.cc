// celld on a pure cgroup v2 host, started in a delegated non-root cgroup as systemd would start
// it (Delegate=yes): the leaf move, CLONE_INTO_CGROUP placement, an OOM kill and a pids limit
// through real sessions, and nothing left behind at shutdown. Runs inside the throw-away cgroup
// v2 VM (../shared/tools/cgv2-vm, via run_e2e_v2_in_vm.sh, CTest entry e2e_v2_vm); skips with one
// line anywhere else.
#include <sys/statfs.h>
#include <unistd.h>

#include <linux/magic.h>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "ipc/messages.h"
#include "tests/support/celld_harness.h"

namespace cellhouse {
namespace {

using testing::CelldProcess;
using testing::PolicySpec;

constexpr const char* kRoot = "/sys/fs/cgroup";

// "0::/ci" → "/ci".
std::string OwnV2Cgroup(pid_t pid) {
  auto text = ReadFileToString("/proc/" + std::to_string(pid) + "/cgroup", 4096);
  if (!text) return "";
  for (std::string_view line : Split(*text, '\n')) {
    if (StartsWith(line, "0::")) return std::string(line.substr(3));
  }
  return "";
}

class V2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    struct statfs fs {};
    if (::statfs(kRoot, &fs) != 0 || fs.f_type != CGROUP2_SUPER_MAGIC) {
      GTEST_SKIP() << "not a cgroup v2 host (runs in the cgroup v2 VM: ctest -R e2e_v2_vm)";
    }
    // Like systemd with Delegate=yes: the test leaves its cgroup for a leaf of its own, and
    // gives celld a cgroup of its own beside it, with the controllers enabled for it.
    base_ = std::string(kRoot) + OwnV2Cgroup(::getpid());
    ASSERT_NE(base_, kRoot) << "start the test in a non-root cgroup (the VM's -g /ci)";
    ::mkdir((base_ + "/harness").c_str(), 0755);
    ASSERT_TRUE(WriteStringToFile(base_ + "/harness/cgroup.procs", std::to_string(::getpid())));
    ASSERT_TRUE(WriteStringToFile(base_ + "/cgroup.subtree_control", "+memory +pids +cpu"));
    celld_cgroup_ = base_ + "/celld";
    ::mkdir(celld_cgroup_.c_str(), 0755);
    model_ = testing::GenerateModel(dir_, "tiny", 41);
    policies_ = dir_.File("policies");
    PolicySpec small;
    small.name = "small";
    small.memory_max = 48ull << 20;
    small.pids_max = 1;
    small.extra_allow = {"clone", "wait4"};
    small.extra_text = "rlimits { resource: NPROC soft: 16 hard: 16 }\n";
    testing::WritePolicy(policies_, small);
    testing::WritePolicy(policies_, PolicySpec{});
  }

  void TearDown() override {
    if (celld_ && celld_->running()) {
      ExitStatus st = celld_->Terminate(60'000);
      EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld_->Log();
    }
  }

  void Start() {
    // celld joins its cgroup before it runs: a shell writes its own pid, then execs celld.
    auto started = CelldProcess::Start(
        dir_, {.model = model_,
               .policy_dir = policies_,
               .zygote = testing::BinPath("cell-zygote-probe"),
               .extra_args = {"--pool-size", "0", "--worker-timeout-ms", "120000"},
               .prefix = {"/bin/sh", "-c",
                          "echo $$ > " + celld_cgroup_ + "/cgroup.procs && exec \"$@\"", "sh"}});
    ASSERT_TRUE(started) << started.error().message();
    celld_ = std::move(*started);
  }

  std::string Probe(const std::string& policy, const std::string& prompt,
                    std::optional<api::Error>* ended) {
    auto session = cli::SessionClient::Open(celld_->socket(), {.policy = policy});
    EXPECT_TRUE(session) << session.error().message();
    if (!session) return "";
    api::Generate g;
    g.set_prompt(prompt);
    g.set_max_new_tokens(1);
    std::string text;
    auto done = session->Generate(g, [&](const api::Piece& p) { text += p.text(); });
    if (!done) *ended = session->last_error() ? session->last_error() : session->WaitForEnd(20000);
    return text;
  }

  testing::TempDir dir_;
  std::string base_;
  std::string celld_cgroup_;
  std::string model_;
  std::string policies_;
  std::unique_ptr<CelldProcess> celld_;
};

TEST_F(V2Test, LeafMovePlacementOomPidsAndCleanShutdown) {
  Start();
  // celld moved itself into a supervisor/ leaf of its delegated cgroup.
  std::string relative = celld_cgroup_.substr(std::string(kRoot).size());
  EXPECT_EQ(OwnV2Cgroup(celld_->pid()), relative + "/" + celld_->subtree() + "/supervisor");

  // A worker lives in sessions/<n>, placed there by clone3(CLONE_INTO_CGROUP): a number, never
  // the session id, which /proc/PID/cgroup would show to anyone.
  auto session = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(session) << session.error().message() << "\n" << celld_->Log();
  api::Request list;
  list.mutable_list_sessions();
  auto listed = cli::AdminRequest(celld_->socket(), list);
  ASSERT_TRUE(listed && listed->sessions().sessions_size() == 1);
  pid_t worker = listed->sessions().sessions(0).worker_pid();
  std::string worker_cgroup = OwnV2Cgroup(worker);
  std::string sessions = relative + "/" + celld_->subtree() + "/sessions/";
  ASSERT_TRUE(StartsWith(worker_cgroup, sessions)) << worker_cgroup;
  EXPECT_TRUE(ParseUint64(worker_cgroup.substr(sessions.size()), "cgroup name")) << worker_cgroup;
  EXPECT_EQ(worker_cgroup.find(ipc::IdToHex(session->opened().session_id())), std::string::npos);
  EXPECT_NE(celld_->Log().find("cgroup v2"), std::string::npos);
  ASSERT_TRUE(session->Close());

  // memory.max: the bomb is OOM-killed and reported with its limit.
  std::optional<api::Error> ended;
  Probe("small", "probe:memory-bomb", &ended);
  ASSERT_TRUE(ended) << celld_->Log();
  EXPECT_EQ(ended->outcome(), api::OOM_KILLED) << ended->message();
  EXPECT_EQ(ended->message(), "memory limit exceeded (limit 48 MiB)");

  // pids.max = 1: the fork fails.
  ended.reset();
  EXPECT_EQ(Probe("small", "probe:fork", &ended), "fork: EAGAIN");

  // Shutdown removes every cgroup celld made; its delegated cgroup is left empty.
  ExitStatus st = celld_->Terminate(60'000);
  EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld_->Log();
  auto left = ListDirectory(celld_cgroup_);
  ASSERT_TRUE(left);
  for (const std::string& name : *left) {
    auto is_dir = ListDirectory(celld_cgroup_ + "/" + name);
    EXPECT_FALSE(is_dir) << "left behind: " << name;
  }
}

}  // namespace
}  // namespace cellhouse
