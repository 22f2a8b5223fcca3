// The v2 driver against the fake cgroupfs: the leaf move, the controller delegation, the exact
// limit files and values, teardown order, crash leftovers and shutdown leaving nothing behind.
#include <fcntl.h>
#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "supervisor/cgroup/driver.h"
#include "tests/cgroup/fake_cgroupfs.h"
#include "tests/cgroup/fake_hosts.h"

namespace cellhouse::cgroup {
namespace {

using ::testing::ElementsAre;
using testing::FakeCgroupFs;
using ::testing::HasSubstr;
using testing::kCelldPid;

const std::string kOwn = testing::kV2Own;

class V2DriverTest : public ::testing::Test {
 protected:
  void SetUp() override { testing::PureV2Host(fake_); }

  std::unique_ptr<Driver> Detect(const DriverOptions& options = {}) {
    auto driver = DetectDriver(fake_, fake_, options);
    EXPECT_TRUE(driver) << driver.error().message();
    if (!driver) {
      return nullptr;
    }
    EXPECT_EQ((*driver)->version(), Version::kV2);
    return std::move(*driver);
  }

  std::unique_ptr<Driver> DetectAndSetup(const DriverOptions& options = {}) {
    std::unique_ptr<Driver> driver = Detect(options);
    if (!driver) {
      return nullptr;
    }
    auto report = driver->Setup();
    EXPECT_TRUE(report) << report.error().message();
    fake_.ClearLog();
    return driver;
  }

  FakeCgroupFs fake_;
};

TEST_F(V2DriverTest, SetupMovesIntoLeafThenDelegatesControllers) {
  std::unique_ptr<Driver> driver = Detect();
  ASSERT_TRUE(driver);
  auto report = driver->Setup();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(report->removed_leftovers.empty());
  EXPECT_THAT(
      fake_.Log(),
      ElementsAre("lock " + kOwn,  // first of all, this celld's claim on the subtree
                  "mkdir " + kOwn + "/supervisor", "write " + kOwn + "/supervisor/cgroup.procs 100",
                  "write " + kOwn + "/cgroup.subtree_control +memory +pids +cpu",
                  "mkdir " + kOwn + "/sessions",
                  "write " + kOwn + "/sessions/cgroup.subtree_control +memory +pids +cpu"));
  EXPECT_THAT(fake_.CgroupsOf(kCelldPid), ElementsAre(kOwn + "/supervisor"));
  EXPECT_EQ(fake_.File(kOwn + "/sessions/cgroup.controllers"), "cpu memory pids\n");
}

TEST_F(V2DriverTest, SessionGetsExactLimitFilesAndADirectoryFd) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  Limits limits{.memory_max = 512ULL << 20,
                .memory_high = 448ULL << 20,
                .pids_max = 16,
                .cpu = CpuQuota{.quota_us = 50000, .period_us = 100000},
                .cpu_weight = 300};
  auto session = driver->CreateSession("0123abcd", limits);
  ASSERT_TRUE(session) << session.error().message();
  const std::string dir = kOwn + "/sessions/0123abcd";
  EXPECT_THAT(fake_.Log(),
              ElementsAre("mkdir " + dir,                            //
                          "write " + dir + "/memory.max 536870912",  //
                          "write " + dir + "/memory.swap.max 0",     //
                          "write " + dir + "/memory.high 469762048",
                          "write " + dir + "/pids.max 16", "write " + dir + "/cpu.max 50000 100000",
                          "write " + dir + "/cpu.weight 300",  //
                          "open " + dir));
  EXPECT_EQ(session->id(), "0123abcd");
  EXPECT_EQ(session->Directories(), std::vector<std::string>{dir});
  ASSERT_EQ(session->placement().kind, Placement::Kind::kCloneIntoCgroup);
  ASSERT_EQ(session->placement().fds.size(), 1u);
  int fd = session->placement().RawFds()[0];
  EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

TEST_F(V2DriverTest, UnsetLimitsStayAtTheKernelDefaultButSwapIsZero) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  auto session = driver->CreateSession("s", {});
  ASSERT_TRUE(session) << session.error().message();
  EXPECT_THAT(fake_.Writes(), ElementsAre("write " + kOwn + "/sessions/s/memory.swap.max 0"));
}

TEST_F(V2DriverTest, UsageAndOomFiguresComeFromTheSessionFiles) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  auto session = driver->CreateSession("s", {.memory_max = 64ULL << 20});
  ASSERT_TRUE(session);
  const std::string dir = kOwn + "/sessions/s";
  auto none = session->OomOutcome();
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(*none);
  fake_.SetFile(dir + "/memory.current", "1048576\n");
  fake_.SetFile(dir + "/memory.peak", "67108864\n");
  fake_.SetFile(dir + "/memory.events", "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n");
  fake_.SetFile(dir + "/cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
  EXPECT_EQ(*session->MemoryCurrent(), 1048576u);
  EXPECT_EQ(*session->MemoryPeak(), 67108864u);
  EXPECT_EQ(*session->OomKills(), 1u);
  EXPECT_EQ(*session->MemoryLimitHits(), 12u);
  EXPECT_EQ(*session->CpuUsageNanos(), 2500000u);
  auto oom = session->OomOutcome();
  ASSERT_TRUE(oom && *oom);
  EXPECT_EQ(**oom, "memory limit exceeded (limit 64 MiB)");
}

TEST_F(V2DriverTest, RemoveKillsThroughCgroupKillThenRemovesTheDirectory) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  auto session = driver->CreateSession("s", {});
  ASSERT_TRUE(session);
  const std::string dir = kOwn + "/sessions/s";
  fake_.AddProcess(201, {dir});
  fake_.AddProcess(202, {dir});
  EXPECT_THAT(*session->Pids(), ElementsAre(201, 202));
  fake_.ClearLog();
  ASSERT_TRUE(session->Remove());
  EXPECT_THAT(fake_.Log(), ElementsAre("write " + dir + "/cgroup.kill 1", "rmdir " + dir));
  EXPECT_TRUE(session->removed());
  EXPECT_TRUE(session->placement().fds.empty());
  EXPECT_FALSE(fake_.IsDir(dir));
  EXPECT_TRUE(session->Remove()) << "idempotent";
}

