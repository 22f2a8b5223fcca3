// DetectDriver on fake layouts: pure v2, hybrid like these build machines, v1 only, v2 without
// delegated controllers, and layouts no driver can serve.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "supervisor/cgroup/cgroupfs_util.h"
#include "supervisor/cgroup/driver.h"
#include "tests/cgroup/fake_cgroupfs.h"
#include "tests/cgroup/fake_hosts.h"

namespace cellhouse::cgroup {
namespace {

using testing::FakeCgroupFs;
using ::testing::HasSubstr;

TEST(ParseProcCgroupTest, ReadsV1AndV2Lines) {
  auto members = ParseProcCgroup("9:name=systemd:/\n2:cpu,cpuacct:/a b\n0::/ci\n");
  ASSERT_TRUE(members) << members.error().message();
  ASSERT_EQ(members->size(), 3u);
  EXPECT_EQ((*members)[1].hierarchy, 2);
  EXPECT_EQ((*members)[1].controllers, (std::vector<std::string>{"cpu", "cpuacct"}));
  EXPECT_EQ((*members)[1].path, "/a b");
  EXPECT_EQ((*members)[2].hierarchy, 0);
  EXPECT_TRUE((*members)[2].controllers.empty());
  EXPECT_EQ((*members)[2].path, "/ci");
}

TEST(ParseProcCgroupTest, RefusesMalformedLines) {
  auto no_colon = ParseProcCgroup("0::/\nbroken\n");
  ASSERT_FALSE(no_colon);
  EXPECT_THAT(no_colon.error().message(), HasSubstr("line 2"));
  EXPECT_FALSE(ParseProcCgroup("x:memory:/\n"));
  EXPECT_FALSE(ParseProcCgroup("4:memory:relative\n"));
}

TEST(DetectTest, PureV2PicksV2AndSaysWhy) {
  FakeCgroupFs fake;
  testing::PureV2Host(fake);
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver) << driver.error().message();
  EXPECT_EQ((*driver)->version(), Version::kV2);
  EXPECT_EQ((*driver)->Describe(),
            "cgroup v2 (memory, pids, cpu): '/sys/fs/cgroup' is a cgroup2 mount and celld's "
            "cgroup '/ci' offers memory, pids and cpu; celld runs in "
            "'/sys/fs/cgroup/ci/supervisor', sessions in '/sys/fs/cgroup/ci/sessions/<id>'");
  EXPECT_TRUE(fake.Log().empty()) << "detection must not change anything";
}

TEST(DetectTest, HybridLikeTheseMachinesPicksV1) {
  FakeCgroupFs fake;
  testing::HybridHost(fake);
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver) << driver.error().message();
  EXPECT_EQ((*driver)->version(), Version::kV1);
  EXPECT_EQ((*driver)->Describe(),
            "cgroup v1 (memory, pids, cpu, cpuacct): '/sys/fs/cgroup' is a tmpfs of v1 "
            "hierarchies and the cgroup2 mount at '/sys/fs/cgroup/unified' has no memory, pids "
            "or cpu controller; sessions in "
            "'/sys/fs/cgroup/memory/process_api/abc/sessions/<id>', "
            "'/sys/fs/cgroup/pids/sessions/<id>', '/sys/fs/cgroup/cpu/sessions/<id>', "
            "'/sys/fs/cgroup/cpuacct/sessions/<id>'");
  EXPECT_TRUE(fake.Log().empty());
}

TEST(DetectTest, V1OnlyPicksV1) {
  FakeCgroupFs fake;
  testing::V1OnlyHost(fake, /*with_cpuacct=*/false);
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver) << driver.error().message();
  EXPECT_EQ((*driver)->version(), Version::kV1);
  EXPECT_THAT((*driver)->Describe(),
              HasSubstr("cgroup v1 (memory, pids, cpu): '/sys/fs/cgroup' is a tmpfs of v1 "
                        "hierarchies;"));
  EXPECT_THAT((*driver)->Describe(), HasSubstr("no cpuacct hierarchy"));
}

TEST(DetectTest, CoMountedCpuAndCpuacctShareOneDirectory) {
  FakeCgroupFs fake;
  fake.AddMount("/sys/fs/cgroup", kTmpfsMagic);
  for (const char* c : {"memory", "pids"}) {
    fake.AddMount(std::string("/sys/fs/cgroup/") + c, kCgroupSuperMagic);
    fake.AddV1Hierarchy(std::string("/sys/fs/cgroup/") + c, {c});
  }
  fake.AddMount("/sys/fs/cgroup/cpu,cpuacct", kCgroupSuperMagic);
  fake.AddV1Hierarchy("/sys/fs/cgroup/cpu,cpuacct", {"cpu", "cpuacct"});
  fake.SetFile("/proc/self/cgroup", "3:memory:/\n2:pids:/\n1:cpu,cpuacct:/\n");
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver) << driver.error().message();
  ASSERT_TRUE((*driver)->Setup());
  auto session = (*driver)->CreateSession("s1", {.cpu_weight = 100});
  ASSERT_TRUE(session) << session.error().message();
  EXPECT_EQ(session->paths().cpu, "/sys/fs/cgroup/cpu,cpuacct/sessions/s1");
  EXPECT_EQ(session->paths().cpuacct, session->paths().cpu);
  EXPECT_EQ(session->placement().fds.size(), 3u) << "memory, pids, cpu+cpuacct";
  ASSERT_TRUE(session->Remove());
  ASSERT_TRUE((*driver)->Shutdown());
}

