// The v2 driver on a real cgroup v2 hierarchy (label cgroupv2): meant for the throw-away VM of
// ../shared/tools/cgv2-vm, where this binary runs as the only process of the delegated cgroup
// /ci, as celld would under systemd Delegate=yes (the cgroup_v2_vm test does that). Elsewhere
// each test skips with one line, unless CELLHOUSE_REQUIRE_CGROUPV2 is set (as in the VM run),
// which turns a skip into a failure.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "supervisor/cgroup/cgroupfs_util.h"
#include "supervisor/cgroup/driver.h"
#include "tests/cgroup/child_helpers.h"
#include "tests/cgroup/real_cgroup_test_util.h"

namespace cellhouse::cgroup {
namespace {

using internal::JoinPath;
using ::testing::HasSubstr;
using testing::WaitingChild;

bool Required() {
  return std::getenv("CELLHOUSE_REQUIRE_CGROUPV2") != nullptr;  // NOLINT(concurrency-mt-unsafe)
}

std::string ReadTrimmed(const Fs& fs, const std::string& path) {
  Result<std::string> text = fs.ReadFile(path);
  return text ? std::string(Trim(*text)) : "<" + text.error().message() + ">";
}

// This process's cgroup on the unified hierarchy ("0::/ci" -> "/ci").
std::string SelfV2Cgroup() {
  Result<std::string> self = testing::CgroupFileOf(::getpid());
  if (!self) {
    return "";
  }
  for (std::string_view line : Split(*self, '\n')) {
    if (StartsWith(line, "0::")) {
      return std::string(line.substr(3));
    }
  }
  return "";
}

class RealV2Test : public ::testing::Test {
 protected:
  static constexpr const char* kRoot = "/sys/fs/cgroup";

  void SetUp() override {
    std::string why;
    Result<int64_t> type = fs_.FilesystemType(kRoot);
    own_ = SelfV2Cgroup();
    if (!type || *type != kCgroup2SuperMagic) {
      why =
          "not a cgroup v2 host (/sys/fs/cgroup is not cgroup2); the cgroup_v2_vm test runs "
          "these in a VM";
    } else if (::geteuid() != 0) {
      why = "creating cgroups needs root";
    } else if (Result<std::vector<pid_t>> pids = internal::ReadPids(fs_, OwnDir());
               !pids || pids->size() != 1) {
      why = "this test must be the only process of its cgroup '" + own_ +
            "' (as celld under Delegate=yes): run the binary directly";
    }
    if (!why.empty()) {
      if (Required()) {
        FAIL() << why;
      }
      GTEST_SKIP() << why;
    }
    subtree_ = testing::UniqueSubtree();
    auto driver = DetectDriver(fs_, processes_, {.subtree = subtree_});
    ASSERT_TRUE(driver) << driver.error().message();
    ASSERT_EQ((*driver)->version(), Version::kV2) << (*driver)->Describe();
    driver_ = std::move(*driver);
    auto report = driver_->Setup();
    ASSERT_TRUE(report) << report.error().message();
    set_up_ = true;
  }

  void TearDown() override {
    for (WaitingChild& child : children_) {
      testing::KillAndReap(child.process);
    }
    if (set_up_) {
      Status st = driver_->Shutdown();
      EXPECT_TRUE(st) << st.error().message();
    }
    if (subtree_.empty()) {
      return;
    }
    EXPECT_EQ(SelfV2Cgroup(), own_) << "Shutdown should move the process back";
    const std::string base = JoinPath(OwnDir(), subtree_);
    if (!fs_.Exists(base)) {
      return;
    }
    ADD_FAILURE() << "'" << base << "' was left behind; sweeping";
    testing::SweepTree(fs_, processes_, JoinPath(base, "sessions"));
    for (const std::string& dir : {base, OwnDir()}) {
      Status off = fs_.WriteFile(JoinPath(dir, "cgroup.subtree_control"), "-memory -pids -cpu");
      static_cast<void>(off);
    }
    Status back = fs_.WriteFile(JoinPath(OwnDir(), "cgroup.procs"), std::to_string(::getpid()));
    static_cast<void>(back);
    // Never sweep (SIGKILL) a tree this process is still in.
    if (SelfV2Cgroup() == own_) {
      testing::SweepTree(fs_, processes_, base);
    }
  }

  std::string OwnDir() const { return JoinPath(kRoot, own_); }

  WaitingChild& StartIn(const SessionCgroup& session, testing::ChildBody body, const void* arg) {
    Result<WaitingChild> child =
        testing::StartWaiting(body, arg, session.placement().RawFds().at(0));
    EXPECT_TRUE(child) << child.error().message();
    children_.push_back(child ? std::move(*child) : WaitingChild{});
    return children_.back();
  }

