// The v1 driver against the fake cgroupfs laid out like these build machines: per-hierarchy
// trees below each own cgroup, the exact limit files and values, procs placement fds, teardown
// order, crash leftovers and shutdown.
#include <signal.h>

#include <algorithm>

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

const std::string kMem = testing::kV1Memory;
const std::string kPids = testing::kV1Pids;
const std::string kCpu = testing::kV1Cpu;
const std::string kAcct = testing::kV1Cpuacct;

std::string KillEntry(pid_t pid) {
  std::string out = "kill ";
  out += std::to_string(pid);
  out += ' ';
  out += std::to_string(SIGKILL);
  return out;
}

std::unique_ptr<Driver> DetectAndSetup(FakeCgroupFs& fake, const DriverOptions& options = {}) {
  auto driver = DetectDriver(fake, fake, options);
  EXPECT_TRUE(driver) << driver.error().message();
  if (!driver) {
    return nullptr;
  }
  EXPECT_EQ((*driver)->version(), Version::kV1);
  auto report = (*driver)->Setup();
  EXPECT_TRUE(report) << report.error().message();
  fake.ClearLog();
  return std::move(*driver);
}

TEST(V1DriverTest, SetupMakesSessionsInEveryHierarchyAndMovesNothing) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver);
  auto report = (*driver)->Setup();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_THAT(fake.Log(),
              ElementsAre("lock " + kMem,  // first of all, this celld's claim on the subtree
                          "mkdir " + kMem + "/sessions", "mkdir " + kPids + "/sessions",
                          "mkdir " + kCpu + "/sessions", "mkdir " + kAcct + "/sessions"));
  EXPECT_THAT(fake.CgroupsOf(kCelldPid),
              ElementsAre(kCpu, kAcct, kMem, kPids, "/sys/fs/cgroup/unified"));
}

TEST(V1DriverTest, SessionGetsExactLimitFilesAndProcsFds) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  ASSERT_TRUE(driver);
  Limits limits{.memory_max = 512ULL << 20,
                .memory_high = 448ULL << 20,
                .pids_max = 16,
                .cpu = CpuQuota{.quota_us = 50000, .period_us = 100000},
                .cpu_weight = 300};
  auto session = driver->CreateSession("s1", limits);
  ASSERT_TRUE(session) << session.error().message();
  const std::string m = kMem + "/sessions/s1";
  const std::string p = kPids + "/sessions/s1";
  const std::string c = kCpu + "/sessions/s1";
  const std::string a = kAcct + "/sessions/s1";
  EXPECT_THAT(fake.Log(),
              ElementsAre("mkdir " + m, "mkdir " + p, "mkdir " + c, "mkdir " + a,
                          "write " + m + "/memory.limit_in_bytes 536870912",
                          "write " + m + "/memory.memsw.limit_in_bytes 536870912",
                          "write " + m + "/memory.soft_limit_in_bytes 469762048",
                          "write " + p + "/pids.max 16", "write " + c + "/cpu.cfs_period_us 100000",
                          "write " + c + "/cpu.cfs_quota_us 50000",
                          "write " + c + "/cpu.shares 3072",  //
                          "open " + m + "/cgroup.procs", "open " + p + "/cgroup.procs",
                          "open " + c + "/cgroup.procs", "open " + a + "/cgroup.procs"));
  EXPECT_EQ(session->placement().kind, Placement::Kind::kWriteProcs);
  EXPECT_EQ(session->placement().fds.size(), 4u);
  EXPECT_EQ(session->Directories(), (std::vector<std::string>{m, p, c, a}));
}

TEST(V1DriverTest, AWeightChangedLaterGoesIntoCpuShares) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  ASSERT_TRUE(driver);
  auto executor = driver->CreateSession("executor", {.pids_max = 6});
  ASSERT_TRUE(executor) << executor.error().message();
  fake.ClearLog();
  ASSERT_TRUE(executor->SetCpuWeight(300));
  EXPECT_THAT(fake.Log(), ElementsAre("write " + kCpu + "/sessions/executor/cpu.shares 3072"));
  EXPECT_EQ(executor->limits().cpu_weight, 300u);
  auto refused = executor->SetCpuWeight(0);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("cpu weight 0 is outside 1..10000"));
  EXPECT_EQ(executor->limits().cpu_weight, 300u);
}