TEST(DetectTest, V2WithoutDelegatedControllersIsRefused) {
  FakeCgroupFs fake;
  testing::PureV2Host(fake, {"cpu", "pids"});
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_FALSE(driver);
  EXPECT_EQ(driver.error().message(),
            "cgroup v2 at '/sys/fs/cgroup': celld's cgroup '/ci' does not offer memory (its "
            "cgroup.controllers lists: cpu pids); start celld with systemd Delegate=yes, or "
            "enable them in the parent's cgroup.subtree_control. Refusing.");
}

TEST(DetectTest, HybridWithAllControllersOnUnifiedPicksV2There) {
  FakeCgroupFs fake;
  fake.AddMount("/sys/fs/cgroup", kTmpfsMagic);
  fake.AddMount("/sys/fs/cgroup/unified", kCgroup2SuperMagic);
  fake.AddV2Hierarchy("/sys/fs/cgroup/unified", {"memory", "pids", "cpu"});
  fake.MakeCgroups("/sys/fs/cgroup/unified/svc");
  fake.SetFile("/proc/self/cgroup", "1:name=systemd:/svc\n0::/svc\n");
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_TRUE(driver) << driver.error().message();
  EXPECT_EQ((*driver)->version(), Version::kV2);
  EXPECT_THAT((*driver)->Describe(), HasSubstr("no v1 hierarchy holds memory, pids, cpu, and the "
                                               "cgroup2 mount at '/sys/fs/cgroup/unified' offers"));
}

TEST(DetectTest, MissingV1ControllerAndUselessUnifiedIsRefused) {
  FakeCgroupFs fake;
  fake.AddMount("/sys/fs/cgroup", kTmpfsMagic);
  fake.AddMount("/sys/fs/cgroup/memory", kCgroupSuperMagic);
  fake.AddV1Hierarchy("/sys/fs/cgroup/memory", {"memory"});
  fake.AddMount("/sys/fs/cgroup/unified", kCgroup2SuperMagic);
  fake.AddV2Hierarchy("/sys/fs/cgroup/unified", {});
  fake.SetFile("/proc/self/cgroup", "4:memory:/\n0::/\n");
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_FALSE(driver);
  EXPECT_EQ(driver.error().message(),
            "cgroup detection: '/sys/fs/cgroup' is a tmpfs of v1 mounts with hierarchies for "
            "memory but none for pids, cpu, and the cgroup2 mount at '/sys/fs/cgroup/unified' "
            "offers no controller; celld needs memory, pids and cpu under one cgroup version. "
            "Refusing.");
}

TEST(DetectTest, OtherFileSystemIsRefused) {
  FakeCgroupFs fake;
  fake.AddMount("/sys/fs/cgroup", 0xEF53);
  fake.SetFile("/proc/self/cgroup", "0::/\n");
  auto driver = DetectDriver(fake, fake, {});
  ASSERT_FALSE(driver);
  EXPECT_THAT(driver.error().message(), HasSubstr("statfs f_type 0xef53"));
  EXPECT_THAT(driver.error().message(), HasSubstr("Refusing."));
}

TEST(DetectTest, BadSubtreeIsRefused) {
  FakeCgroupFs fake;
  testing::PureV2Host(fake);
  for (const char* bad : {"../x", "a//b", ".hidden", "a/b c"}) {
    auto driver = DetectDriver(fake, fake, {.subtree = bad});
    ASSERT_FALSE(driver) << bad;
    EXPECT_THAT(driver.error().message(), HasSubstr("Refusing.")) << bad;
  }
  EXPECT_TRUE(DetectDriver(fake, fake, {.subtree = "test-1/deeper"}));
}

// Each celld's own subtree by default, named after the socket it serves: readable, stable, and
// always a valid cgroup name.
TEST(DetectTest, InstanceSubtreeIsNamedAfterTheSocket) {
  EXPECT_EQ(InstanceSubtree("/run/cellhouse/celld.sock"), "celld-run-cellhouse-celld.sock");
  EXPECT_EQ(InstanceSubtree("/tmp/my dir/c@1.sock"), "celld-tmp-my_dir-c_1.sock");
  EXPECT_NE(InstanceSubtree("/run/a.sock"), InstanceSubtree("/run/b.sock"));
  const std::string long_path = "/" + std::string(100, 'x') + "/celld.sock";
  const std::string hashed = InstanceSubtree(long_path);
  EXPECT_EQ(hashed.size(), 6u + 16u) << hashed;
  EXPECT_EQ(hashed, InstanceSubtree(long_path));
  EXPECT_EQ(InstanceSubtree(""), "celld");
  for (const std::string& name :
       {InstanceSubtree("/run/cellhouse/celld.sock"), hashed, InstanceSubtree("/.a/..b")}) {
    EXPECT_TRUE(internal::IsValidCgroupName(name)) << name;
  }
}

}  // namespace
}  // namespace cellhouse::cgroup
