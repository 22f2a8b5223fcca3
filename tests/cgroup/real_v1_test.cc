// The v1 driver on this host's real cgroup v1 hierarchies (root; label privileged). Each test
// works in its own subtree "cht-<pid>-<test>" below this process's own cgroup in each hierarchy,
// and TearDown checks Shutdown removed it, sweeping whatever a failed test left.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <deque>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "supervisor/cgroup/driver.h"
#include "tests/cgroup/child_helpers.h"
#include "tests/cgroup/real_cgroup_test_util.h"

namespace cellhouse::cgroup {
namespace {

using ::testing::HasSubstr;
using testing::WaitingChild;

std::string ReadTrimmed(const Fs& fs, const std::string& path) {
  Result<std::string> text = fs.ReadFile(path);
  return text ? std::string(Trim(*text)) : "<" + text.error().message() + ">";
}

class RealV1Test : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      GTEST_SKIP() << "creating cgroups needs root";
    }
    Result<int64_t> type = fs_.FilesystemType("/sys/fs/cgroup");
    if (!type || *type != kTmpfsMagic) {
      GTEST_SKIP() << "not a cgroup v1 host: /sys/fs/cgroup is not a tmpfs of v1 hierarchies";
    }
    subtree_ = testing::UniqueSubtree();
    for (const std::string& dir : testing::V1SubtreeDirs(fs_, subtree_)) {
      testing::SweepStaleTrees(fs_, processes_, dir);
    }
    Result<std::unique_ptr<Driver>> driver = DetectDriver(fs_, processes_, Options());
    if (!driver) {
      GTEST_SKIP() << "no usable cgroup v1 layout: " << driver.error().message();
    }
    if ((*driver)->version() != Version::kV1) {
      GTEST_SKIP() << "detected " << (*driver)->Describe();
    }
    driver_ = std::move(*driver);
    Result<SetupReport> report = driver_->Setup();
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_TRUE(report->removed_leftovers.empty());
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
    // Whatever happened above, nothing of this test may remain.
    for (const std::string& dir : testing::V1SubtreeDirs(fs_, subtree_)) {
      EXPECT_FALSE(testing::SweepTree(fs_, processes_, dir)) << "'" << dir << "' was left behind";
    }
  }

  DriverOptions Options() const { return {.subtree = subtree_}; }

  // A child stopped until Release(), owned by the fixture so TearDown reaps it.
  WaitingChild& Start(testing::ChildBody body, const void* arg) {
    Result<WaitingChild> child = testing::StartWaiting(body, arg);
    EXPECT_TRUE(child) << child.error().message();
    children_.push_back(child ? std::move(*child) : WaitingChild{});
    return children_.back();
  }

  // Places and releases `child` in `session`; returns false (with a failure) on error.
  static bool PlaceAndRelease(const SessionCgroup& session, WaitingChild& child) {
    Status placed = PlaceProcessFromParent(session.placement().RawFds(), child.process.pid());
    EXPECT_TRUE(placed) << placed.error().message();
    Status released = child.Release();
    EXPECT_TRUE(released) << released.error().message();
    return placed && released;
  }

  RealFs fs_;
  RealProcesses processes_;
  std::string subtree_;
  std::unique_ptr<Driver> driver_;
  bool set_up_ = false;
  std::deque<WaitingChild> children_;
};