TEST(V1DriverTest, SwapAllowanceGoesIntoMemswAndIsSkippedWithoutSwapAccounting) {
  {
    FakeCgroupFs fake;
    testing::HybridHost(fake);
    std::unique_ptr<Driver> driver = DetectAndSetup(fake);
    ASSERT_TRUE(driver->CreateSession("s", {.memory_max = 64ULL << 20, .swap_max = 1ULL << 20}));
    EXPECT_THAT(fake.Writes(),
                ElementsAre("write " + kMem + "/sessions/s/memory.limit_in_bytes 67108864",
                            "write " + kMem + "/sessions/s/memory.memsw.limit_in_bytes 68157440"));
  }
  FakeCgroupFs fake({.v1_memsw = false});
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  ASSERT_TRUE(driver->CreateSession("s", {.memory_max = 64ULL << 20}));
  EXPECT_THAT(fake.Writes(),
              ElementsAre("write " + kMem + "/sessions/s/memory.limit_in_bytes 67108864"));
  EXPECT_THAT(driver->Describe(), HasSubstr("swap is not limited"));
}

TEST(V1DriverTest, UsageAndOomFigures) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  auto session = driver->CreateSession("s", {.memory_max = 32ULL << 20});
  ASSERT_TRUE(session);
  const std::string m = kMem + "/sessions/s";
  fake.SetFile(m + "/memory.usage_in_bytes", "4096\n");
  fake.SetFile(m + "/memory.max_usage_in_bytes", "33554432\n");
  fake.SetFile(m + "/memory.failcnt", "7\n");
  fake.SetFile(kAcct + "/sessions/s/cpuacct.usage", "123456789\n");
  EXPECT_EQ(*session->MemoryCurrent(), 4096u);
  EXPECT_EQ(*session->MemoryPeak(), 33554432u);
  EXPECT_EQ(*session->MemoryLimitHits(), 7u);
  EXPECT_EQ(*session->CpuUsageNanos(), 123456789u);
  EXPECT_EQ(*session->OomKills(), 0u);
  EXPECT_FALSE(*session->OomOutcome());
  fake.SetFile(m + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  EXPECT_EQ(*session->OomKills(), 2u);
  EXPECT_EQ(**session->OomOutcome(), "memory limit exceeded (limit 32 MiB)");
}

TEST(V1DriverTest, OldKernelWithoutOomKillCounterFallsBackToFailcnt) {
  FakeCgroupFs fake({.v1_oom_kill_field = false});
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  auto session = driver->CreateSession("s", {.memory_max = 32ULL << 20});
  ASSERT_TRUE(session);
  auto kills = session->OomKills();
  ASSERT_FALSE(kills);
  EXPECT_THAT(kills.error().message(), HasSubstr("has no oom_kill counter"));
  EXPECT_FALSE(*session->OomOutcome());
  fake.SetFile(kMem + "/sessions/s/memory.failcnt", "3\n");
  EXPECT_EQ(**session->OomOutcome(), "memory limit exceeded (limit 32 MiB)");
}

TEST(V1DriverTest, RemoveKillsEveryPidThenRemovesEveryHierarchy) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  auto session = driver->CreateSession("s", {});
  ASSERT_TRUE(session);
  const std::string m = kMem + "/sessions/s";
  fake.AddProcess(201, {m, kPids + "/sessions/s", kCpu + "/sessions/s", kAcct + "/sessions/s"});
  fake.AddProcess(202, {m});
  EXPECT_THAT(*session->Pids(), ElementsAre(201, 202));
  fake.ClearLog();
  ASSERT_TRUE(session->Remove());
  EXPECT_THAT(
      fake.Log(),
      ElementsAre(KillEntry(201), KillEntry(202), "rmdir " + m, "rmdir " + kPids + "/sessions/s",
                  "rmdir " + kCpu + "/sessions/s", "rmdir " + kAcct + "/sessions/s"));
  EXPECT_TRUE(fake.CgroupsOf(201).empty());
}

TEST(V1DriverTest, SetupCleansUpLeftoversAndShutdownLeavesNothing) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  // A crashed predecessor with subtree "cellhouse": one session with a live worker.
  for (const std::string& own : {kMem, kPids, kCpu, kAcct}) {
    fake.MakeCgroups(own + "/cellhouse/sessions/old");
  }
  fake.AddProcess(300, {kMem + "/cellhouse/sessions/old", kCpu + "/cellhouse/sessions/old"});
  auto driver = DetectDriver(fake, fake, {.subtree = "cellhouse"});
  ASSERT_TRUE(driver);
  auto report = (*driver)->Setup();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_THAT(report->removed_leftovers,
              ElementsAre(kMem + "/cellhouse/sessions/old", kPids + "/cellhouse/sessions/old",
                          kCpu + "/cellhouse/sessions/old", kAcct + "/cellhouse/sessions/old"));
  // The subtree levels (there already), the lock, then the leftovers: killed, then removed.
  const std::vector<std::string>& log = fake.Log();
  auto lock = std::find(log.begin(), log.end(), "lock " + kMem + "/cellhouse");
  ASSERT_NE(lock, log.end());
  ASSERT_LT(lock + 2, log.end());
  EXPECT_EQ(*(lock + 1), KillEntry(300));
  EXPECT_EQ(*(lock + 2), "rmdir " + kMem + "/cellhouse/sessions/old");
  ASSERT_TRUE((*driver)->CreateSession("new", {.pids_max = 4}));
  fake.AddProcess(301, {kPids + "/cellhouse/sessions/new"});
  ASSERT_TRUE((*driver)->Shutdown());
  // The predecessor's cellhouse/ level is this celld's subtree now: it goes too.
  for (const std::string& own : {kMem, kPids, kCpu, kAcct}) {
    EXPECT_TRUE(fake.CgroupsBelow(own).empty()) << own;
  }
}

