// The narrow seams between the cgroup drivers and the kernel: a handful of file-system calls on
// cgroupfs (Fs) and the few process calls teardown needs (Processes). The drivers take both as
// parameters, so their whole behaviour (the exact files and values written, the v2 leaf move,
// the cleanup order) is unit-tested against an in-memory fake cgroupfs; RealFs and RealProcesses
// are the production implementations, one system call each.
//
//   RealFs fs;
//   RealProcesses processes;
//   CH_ASSIGN_OR_RETURN(std::unique_ptr<Driver> driver, DetectDriver(fs, processes, {}));
//
// Paths are absolute. Every error names the call and the path (Error::FromErrno), and keeps the
// errno so callers can tell EEXIST, ENOENT and EBUSY apart.
#ifndef CELLHOUSE_SUPERVISOR_CGROUP_FS_H_
#define CELLHOUSE_SUPERVISOR_CGROUP_FS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::cgroup {

// statfs(2) f_type values (linux/magic.h), named here so the fake and the detection agree.
inline constexpr int64_t kCgroup2SuperMagic = 0x63677270;  // CGROUP2_SUPER_MAGIC
inline constexpr int64_t kCgroupSuperMagic = 0x27e0eb;     // CGROUP_SUPER_MAGIC (v1)
inline constexpr int64_t kTmpfsMagic = 0x01021994;         // TMPFS_MAGIC

class Fs {
 public:
  virtual ~Fs() = default;

  // The whole file (cgroupfs files are small; anything past 1 MiB is refused).
  virtual Result<std::string> ReadFile(const std::string& path) const = 0;
  // One write(2) of `value` (cgroupfs parses each write as one command).
  virtual Status WriteFile(const std::string& path, std::string_view value) const = 0;
  // mkdir(2) with mode 0700: only root may look into celld's cgroups (another user could
  // otherwise read a session's usage and its worker's pid). An existing directory is an error
  // with errno EEXIST.
  virtual Status MakeDir(const std::string& path) const = 0;
  // rmdir(2); the errno (EBUSY, ENOENT) is kept.
  virtual Status RemoveDir(const std::string& path) const = 0;
  // The names of the subdirectories of `path` (child cgroups), sorted.
  virtual Result<std::vector<std::string>> ListSubdirs(const std::string& path) const = 0;
  // statfs(2) f_type of the file system holding `path`.
  virtual Result<int64_t> FilesystemType(const std::string& path) const = 0;
  virtual bool Exists(const std::string& path) const = 0;
  // open(O_RDONLY | O_DIRECTORY | O_CLOEXEC): a cgroup directory for clone3(CLONE_INTO_CGROUP).
  virtual Result<UniqueFd> OpenDirectory(const std::string& path) const = 0;
  // open(O_WRONLY | O_CLOEXEC): a cgroup.procs file another process writes a pid into.
  virtual Result<UniqueFd> OpenForWriting(const std::string& path) const = 0;
  // An exclusive flock(2) on the directory `path`, held until the returned descriptor closes;
  // never waits. Held elsewhere: an error with errno EWOULDBLOCK whose message names the holder's
  // pid when /proc/locks tells it.
  virtual Result<UniqueFd> LockDirectory(const std::string& path) const = 0;
};

class Processes {
 public:
  virtual ~Processes() = default;
  // kill(2); a process that is already gone (ESRCH) is not an error.
  virtual Status Kill(pid_t pid, int signal) const = 0;
  virtual pid_t SelfPid() const = 0;
  // Waits a little between teardown polls (a process SIGKILLed is still in its cgroup until it
  // has released its memory).
  virtual void Pause(std::chrono::milliseconds duration) const = 0;
};

class RealFs final : public Fs {
 public:
  Result<std::string> ReadFile(const std::string& path) const override;
  Status WriteFile(const std::string& path, std::string_view value) const override;
  Status MakeDir(const std::string& path) const override;
  Status RemoveDir(const std::string& path) const override;
  Result<std::vector<std::string>> ListSubdirs(const std::string& path) const override;
  Result<int64_t> FilesystemType(const std::string& path) const override;
  bool Exists(const std::string& path) const override;
  Result<UniqueFd> OpenDirectory(const std::string& path) const override;
  Result<UniqueFd> OpenForWriting(const std::string& path) const override;
  Result<UniqueFd> LockDirectory(const std::string& path) const override;
};

class RealProcesses final : public Processes {
 public:
  Status Kill(pid_t pid, int signal) const override;
  pid_t SelfPid() const override;
  void Pause(std::chrono::milliseconds duration) const override;
};

}  // namespace cellhouse::cgroup

#endif  // CELLHOUSE_SUPERVISOR_CGROUP_FS_H_