TEST_F(V2DriverTest, WithoutCgroupKillEachProcessGetsSigkill) {
  FakeCgroupFs fake({.v2_cgroup_kill = false});
  testing::PureV2Host(fake);
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver);
  ASSERT_TRUE((*driver)->Setup());
  auto session = (*driver)->CreateSession("s", {});
  ASSERT_TRUE(session);
  const std::string dir = kOwn + "/sessions/s";
  fake.AddProcess(201, {dir});
  fake.ClearLog();
  ASSERT_TRUE(session->Remove());
  EXPECT_THAT(fake.Log(), ElementsAre("kill 201 " + std::to_string(SIGKILL), "rmdir " + dir));
}

TEST_F(V2DriverTest, RemoveGivesUpOnAProcessThatWillNotDie) {
  auto driver = DetectDriver(fake_, fake_, {.teardown = {.kill_rounds = 5}});
  ASSERT_TRUE(driver);
  ASSERT_TRUE((*driver)->Setup());
  auto session = (*driver)->CreateSession("s", {});
  ASSERT_TRUE(session);
  fake_.AddProcess(666, {kOwn + "/sessions/s"});
  fake_.MakeUnkillable(666);
  Status st = session->Remove();
  ASSERT_FALSE(st);
  EXPECT_THAT(st.error().message(), HasSubstr("removing the cgroup of session 's'"));
  EXPECT_THAT(st.error().message(), HasSubstr("1 (pids 666) still there after 5 rounds"));
  EXPECT_FALSE(session->removed());
  EXPECT_TRUE(fake_.IsDir(kOwn + "/sessions/s"));
  EXPECT_EQ(fake_.pauses(), 5);
}

TEST_F(V2DriverTest, RmdirRetriesWhileBusy) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  auto session = driver->CreateSession("s", {});
  ASSERT_TRUE(session);
  fake_.FailNextOn(kOwn + "/sessions/s", EBUSY);
  fake_.ClearLog();
  ASSERT_TRUE(session->Remove());
  EXPECT_THAT(fake_.Log(),
              ElementsAre("rmdir " + kOwn + "/sessions/s", "rmdir " + kOwn + "/sessions/s"));
}

