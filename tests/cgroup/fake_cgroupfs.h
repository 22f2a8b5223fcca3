// An in-memory cgroupfs for unit tests of the drivers: v1 hierarchies and v2 mounts with the
// kernel rules the drivers depend on (interface files appearing per controller, the v2
// "no internal processes" rule and top-down constraint on cgroup.subtree_control, EBUSY from
// rmdir of a populated cgroup, cgroup.kill, processes moving on a cgroup.procs write), and a log
// of every mutating call so tests can assert the exact files and values written and their order.
//
//   FakeCgroupFs fake;
//   fake.AddMount("/sys/fs/cgroup", kCgroup2SuperMagic);
//   fake.AddV2Hierarchy("/sys/fs/cgroup", {"memory", "pids", "cpu"});
//   fake.MakeCgroups("/sys/fs/cgroup/ci");
//   fake.AddProcess(100, {"/sys/fs/cgroup/ci"});
//   fake.SetFile("/proc/self/cgroup", "0::/ci\n");
//   auto driver = DetectDriver(fake, fake, {});
//   EXPECT_THAT(fake.Log(), Contains("write /sys/fs/cgroup/ci/supervisor/cgroup.procs 100"));
#ifndef CELLHOUSE_TESTS_CGROUP_FAKE_CGROUPFS_H_
#define CELLHOUSE_TESTS_CGROUP_FAKE_CGROUPFS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "supervisor/cgroup/fs.h"

namespace cellhouse::cgroup::testing {

struct FakeOptions {
  bool v1_memsw = true;           // memory.memsw.limit_in_bytes exists (swapaccount=1)
  bool v1_oom_kill_field = true;  // memory.oom_control has oom_kill (Linux >= 4.13)
  bool v2_swap = true;            // memory.swap.max exists
  bool v2_cgroup_kill = true;     // cgroup.kill exists (Linux >= 5.14)
};

class FakeCgroupFs final : public Fs, public Processes {
 public:
  explicit FakeCgroupFs(FakeOptions options = {}) : options_(options) {}

  // --- building the fake host ---
  // A file system mount point (creates the directory and its parents as plain directories).
  void AddMount(const std::string& path, int64_t magic);
  // A v1 hierarchy at `mount` (already added with kCgroupSuperMagic) with these controllers.
  void AddV1Hierarchy(const std::string& mount, const std::vector<std::string>& controllers);
  // A v2 hierarchy at `mount` whose root offers `controllers` and (like the test VM and systemd)
  // already enables them all in its cgroup.subtree_control.
  void AddV2Hierarchy(const std::string& mount, const std::vector<std::string>& controllers);
  // Creates the cgroup at `path` and any missing parents (below a hierarchy root).
  void MakeCgroups(const std::string& path);
  // Puts `pid` into each cgroup listed (one per hierarchy).
  void AddProcess(pid_t pid, const std::vector<std::string>& cgroups);
  // A process that ignores SIGKILL (stuck in D state) to exercise teardown timeouts.
  void MakeUnkillable(pid_t pid) { unkillable_.insert(pid); }
  void SetFile(const std::string& path, const std::string& content);
  // Makes the next mutating call on `path` fail with `err`.
  void FailNextOn(const std::string& path, int err) { fail_next_[path] = err; }
  void set_self_pid(pid_t pid) { self_pid_ = pid; }

  // --- inspecting ---
  // "write <path> <value>", "mkdir <path>", "rmdir <path>", "kill <pid> <signal>",
  // "open <path>", in call order.
  const std::vector<std::string>& Log() const { return log_; }
  // Only the "write ..." entries.
  std::vector<std::string> Writes() const;
  void ClearLog() { log_.clear(); }
  std::string File(const std::string& path) const;
  bool IsDir(const std::string& path) const;
  std::vector<pid_t> ProcsOf(const std::string& cgroup) const;
  // Where `pid` is, one path per hierarchy it is in.
  std::vector<std::string> CgroupsOf(pid_t pid) const;
  // Every cgroup below `path` (not `path` itself).
  std::vector<std::string> CgroupsBelow(const std::string& path) const;
  int pauses() const { return pauses_; }

  // --- Fs ---
  Result<std::string> ReadFile(const std::string& path) const override;
  Status WriteFile(const std::string& path, std::string_view value) const override;
  Status MakeDir(const std::string& path) const override;
  Status RemoveDir(const std::string& path) const override;
  Result<std::vector<std::string>> ListSubdirs(const std::string& path) const override;
  Result<int64_t> FilesystemType(const std::string& path) const override;
  bool Exists(const std::string& path) const override;
  Result<UniqueFd> OpenDirectory(const std::string& path) const override;
  Result<UniqueFd> OpenForWriting(const std::string& path) const override;
  // A real flock on a memfd standing for the directory: held until the descriptor closes, so two
  // drivers on one fake contend as two celld on one cgroupfs do.
  Result<UniqueFd> LockDirectory(const std::string& path) const override;

  // --- Processes ---
  Status Kill(pid_t pid, int signal) const override;
  pid_t SelfPid() const override { return self_pid_; }
  void Pause(std::chrono::milliseconds duration) const override;

 private:
  struct Hierarchy {
    std::string mount;
    int version = 1;
    std::set<std::string> controllers;
  };
  struct Cgroup {
    const Hierarchy* hierarchy = nullptr;
    std::set<pid_t> procs;
    std::set<std::string> subtree_control;  // v2
  };

  static std::string Parent(const std::string& path);
  static std::string Base(const std::string& path);
  Status Injected(const std::string& path, const std::string& op) const;
  void CreateCgroup(const std::string& path, const Hierarchy* h) const;
  void AddControllerFiles(const std::string& dir, const Hierarchy& h,
                          const std::string& controller) const;
  void RemoveControllerFiles(const std::string& dir, const std::string& controller) const;
  std::set<std::string> OfferedV2(const std::string& dir) const;
  bool IsRootCgroup(const std::string& dir) const;
  std::vector<std::string> ChildDirs(const std::string& dir) const;
  Status WriteProcs(const std::string& dir, std::string_view value) const;
  Status WriteSubtreeControl(const std::string& dir, std::string_view value) const;
  // cgroup.kill: every process of the subtree dies, except the unkillable ones.
  void KillTree(const std::string& dir) const;

  FakeOptions options_;
  pid_t self_pid_ = 100;
  std::map<std::string, Hierarchy> hierarchies_;  // by mount
  std::map<std::string, int64_t> mounts_;
  mutable std::set<std::string> dirs_;
  mutable std::map<std::string, std::string> files_;
  mutable std::map<std::string, Cgroup> cgroups_;
  mutable std::vector<std::string> log_;
  mutable std::map<std::string, int> fail_next_;
  mutable int pauses_ = 0;
  std::set<pid_t> unkillable_;
  mutable std::map<std::string, UniqueFd> lock_files_;  // per locked directory, a memfd
};

}  // namespace cellhouse::cgroup::testing

#endif  // CELLHOUSE_TESTS_CGROUP_FAKE_CGROUPFS_H_