  RealFs fs_;
  RealProcesses processes_;
  std::string own_;
  std::string subtree_;
  std::unique_ptr<Driver> driver_;
  bool set_up_ = false;
  std::deque<WaitingChild> children_;
};

TEST_F(RealV2Test, SetupMovesIntoTheSupervisorLeafAndDelegatesControllers) {
  const std::string base = JoinPath(OwnDir(), subtree_);
  EXPECT_EQ(SelfV2Cgroup(), JoinPath(JoinPath(own_, subtree_), "supervisor"));
  for (const std::string& dir : {OwnDir(), base, JoinPath(base, "sessions")}) {
    std::string control = ReadTrimmed(fs_, JoinPath(dir, "cgroup.subtree_control"));
    for (const char* c : {"memory", "pids", "cpu"}) {
      EXPECT_THAT(control, HasSubstr(c)) << dir;
    }
  }
  EXPECT_THAT(driver_->Describe(), HasSubstr("cgroup v2 (memory, pids, cpu"));
  std::printf("%s\n", driver_->Describe().c_str());
  ASSERT_TRUE(driver_->Shutdown());
  set_up_ = false;
  EXPECT_EQ(SelfV2Cgroup(), own_);
  EXPECT_FALSE(fs_.Exists(base));
  EXPECT_EQ(ReadTrimmed(fs_, JoinPath(OwnDir(), "cgroup.subtree_control")), "");
}

TEST_F(RealV2Test, CloneIntoCgroupStartsTheWorkerInItsCgroupWithTheLimitsWritten) {
  Limits limits{.memory_max = 64ULL << 20,
                .memory_high = 48ULL << 20,
                .pids_max = 32,
                .cpu = CpuQuota{.quota_us = 50000, .period_us = 100000},
                .cpu_weight = 300};
  auto session = driver_->CreateSession("clone", limits);
  ASSERT_TRUE(session) << session.error().message();
  const std::string& dir = session->paths().memory;
  EXPECT_EQ(ReadTrimmed(fs_, dir + "/memory.max"), "67108864");
  EXPECT_EQ(ReadTrimmed(fs_, dir + "/memory.high"), "50331648");
  if (fs_.Exists(dir + "/memory.swap.max")) {
    EXPECT_EQ(ReadTrimmed(fs_, dir + "/memory.swap.max"), "0");
  }
  EXPECT_EQ(ReadTrimmed(fs_, dir + "/pids.max"), "32");
  EXPECT_EQ(ReadTrimmed(fs_, dir + "/cpu.max"), "50000 100000");
  EXPECT_EQ(ReadTrimmed(fs_, dir + "/cpu.weight"), "300");

  auto report = MakePipe();
  ASSERT_TRUE(report);
  testing::ReportSpec spec{.fd = report->second.get()};
  WaitingChild& child = StartIn(*session, testing::ReportCgroupBody, &spec);
  report->second.reset();
  // Born there: in the session's cgroup before it was released to run anything.
  EXPECT_THAT(*session->Pids(), ::testing::ElementsAre(child.process.pid()));
  ASSERT_TRUE(child.Release());
  auto status = child.process.Wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->Success()) << status->ToString();
  std::string seen(4096, '\0');
  ssize_t n = ::read(report->first.get(), seen.data(), seen.size());
  ASSERT_GT(n, 0);
  seen.resize(static_cast<size_t>(n));
  EXPECT_EQ(seen, "0::" + JoinPath(JoinPath(own_, subtree_), "sessions/clone") + "\n");
  ASSERT_TRUE(session->Remove());
  EXPECT_FALSE(fs_.Exists(dir));
}

TEST_F(RealV2Test, MemoryBombIsOomKilledAndReported) {
  auto session = driver_->CreateSession("bomb", {.memory_max = 32ULL << 20});
  ASSERT_TRUE(session) << session.error().message();
  testing::AllocateSpec too_much{.bytes = 128ULL << 20};
  WaitingChild& child = StartIn(*session, testing::AllocateBody, &too_much);
  ASSERT_TRUE(child.Release());
  auto status = child.process.Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->kind, ExitStatus::Kind::kSignaled) << status->ToString();
  EXPECT_EQ(status->signal, SIGKILL);
  auto kills = session->OomKills();
  ASSERT_TRUE(kills) << kills.error().message();
  EXPECT_EQ(*kills, 1u);
  auto outcome = session->OomOutcome();
  ASSERT_TRUE(outcome && *outcome);
  EXPECT_EQ(**outcome, "memory limit exceeded (limit 32 MiB)");
  auto peak = session->MemoryPeak();
  ASSERT_TRUE(peak) << peak.error().message();
  EXPECT_LE(*peak, (32ULL << 20));
  std::printf("v2 OOM: peak %s, memory.events max %llu, oom_kill %llu\n",
              FormatBytes(*peak).c_str(),
              static_cast<unsigned long long>(session->MemoryLimitHits().value()),
              static_cast<unsigned long long>(*kills));
}

TEST_F(RealV2Test, PidsLimitStopsAFork) {
  auto session = driver_->CreateSession("pids", {.pids_max = 4});
  ASSERT_TRUE(session) << session.error().message();
  testing::ForkSpec spec{.max_forks = 64};
  WaitingChild& child = StartIn(*session, testing::ForkUntilRefusedBody, &spec);
  ASSERT_TRUE(child.Release());
  auto status = child.process.Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->kind, ExitStatus::Kind::kExited);
  EXPECT_EQ(status->code, 3) << status->ToString();
}

TEST_F(RealV2Test, ShutdownKillsAndRemovesSessionsStillRunning) {
  auto session = driver_->CreateSession("left", {.pids_max = 8});
  ASSERT_TRUE(session) << session.error().message();
  WaitingChild& child = StartIn(*session, testing::PauseBody, nullptr);
  ASSERT_TRUE(child.Release());
  ASSERT_TRUE(driver_->Shutdown());
  set_up_ = false;
  auto status = child.process.Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal, SIGKILL) << status->ToString();
  EXPECT_FALSE(fs_.Exists(JoinPath(OwnDir(), subtree_)));
}

}  // namespace
}  // namespace cellhouse::cgroup