TEST_F(V2DriverTest, ShutdownUndoesEverythingInReverse) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  auto session = driver->CreateSession("s", {.pids_max = 4});
  ASSERT_TRUE(session);
  fake_.AddProcess(201, {kOwn + "/sessions/s"});
  fake_.ClearLog();
  ASSERT_TRUE(driver->Shutdown());
  EXPECT_THAT(fake_.Log(),
              ElementsAre("write " + kOwn + "/sessions/s/cgroup.kill 1",  //
                          "rmdir " + kOwn + "/sessions/s",                //
                          "rmdir " + kOwn + "/sessions",                  //
                          "write " + kOwn + "/cgroup.subtree_control -memory -pids -cpu",
                          "write " + kOwn + "/cgroup.procs 100",  //
                          "rmdir " + kOwn + "/supervisor"));
  EXPECT_TRUE(fake_.CgroupsBelow(kOwn).empty());
  EXPECT_THAT(fake_.CgroupsOf(kCelldPid), ElementsAre(kOwn));
  EXPECT_EQ(fake_.File(kOwn + "/cgroup.subtree_control"), "\n");
}

TEST_F(V2DriverTest, SetupCleansUpWhatACrashedPredecessorLeft) {
  // A previous celld died: its supervisor/ leaf, delegated controllers and two sessions remain,
  // one still running a worker.
  fake_.MakeCgroups(kOwn + "/supervisor");
  ASSERT_TRUE(fake_.WriteFile(kOwn + "/supervisor/cgroup.procs", "100"));
  ASSERT_TRUE(fake_.WriteFile(kOwn + "/cgroup.subtree_control", "+memory +pids +cpu"));
  fake_.MakeCgroups(kOwn + "/sessions/old1");
  fake_.MakeCgroups(kOwn + "/sessions/old2");
  fake_.AddProcess(300, {kOwn + "/sessions/old1"});
  fake_.ClearLog();
  std::unique_ptr<Driver> driver = Detect();
  ASSERT_TRUE(driver);
  auto report = driver->Setup();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_THAT(report->removed_leftovers,
              ElementsAre(kOwn + "/sessions/old1", kOwn + "/sessions/old2"));
  EXPECT_THAT(fake_.Log(),
              ElementsAre("lock " + kOwn,                                    //
                          "write " + kOwn + "/sessions/old1/cgroup.kill 1",  //
                          "rmdir " + kOwn + "/sessions/old1",                //
                          "rmdir " + kOwn + "/sessions/old2",                //
                          "mkdir " + kOwn + "/supervisor",                   //
                          "write " + kOwn + "/supervisor/cgroup.procs 100",  //
                          "mkdir " + kOwn + "/sessions",
                          "write " + kOwn + "/sessions/cgroup.subtree_control +memory +pids +cpu"));
  EXPECT_TRUE(fake_.ProcsOf(kOwn + "/sessions/old1").empty());
}

// A second celld on the same subtree while the first runs: refused before it touches anything
// (the first's sessions are not a predecessor's leftovers); once the first is gone it may start.
TEST_F(V2DriverTest, ASecondDriverOnTheSameSubtreeIsRefusedAndTouchesNothing) {
  std::unique_ptr<Driver> first = Detect();
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->Setup());
  ASSERT_TRUE(first->CreateSession("1", {.pids_max = 4}));
  fake_.AddProcess(300, {kOwn + "/sessions/1"});
  fake_.ClearLog();
  std::unique_ptr<Driver> second = Detect();
  ASSERT_TRUE(second);
  auto refused = second->Setup();
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(),
              HasSubstr("another celld is running on the cgroup subtree '" + kOwn + "'"));
  EXPECT_THAT(refused.error().message(), HasSubstr("--cgroup-subtree NAME). Refusing."));
  // celld's start is abandoned: the refused driver's Shutdown must not sweep the first's.
  ASSERT_TRUE(second->Shutdown());
  EXPECT_THAT(fake_.Log(), ElementsAre("lock " + kOwn));
  EXPECT_THAT(fake_.ProcsOf(kOwn + "/sessions/1"), ElementsAre(300));
  ASSERT_TRUE(first->Shutdown());
  auto report = second->Setup();
  ASSERT_TRUE(report) << report.error().message();
  ASSERT_TRUE(second->Shutdown());
}

