#include "tests/cgroup/real_cgroup_test_util.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>

#include <gtest/gtest.h>

#include "base/strings.h"
#include "supervisor/cgroup/cgroupfs_util.h"
#include "supervisor/cgroup/driver.h"

namespace cellhouse::cgroup::testing {

std::string UniqueSubtree() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = "cht-" + std::to_string(::getpid()) + "-" + (info ? info->name() : "x");
  for (char& c : name) {
    if (!internal::IsValidCgroupName(std::string(1, c))) {
      c = '_';
    }
  }
  return name.substr(0, 64);
}

std::vector<std::string> V1SubtreeDirs(const Fs& fs, const std::string& subtree) {
  std::vector<std::string> out;
  Result<std::string> self = fs.ReadFile("/proc/self/cgroup");
  if (!self) {
    return out;
  }
  Result<std::vector<CgroupMembership>> members = ParseProcCgroup(*self);
  if (!members) {
    return out;
  }
  for (const CgroupMembership& m : *members) {
    for (const std::string& c : m.controllers) {
      if (c != "memory" && c != "pids" && c != "cpu" && c != "cpuacct") {
        continue;
      }
      std::string list;
      for (const std::string& x : m.controllers) {
        list += (list.empty() ? "" : ",") + x;
      }
      for (const std::string& mount : {"/sys/fs/cgroup/" + list, "/sys/fs/cgroup/" + c}) {
        Result<int64_t> type = fs.FilesystemType(mount);
        if (!type || *type != kCgroupSuperMagic) {
          continue;
        }
        std::string dir = internal::JoinPath(internal::JoinPath(mount, m.path), subtree);
        if (std::find(out.begin(), out.end(), dir) == out.end()) {
          out.push_back(dir);
        }
        break;
      }
    }
  }
  return out;
}

bool SweepTree(const Fs& fs, const Processes& processes, const std::string& dir) {
  if (!fs.Exists(dir)) {
    return false;
  }
  Status st = internal::KillAndRemoveTrees(fs, processes, {dir}, TeardownOptions{});
  EXPECT_TRUE(st) << "sweeping '" << dir << "': " << st.error().message();
  return true;
}

void SweepStaleTrees(const Fs& fs, const Processes& processes, const std::string& dir) {
  std::string parent = dir.substr(0, dir.rfind('/'));
  Result<std::vector<std::string>> names = fs.ListSubdirs(parent);
  if (!names) {
    return;
  }
  for (const std::string& name : *names) {
    if (name.rfind("cht-", 0) != 0) {
      continue;
    }
    size_t dash = name.find('-', 4);
    Result<int64_t> pid = ParseInt64(name.substr(4, dash - 4), "test pid");
    // Only trees of a test process that no longer exists (kill(2) with signal 0: ESRCH).
    if (pid && *pid > 0 && ::kill(static_cast<pid_t>(*pid), 0) != 0 && errno == ESRCH) {
      SweepTree(fs, processes, internal::JoinPath(parent, name));
    }
  }
}

}  // namespace cellhouse::cgroup::testing
