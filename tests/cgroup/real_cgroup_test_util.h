// Shared by the real-cgroup tests (v1 on the host, v2 in the VM): a unique subtree name per test,
// the directories it may have left in each hierarchy, and a last-resort sweep that kills what is
// in them and removes them, run even when the test failed half way.
//
//   std::string subtree = UniqueSubtree();              // "cht-4242-OomKill"
//   ... test ...
//   for (const std::string& dir : V1SubtreeDirs(fs, subtree)) SweepTree(fs, processes, dir);
#ifndef CELLHOUSE_TESTS_CGROUP_REAL_CGROUP_TEST_UTIL_H_
#define CELLHOUSE_TESTS_CGROUP_REAL_CGROUP_TEST_UTIL_H_

#include <string>
#include <vector>

#include "supervisor/cgroup/fs.h"

namespace cellhouse::cgroup::testing {

// "cht-<pid>-<current gtest name>", cut to a valid cgroup name.
std::string UniqueSubtree();

// <mount>/<own cgroup>/<subtree> in every v1 hierarchy of memory, pids, cpu and cpuacct that
// this process is in.
std::vector<std::string> V1SubtreeDirs(const Fs& fs, const std::string& subtree);

// Kills every process in the tree at `dir` and removes it, children first. Returns whether
// anything was there.
bool SweepTree(const Fs& fs, const Processes& processes, const std::string& dir);

// Sweeps the "cht-<pid>-..." trees beside `dir` (a V1SubtreeDirs entry) whose test process is
// gone: what a test binary that crashed outright (no TearDown) left behind.
void SweepStaleTrees(const Fs& fs, const Processes& processes, const std::string& dir);

}  // namespace cellhouse::cgroup::testing

#endif  // CELLHOUSE_TESTS_CGROUP_REAL_CGROUP_TEST_UTIL_H_