// A second celld on the same subtree while the first runs: refused before it touches anything;
// it may start once the first has shut down (or crashed: its lock goes with its descriptors).
TEST(V1DriverTest, ASecondDriverOnTheSameSubtreeIsRefusedAndTouchesNothing) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> first = DetectAndSetup(fake, {.subtree = "cellhouse"});
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->CreateSession("1", {.pids_max = 4}));
  fake.AddProcess(300, {kPids + "/cellhouse/sessions/1"});
  fake.ClearLog();
  auto second = DetectDriver(fake, fake, {.subtree = "cellhouse"});
  ASSERT_TRUE(second);
  auto refused = (*second)->Setup();
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("another celld is running"));
  for (const std::string& entry : fake.Log()) {
    EXPECT_TRUE(entry.starts_with("mkdir ") || entry.starts_with("lock ")) << entry;
  }
  // celld's start is abandoned: the refused driver's Shutdown must not sweep the first's.
  ASSERT_TRUE((*second)->Shutdown());
  EXPECT_THAT(fake.ProcsOf(kPids + "/cellhouse/sessions/1"), ElementsAre(300));
  EXPECT_TRUE(fake.IsDir(kMem + "/cellhouse/sessions/1"));
  first.reset();  // as a crash would: no Shutdown, the lock goes with the descriptor
  auto report = (*second)->Setup();
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->removed_leftovers.size(), 4u);  // one per hierarchy
  ASSERT_TRUE((*second)->Shutdown());
}

TEST(V1DriverTest, ASubtreeLevelThatHoldsSomeoneElsesCgroupStays) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  fake.MakeCgroups(kPids + "/shared/other");
  std::unique_ptr<Driver> driver = DetectAndSetup(fake, {.subtree = "shared/mine"});
  ASSERT_TRUE(driver);
  ASSERT_TRUE(driver->CreateSession("a", {.pids_max = 4}));
  ASSERT_TRUE(driver->Shutdown());
  EXPECT_THAT(fake.CgroupsBelow(kPids), ElementsAre(kPids + "/shared", kPids + "/shared/other"));
  EXPECT_TRUE(fake.CgroupsBelow(kMem).empty());
}

TEST(V1DriverTest, ShutdownRemovesTheSubtreeItMade) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake, {.subtree = "t-1/x"});
  ASSERT_TRUE(driver);
  ASSERT_TRUE(driver->CreateSession("a", {.memory_max = 8ULL << 20}));
  ASSERT_TRUE(driver->CreateSession("b", {.cpu_weight = 50}));
  ASSERT_TRUE(driver->Shutdown());
  for (const std::string& own : {kMem, kPids, kCpu, kAcct}) {
    EXPECT_TRUE(fake.CgroupsBelow(own).empty()) << own;
  }
}

TEST(V1DriverTest, DeviceMemoryNeedsV2) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  auto session = driver->CreateSession("g", {.device_memory = {{.region = "r", .bytes = 1}}});
  ASSERT_FALSE(session);
  EXPECT_THAT(session.error().message(), HasSubstr("cgroup v2 dmem controller"));
  EXPECT_TRUE(driver->DeviceMemoryRegions()->empty());
}

TEST(V1DriverTest, AFailedWriteRemovesEveryHierarchysDirectory) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  std::unique_ptr<Driver> driver = DetectAndSetup(fake);
  fake.FailNextOn(kCpu + "/sessions/s/cpu.shares", EINVAL);
  auto session = driver->CreateSession("s", {.cpu_weight = 100});
  ASSERT_FALSE(session);
  for (const std::string& own : {kMem, kPids, kCpu, kAcct}) {
    EXPECT_FALSE(fake.IsDir(own + "/sessions/s")) << own;
  }
}

TEST(V1DriverTest, OwnMemoryLimitReadsTheOwnCgroupAndItsAncestors) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver);
  EXPECT_FALSE((*driver)->OwnMemoryLimit().value().has_value());
  fake.SetFile("/sys/fs/cgroup/memory/process_api/memory.limit_in_bytes", "2147483648\n");
  EXPECT_EQ(**(*driver)->OwnMemoryLimit(), 2ULL << 30);
}

}  // namespace
}  // namespace cellhouse::cgroup