TEST_F(V2DriverTest, AnotherProcessInTheOwnCgroupIsRefusedAndUndone) {
  fake_.AddProcess(55, {kOwn});
  std::unique_ptr<Driver> driver = Detect();
  ASSERT_TRUE(driver);
  auto report = driver->Setup();
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().message(),
            "setting up cgroup v2 under '" + kOwn + "': enabling +memory +pids +cpu in '" + kOwn +
                "/cgroup.subtree_control': 1 other process(es), e.g. pid 55, still live in '" +
                kOwn +
                "' (cgroup v2 allows no process in a cgroup that delegates controllers). Start "
                "celld as the only process of its cgroup (systemd Delegate=yes). Refusing.");
  EXPECT_THAT(fake_.CgroupsOf(kCelldPid), ElementsAre(kOwn)) << "moved back";
  EXPECT_TRUE(fake_.CgroupsBelow(kOwn).empty()) << "supervisor/ removed again";
}

TEST_F(V2DriverTest, SubtreeKeepsEverythingBelowItAndShutdownRemovesIt) {
  std::unique_ptr<Driver> driver = Detect({.subtree = "t1"});
  ASSERT_TRUE(driver);
  ASSERT_TRUE(driver->Setup());
  EXPECT_THAT(fake_.Writes(),
              ElementsAre("write " + kOwn + "/t1/supervisor/cgroup.procs 100",
                          "write " + kOwn + "/cgroup.subtree_control +memory +pids +cpu",
                          "write " + kOwn + "/t1/cgroup.subtree_control +memory +pids +cpu",
                          "write " + kOwn +
                              "/t1/sessions/cgroup.subtree_control +memory +pids "
                              "+cpu"));
  auto session = driver->CreateSession("s", {.memory_max = 64ULL << 20});
  ASSERT_TRUE(session);
  EXPECT_EQ(session->paths().memory, kOwn + "/t1/sessions/s");
  ASSERT_TRUE(driver->Shutdown());
  EXPECT_TRUE(fake_.CgroupsBelow(kOwn).empty());
  EXPECT_THAT(fake_.CgroupsOf(kCelldPid), ElementsAre(kOwn));
}

TEST_F(V2DriverTest, NoSwapAccountingSkipsSwapAndSaysSo) {
  FakeCgroupFs fake({.v2_swap = false});
  testing::PureV2Host(fake);
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver);
  ASSERT_TRUE((*driver)->Setup());
  fake.ClearLog();
  ASSERT_TRUE((*driver)->CreateSession("s", {.memory_max = 64ULL << 20}));
  EXPECT_THAT(fake.Writes(), ElementsAre("write " + kOwn + "/sessions/s/memory.max 67108864"));
  EXPECT_THAT((*driver)->Describe(), HasSubstr("swap is not limited"));
}

TEST_F(V2DriverTest, DmemControllerIsDelegatedAndWritten) {
  FakeCgroupFs fake;
  testing::PureV2Host(fake, {"cpu", "memory", "pids", "dmem"});
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver);
  ASSERT_TRUE((*driver)->Setup());
  EXPECT_THAT(fake.Writes(), ::testing::Contains("write " + kOwn +
                                                 "/cgroup.subtree_control +memory +pids +cpu "
                                                 "+dmem"));
  auto regions = (*driver)->DeviceMemoryRegions();
  ASSERT_TRUE(regions) << regions.error().message();
  ASSERT_EQ(regions->size(), 1u);
  EXPECT_EQ((*regions)[0].name, "drm/0000:03:00.0/vram0");
  EXPECT_EQ((*regions)[0].capacity_bytes, 8ULL << 30);
  fake.ClearLog();
  auto session = (*driver)->CreateSession(
      "g", {.device_memory = {{.region = "drm/0000:03:00.0/vram0", .bytes = 1ULL << 30}}});
  ASSERT_TRUE(session) << session.error().message();
  EXPECT_THAT(fake.Writes(), ElementsAre("write " + kOwn + "/sessions/g/memory.swap.max 0",
                                         "write " + kOwn +
                                             "/sessions/g/dmem.max drm/0000:03:00.0/vram0 "
                                             "1073741824"));
}

