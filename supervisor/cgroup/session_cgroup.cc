#include "supervisor/cgroup/session_cgroup.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <utility>

#include "base/strings.h"
#include "supervisor/cgroup/cgroupfs_util.h"

namespace cellhouse::cgroup {

using internal::JoinPath;

std::vector<int> Placement::RawFds() const {
  std::vector<int> out;
  out.reserve(fds.size());
  for (const UniqueFd& fd : fds) {
    out.push_back(fd.get());
  }
  return out;
}

Status PlaceProcessFromParent(std::span<const int> procs_fds, pid_t pid) {
  // "0" in cgroup.procs means "the writer": it would move the zygote itself.
  if (pid <= 0) {
    return Error("placing pid " + std::to_string(pid) + " in its session cgroup: not a child pid");
  }
  // Format the pid by hand: no allocation, no locale, usable in a forked child.
  char buf[16];
  size_t len = 0;
  char digits[16];
  size_t n = 0;
  auto value = static_cast<unsigned long>(pid);
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0 && n < sizeof(digits));
  while (n > 0) {
    buf[len++] = digits[--n];
  }
  for (size_t i = 0; i < procs_fds.size(); ++i) {
    ssize_t written;
    do {
      written = ::write(procs_fds[i], buf, len);
    } while (written < 0 && errno == EINTR);
    if (written < 0) {
      int err = errno;
      return Error::FromErrno(err, "placing pid " + std::to_string(pid) +
                                       " in its session cgroup (write to cgroup.procs fd #" +
                                       std::to_string(i) + ")");
    }
    if (static_cast<size_t>(written) != len) {
      return Error("placing pid " + std::to_string(pid) + " in its session cgroup: short write");
    }
  }
  return Ok();
}

SessionCgroup::SessionCgroup(std::string id, Version version, SessionPaths paths, Limits limits,
                             Placement placement, const Fs* fs, const Processes* processes,
                             TeardownOptions teardown)
    : id_(std::move(id)),
      version_(version),
      paths_(std::move(paths)),
      limits_(std::move(limits)),
      placement_(std::move(placement)),
      fs_(fs),
      processes_(processes),
      teardown_(teardown) {}

std::vector<std::string> SessionCgroup::Directories() const {
  std::vector<std::string> out;
  for (const std::string* p : {&paths_.memory, &paths_.pids, &paths_.cpu, &paths_.cpuacct}) {
    if (!p->empty() && std::find(out.begin(), out.end(), *p) == out.end()) {
      out.push_back(*p);
    }
  }
  return out;
}

Result<uint64_t> SessionCgroup::MemoryCurrent() const {
  return internal::ReadUint64(
      *fs_, JoinPath(paths_.memory,
                     version_ == Version::kV2 ? "memory.current" : "memory.usage_in_bytes"));
}

Result<uint64_t> SessionCgroup::MemoryPeak() const {
  return internal::ReadUint64(
      *fs_, JoinPath(paths_.memory,
                     version_ == Version::kV2 ? "memory.peak" : "memory.max_usage_in_bytes"));
}

Result<uint64_t> SessionCgroup::OomKills() const {
  std::string path =
      JoinPath(paths_.memory, version_ == Version::kV2 ? "memory.events" : "memory.oom_control");
  CH_ASSIGN_OR_RETURN(std::optional<uint64_t> kills,
                      internal::ReadKeyedUint64(*fs_, path, "oom_kill"));
  if (!kills) {
    return Error("reading OOM kills of session " + Quote(id_) + ": '" + path +
                 "' has no oom_kill counter (Linux < 4.13)");
  }
  return *kills;
}

Result<uint64_t> SessionCgroup::MemoryLimitHits() const {
  if (version_ == Version::kV1) {
    return internal::ReadUint64(*fs_, JoinPath(paths_.memory, "memory.failcnt"));
  }
  std::string path = JoinPath(paths_.memory, "memory.events");
  CH_ASSIGN_OR_RETURN(std::optional<uint64_t> hits, internal::ReadKeyedUint64(*fs_, path, "max"));
  if (!hits) {
    return Error("reading '" + path + "': no 'max' counter");
  }
  return *hits;
}

Result<uint64_t> SessionCgroup::CpuUsageNanos() const {
  if (version_ == Version::kV1) {
    if (paths_.cpuacct.empty()) {
      return Error("reading CPU usage of session " + Quote(id_) +
                   ": this host has no cpuacct hierarchy");
    }
    return internal::ReadUint64(*fs_, JoinPath(paths_.cpuacct, "cpuacct.usage"));
  }
  std::string path = JoinPath(paths_.cpu, "cpu.stat");
  CH_ASSIGN_OR_RETURN(std::optional<uint64_t> usec,
                      internal::ReadKeyedUint64(*fs_, path, "usage_usec"));
  if (!usec) {
    return Error("reading '" + path + "': no usage_usec");
  }
  return *usec * 1000;
}

Status SessionCgroup::SetCpuWeight(uint32_t weight) {
  Limits changed = limits_;
  changed.cpu_weight = weight;
  CH_RETURN_IF_ERROR(ValidateLimits(changed));
  const bool v1 = version_ == Version::kV1;
  CH_RETURN_IF_ERROR(
      fs_->WriteFile(JoinPath(paths_.cpu, v1 ? "cpu.shares" : "cpu.weight"),
                     std::to_string(v1 ? CpuWeightToShares(weight) : uint64_t{weight})));
  limits_.cpu_weight = weight;
  return Ok();
}

Result<std::vector<pid_t>> SessionCgroup::Pids() const {
  std::set<pid_t> all;
  for (const std::string& dir : Directories()) {
    CH_ASSIGN_OR_RETURN(std::vector<pid_t> pids, internal::ReadPids(*fs_, dir));
    all.insert(pids.begin(), pids.end());
  }
  return std::vector<pid_t>(all.begin(), all.end());
}

Result<std::optional<std::string>> SessionCgroup::OomOutcome() const {
  uint64_t events = 0;
  Result<uint64_t> kills = OomKills();
  if (kills) {
    events = *kills;
  } else {
    // An old v1 kernel: a hit limit plus the SIGKILL the caller saw is the best evidence left.
    CH_ASSIGN_OR_RETURN(events, MemoryLimitHits());
  }
  if (events == 0) {
    return std::optional<std::string>();
  }
  std::string message = "memory limit exceeded";
  if (limits_.memory_max) {
    message += " (limit " + std::to_string(*limits_.memory_max >> 20) + " MiB)";
  }
  return std::optional<std::string>(std::move(message));
}

Status SessionCgroup::Kill() const {
  if (removed_) {
    return Ok();
  }
  return internal::KillTreesOnce(*fs_, *processes_, Directories());
}

Status SessionCgroup::Remove() {
  if (removed_) {
    return Ok();
  }
  Status st = internal::KillAndRemoveTrees(*fs_, *processes_, Directories(), teardown_);
  if (!st) {
    return std::move(st).error().Context("removing the cgroup of session " + Quote(id_));
  }
  removed_ = true;
  placement_.fds.clear();
  return Ok();
}

}  // namespace cellhouse::cgroup
