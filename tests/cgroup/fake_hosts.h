// Fake cgroup layouts of the hosts the drivers meet, built on FakeCgroupFs:
//   - PureV2Host: one cgroup2 mount, celld started in /ci (like the test VM, or a systemd unit
//     with Delegate=yes);
//   - HybridHost: these build machines: a tmpfs of v1 hierarchies, memory at /process_api/abc,
//     the others at /, and a cgroup2 mount at unified/ with no useful controller;
//   - V1OnlyHost: the same without unified/.
// celld's pid in all of them is 100.
//
//   FakeCgroupFs fake;
//   PureV2Host(fake);
//   auto driver = DetectDriver(fake, fake, {});
#ifndef CELLHOUSE_TESTS_CGROUP_FAKE_HOSTS_H_
#define CELLHOUSE_TESTS_CGROUP_FAKE_HOSTS_H_

#include <string>
#include <vector>

#include "tests/cgroup/fake_cgroupfs.h"

namespace cellhouse::cgroup::testing {

inline constexpr pid_t kCelldPid = 100;
inline constexpr const char* kV2Own = "/sys/fs/cgroup/ci";
inline constexpr const char* kV1Memory = "/sys/fs/cgroup/memory/process_api/abc";
inline constexpr const char* kV1Pids = "/sys/fs/cgroup/pids";
inline constexpr const char* kV1Cpu = "/sys/fs/cgroup/cpu";
inline constexpr const char* kV1Cpuacct = "/sys/fs/cgroup/cpuacct";

inline void PureV2Host(FakeCgroupFs& fake,
                       const std::vector<std::string>& controllers = {
                           "cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"}) {
  fake.AddMount("/sys/fs/cgroup", kCgroup2SuperMagic);
  fake.AddV2Hierarchy("/sys/fs/cgroup", controllers);
  fake.MakeCgroups(kV2Own);
  fake.AddProcess(kCelldPid, {kV2Own});
  fake.SetFile("/proc/self/cgroup", "0::/ci\n");
  fake.set_self_pid(kCelldPid);
}

inline void V1OnlyHost(FakeCgroupFs& fake, bool with_cpuacct = true) {
  fake.AddMount("/sys/fs/cgroup", kTmpfsMagic);
  std::vector<std::string> names = {"memory", "pids", "cpu"};
  if (with_cpuacct) {
    names.emplace_back("cpuacct");
  }
  for (const std::string& c : names) {
    fake.AddMount("/sys/fs/cgroup/" + c, kCgroupSuperMagic);
    fake.AddV1Hierarchy("/sys/fs/cgroup/" + c, {c});
  }
  fake.MakeCgroups(kV1Memory);
  std::vector<std::string> where = {kV1Memory, kV1Pids, kV1Cpu};
  if (with_cpuacct) {
    where.emplace_back(kV1Cpuacct);
  }
  fake.AddProcess(kCelldPid, where);
  fake.SetFile("/proc/self/cgroup", std::string("9:name=systemd:/\n8:pids:/\n") +
                                        "4:memory:/process_api/abc\n" +
                                        (with_cpuacct ? "2:cpuacct:/\n" : "") + "1:cpu:/\n");
  fake.set_self_pid(kCelldPid);
}

inline void HybridHost(FakeCgroupFs& fake) {
  V1OnlyHost(fake);
  fake.AddMount("/sys/fs/cgroup/unified", kCgroup2SuperMagic);
  fake.AddV2Hierarchy("/sys/fs/cgroup/unified", {"hugetlb"});
  fake.AddProcess(kCelldPid, {"/sys/fs/cgroup/unified"});
  fake.SetFile("/proc/self/cgroup", fake.File("/proc/self/cgroup") + "0::/\n");
}

}  // namespace cellhouse::cgroup::testing

#endif  // CELLHOUSE_TESTS_CGROUP_FAKE_HOSTS_H_