TEST_F(V2DriverTest, DeviceMemoryWithoutDmemIsRefused) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  auto regions = driver->DeviceMemoryRegions();
  ASSERT_TRUE(regions);
  EXPECT_TRUE(regions->empty());
  auto session = driver->CreateSession("g", {.device_memory = {{.region = "r", .bytes = 1}}});
  ASSERT_FALSE(session);
  EXPECT_THAT(session.error().message(), HasSubstr("needs the dmem controller"));
  EXPECT_TRUE(fake_.Log().empty());
}

TEST_F(V2DriverTest, BadIdsDuplicatesAndBadLimitsAreRefused) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  for (const char* bad : {"", "..", "a/b", ".x", "a b"}) {
    EXPECT_FALSE(driver->CreateSession(bad, {})) << bad;
  }
  ASSERT_TRUE(driver->CreateSession("dup", {}));
  auto again = driver->CreateSession("dup", {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().sys_errno(), EEXIST);
  auto bad_weight = driver->CreateSession("w", {.cpu_weight = 0});
  ASSERT_FALSE(bad_weight);
  EXPECT_THAT(bad_weight.error().message(), HasSubstr("cpu weight 0 is outside 1..10000"));
}

TEST_F(V2DriverTest, AWeightChangedLaterGoesIntoCpuWeight) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  auto executor = driver->CreateSession("executor", {.pids_max = 6});
  ASSERT_TRUE(executor) << executor.error().message();
  fake_.ClearLog();
  ASSERT_TRUE(executor->SetCpuWeight(1200));
  EXPECT_THAT(fake_.Log(), ElementsAre("write " + kOwn + "/sessions/executor/cpu.weight 1200"));
  EXPECT_EQ(executor->limits().cpu_weight, 1200u);
}

TEST_F(V2DriverTest, AFailedLimitWriteRemovesTheHalfMadeCgroup) {
  std::unique_ptr<Driver> driver = DetectAndSetup();
  ASSERT_TRUE(driver);
  fake_.FailNextOn(kOwn + "/sessions/s/pids.max", EINVAL);
  auto session = driver->CreateSession("s", {.memory_max = 64ULL << 20, .pids_max = 8});
  ASSERT_FALSE(session);
  EXPECT_THAT(session.error().message(), HasSubstr("creating the cgroup of session 's': write '" +
                                                   kOwn + "/sessions/s/pids.max'"));
  EXPECT_FALSE(fake_.IsDir(kOwn + "/sessions/s"));
}

TEST_F(V2DriverTest, CreateBeforeSetupIsAnError) {
  std::unique_ptr<Driver> driver = Detect();
  ASSERT_TRUE(driver);
  EXPECT_FALSE(driver->CreateSession("s", {}));
}

TEST_F(V2DriverTest, OwnMemoryLimitIsTheLowestOnTheWayUp) {
  fake_.MakeCgroups(kOwn + "/inner");
  ASSERT_TRUE(fake_.WriteFile(kOwn + "/inner/cgroup.procs", "100"));
  ASSERT_TRUE(fake_.WriteFile(kOwn + "/cgroup.subtree_control", "+memory +pids +cpu"));
  fake_.SetFile("/proc/self/cgroup", "0::/ci/inner\n");
  std::unique_ptr<Driver> driver = Detect();
  ASSERT_TRUE(driver);
  auto unlimited = driver->OwnMemoryLimit();
  ASSERT_TRUE(unlimited) << unlimited.error().message();
  EXPECT_FALSE(*unlimited);
  fake_.SetFile(kOwn + "/memory.max", "1073741824\n");
  fake_.SetFile(kOwn + "/inner/memory.max", "2147483648\n");
  EXPECT_EQ(**driver->OwnMemoryLimit(), 1ULL << 30);
}

}  // namespace
}  // namespace cellhouse::cgroup