TEST_F(RealV1Test, LimitsLandInCgroupfsAndTheChildIsPlacedBeforeItRuns) {
  Limits limits{.memory_max = 64ULL << 20,
                .memory_high = 48ULL << 20,
                .pids_max = 32,
                .cpu = CpuQuota{.quota_us = 50000, .period_us = 100000},
                .cpu_weight = 300};
  auto session = driver_->CreateSession("limits", limits);
  ASSERT_TRUE(session) << session.error().message();
  const SessionPaths& p = session->paths();
  EXPECT_EQ(ReadTrimmed(fs_, p.memory + "/memory.limit_in_bytes"), "67108864");
  if (fs_.Exists(p.memory + "/memory.memsw.limit_in_bytes")) {
    EXPECT_EQ(ReadTrimmed(fs_, p.memory + "/memory.memsw.limit_in_bytes"), "67108864");
  }
  EXPECT_EQ(ReadTrimmed(fs_, p.memory + "/memory.soft_limit_in_bytes"), "50331648");
  EXPECT_EQ(ReadTrimmed(fs_, p.pids + "/pids.max"), "32");
  EXPECT_EQ(ReadTrimmed(fs_, p.cpu + "/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(ReadTrimmed(fs_, p.cpu + "/cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(ReadTrimmed(fs_, p.cpu + "/cpu.shares"), "3072");

  auto report = MakePipe();
  ASSERT_TRUE(report);
  testing::ReportSpec spec{.fd = report->second.get()};
  WaitingChild& child = Start(testing::ReportCgroupBody, &spec);
  report->second.reset();
  Status placed = PlaceProcessFromParent(session->placement().RawFds(), child.process.pid());
  ASSERT_TRUE(placed) << placed.error().message();
  // In every hierarchy before it runs a single instruction of its body.
  auto pids = session->Pids();
  ASSERT_TRUE(pids);
  EXPECT_THAT(*pids, ::testing::ElementsAre(child.process.pid()));
  ASSERT_TRUE(child.Release());
  auto status = child.process.Wait();
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->Success()) << status->ToString();
  std::string seen(4096, '\0');
  ssize_t n = ::read(report->first.get(), seen.data(), seen.size());
  ASSERT_GT(n, 0);
  seen.resize(static_cast<size_t>(n));
  std::string suffix = "/" + subtree_ + "/sessions/limits\n";
  for (const char* controller : {":memory:", ":pids:", ":cpu:"}) {
    size_t at = seen.find(controller);
    ASSERT_NE(at, std::string::npos) << seen;
    size_t end = seen.find('\n', at);
    std::string line = seen.substr(at, end + 1 - at);
    EXPECT_TRUE(line.ends_with(suffix)) << line;
  }
  ASSERT_TRUE(session->Remove());
  for (const std::string& dir : session->Directories()) {
    EXPECT_FALSE(fs_.Exists(dir)) << dir;
  }
}

TEST_F(RealV1Test, MemoryBombIsOomKilledAndReportedWhileTheNeighbourFinishes) {
  auto bomb = driver_->CreateSession("bomb", {.memory_max = 32ULL << 20});
  auto calm = driver_->CreateSession("calm", {.memory_max = 64ULL << 20});
  ASSERT_TRUE(bomb && calm);
  testing::AllocateSpec too_much{.bytes = 256ULL << 20};
  testing::AllocateSpec fits{.bytes = 8ULL << 20};
  WaitingChild& bomber = Start(testing::AllocateBody, &too_much);
  WaitingChild& neighbour = Start(testing::AllocateBody, &fits);
  ASSERT_TRUE(PlaceAndRelease(*bomb, bomber));
  ASSERT_TRUE(PlaceAndRelease(*calm, neighbour));
  auto bomb_status = bomber.process.Wait();
  auto calm_status = neighbour.process.Wait();
  ASSERT_TRUE(bomb_status && calm_status);
  EXPECT_EQ(bomb_status->kind, ExitStatus::Kind::kSignaled) << bomb_status->ToString();
  EXPECT_EQ(bomb_status->signal, SIGKILL);
  EXPECT_TRUE(calm_status->Success()) << calm_status->ToString();

  auto kills = bomb->OomKills();
  ASSERT_TRUE(kills) << kills.error().message();
  EXPECT_GE(*kills, 1u);
  auto outcome = bomb->OomOutcome();
  ASSERT_TRUE(outcome && *outcome);
  EXPECT_EQ(**outcome, "memory limit exceeded (limit 32 MiB)");
  EXPECT_FALSE(*calm->OomOutcome());
  auto peak = bomb->MemoryPeak();
  ASSERT_TRUE(peak);
  EXPECT_LE(*peak, (32ULL << 20) + (1ULL << 20));
  std::printf("v1 OOM: bomb peak %s, limit hits %llu, oom kills %llu; neighbour peak %s\n",
              FormatBytes(*peak).c_str(),
              static_cast<unsigned long long>(bomb->MemoryLimitHits().value()),
              static_cast<unsigned long long>(*kills), FormatBytes(*calm->MemoryPeak()).c_str());
}

TEST_F(RealV1Test, PidsLimitStopsAFork) {
  auto session = driver_->CreateSession("pids", {.pids_max = 4});
  ASSERT_TRUE(session) << session.error().message();
  testing::ForkSpec spec{.max_forks = 64};
  WaitingChild& child = Start(testing::ForkUntilRefusedBody, &spec);
  ASSERT_TRUE(PlaceAndRelease(*session, child));
  auto status = child.process.Wait();
  ASSERT_TRUE(status);
  // The child itself plus three forks fill pids.max = 4; the fourth fork gets EAGAIN.
  EXPECT_EQ(status->kind, ExitStatus::Kind::kExited);
  EXPECT_EQ(status->code, 3) << status->ToString();
}

TEST_F(RealV1Test, CpuWeightsOneToThreeGiveRoughlyOneToThreeCpuTime) {
  auto light = driver_->CreateSession("w100", {.cpu_weight = 100});
  auto heavy = driver_->CreateSession("w300", {.cpu_weight = 300});
  ASSERT_TRUE(light && heavy);
  auto cpu = testing::FirstAllowedCpu();
  ASSERT_TRUE(cpu);
  // Both pinned to one CPU, so the scheduler must divide it, by the weights.
  testing::BusySpec spec{.cpu = *cpu, .seconds = 3};
  WaitingChild& a = Start(testing::BusyLoopBody, &spec);
  WaitingChild& b = Start(testing::BusyLoopBody, &spec);
  ASSERT_TRUE(PlaceProcessFromParent(light->placement().RawFds(), a.process.pid()));
  ASSERT_TRUE(PlaceProcessFromParent(heavy->placement().RawFds(), b.process.pid()));
  ASSERT_TRUE(a.Release());
  ASSERT_TRUE(b.Release());
  auto sa = a.process.Wait();
  auto sb = b.process.Wait();
  ASSERT_TRUE(sa && sb);
  EXPECT_TRUE(sa->Success() && sb->Success());
  auto ua = light->CpuUsageNanos();
  auto ub = heavy->CpuUsageNanos();
  ASSERT_TRUE(ua && ub) << (ua ? ub.error().message() : ua.error().message());
  ASSERT_GT(*ua, 0u);
  double ratio = static_cast<double>(*ub) / static_cast<double>(*ua);
  std::printf("v1 cpu.shares 1024:3072 on cpu %d for 3 s: %.3f s vs %.3f s, ratio %.2f\n", *cpu,
              static_cast<double>(*ua) * 1e-9, static_cast<double>(*ub) * 1e-9, ratio);
  EXPECT_GE(ratio, 2.0);
  EXPECT_LE(ratio, 4.5);
}

TEST_F(RealV1Test, ARestartedDriverRemovesWhatACrashedOneLeft) {
  pid_t orphan_pid = 0;
  // The fixture's driver holds the subtree: it steps aside (the second driver below takes its
  // place for TearDown).
  ASSERT_TRUE(driver_->Shutdown());
  {
    // A first celld: a session with a running worker, then it "crashes": its objects are
    // dropped without Remove() or Shutdown() (a crash releases its lock on the subtree too).
    // The worker is forked before the driver locks the subtree, as celld's are (by the zygote,
    // which celld started with exec, closing the lock's descriptor): a fork of the test process
    // after that would share the lock and outlive the "crash" with it.
    WaitingChild& child = Start(testing::PauseBody, nullptr);
    auto first = DetectDriver(fs_, processes_, Options());
    ASSERT_TRUE(first);
    auto setup = (*first)->Setup();
    ASSERT_TRUE(setup) << setup.error().message();
    auto session = (*first)->CreateSession("orphan", {.pids_max = 8});
    ASSERT_TRUE(session);
    ASSERT_TRUE(PlaceAndRelease(*session, child));
    orphan_pid = child.process.pid();
  }
  auto second = DetectDriver(fs_, processes_, Options());
  ASSERT_TRUE(second);
  auto report = (*second)->Setup();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_FALSE(report->removed_leftovers.empty());
  for (const std::string& dir : report->removed_leftovers) {
    EXPECT_THAT(dir, ::testing::EndsWith("/sessions/orphan"));
    EXPECT_FALSE(fs_.Exists(dir));
  }
  auto status = children_.back().process.Wait();
  ASSERT_TRUE(status);
  EXPECT_EQ(status->signal, SIGKILL) << "pid " << orphan_pid << ": " << status->ToString();
  driver_ = std::move(*second);
}

// Two drivers on one subtree, as two celld would be: the second is refused before it touches
// anything, and the first's session (its worker running) is unharmed; once the first has shut
// down, the second may start. Everything celld makes there is mode 0700.
TEST_F(RealV1Test, ASecondDriverOnTheSameSubtreeIsRefusedAndTheFirstsSessionsLive) {
  auto session = driver_->CreateSession("7", {.pids_max = 8});
  ASSERT_TRUE(session) << session.error().message();
  WaitingChild& child = Start(testing::PauseBody, nullptr);
  ASSERT_TRUE(PlaceAndRelease(*session, child));
  for (const std::string& dir : session->Directories()) {
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0) << dir;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << dir;
    std::string sessions = dir.substr(0, dir.rfind('/'));
    ASSERT_EQ(::stat(sessions.c_str(), &st), 0) << sessions;
    EXPECT_EQ(st.st_mode & 07777, 0700u) << sessions;
  }

  auto second = DetectDriver(fs_, processes_, Options());
  ASSERT_TRUE(second);
  auto refused = (*second)->Setup();
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), ::testing::HasSubstr("another celld is running"));
  EXPECT_THAT(refused.error().message(),
              ::testing::HasSubstr("held by pid " + std::to_string(::getpid())));
  for (const std::string& dir : session->Directories()) EXPECT_TRUE(fs_.Exists(dir)) << dir;
  EXPECT_EQ(::kill(child.process.pid(), 0), 0) << "the first driver's worker was killed";

  testing::KillAndReap(child.process);
  ASSERT_TRUE(session->Remove());
  ASSERT_TRUE(driver_->Shutdown());
  auto report = (*second)->Setup();
  ASSERT_TRUE(report) << report.error().message();
  driver_ = std::move(*second);
}

}  // namespace
}  // namespace cellhouse::cgroup
