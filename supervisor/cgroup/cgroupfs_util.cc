#include "supervisor/cgroup/cgroupfs_util.h"

#include <signal.h>

#include <cerrno>
#include <string>

#include "base/strings.h"

namespace cellhouse::cgroup::internal {

namespace {

// The directories of the subtree at `top`, children before parents. A top that does not exist
// yields nothing.
Result<std::vector<std::string>> PostOrder(const Fs& fs, const std::string& top) {
  std::vector<std::string> out;
  if (!fs.Exists(top)) {
    return out;
  }
  Result<std::vector<std::string>> children = fs.ListSubdirs(top);
  if (!children) {
    if (children.error().sys_errno() == ENOENT) {
      return out;
    }
    return std::move(children).error();
  }
  for (const std::string& child : *children) {
    CH_ASSIGN_OR_RETURN(std::vector<std::string> sub, PostOrder(fs, JoinPath(top, child)));
    out.insert(out.end(), sub.begin(), sub.end());
  }
  out.push_back(top);
  return out;
}

std::string PidList(const std::vector<pid_t>& pids) {
  std::string out;
  constexpr size_t kShown = 8;
  for (size_t i = 0; i < pids.size() && i < kShown; ++i) {
    if (i > 0) {
      out += ", ";
    }
    out += std::to_string(pids[i]);
  }
  if (pids.size() > kShown) {
    out += ", ...";
  }
  return out;
}

// Every pid in the subtree at `top`.
Result<std::vector<pid_t>> TreePids(const Fs& fs, const std::string& top) {
  std::vector<pid_t> live;
  CH_ASSIGN_OR_RETURN(std::vector<std::string> tree, PostOrder(fs, top));
  for (const std::string& dir : tree) {
    CH_ASSIGN_OR_RETURN(std::vector<pid_t> pids, ReadPids(fs, dir));
    live.insert(live.end(), pids.begin(), pids.end());
  }
  return live;
}

Result<std::vector<pid_t>> LivePids(const Fs& fs, const std::vector<std::string>& dirs) {
  std::vector<pid_t> live;
  for (const std::string& top : dirs) {
    CH_ASSIGN_OR_RETURN(std::vector<pid_t> pids, TreePids(fs, top));
    live.insert(live.end(), pids.begin(), pids.end());
  }
  return live;
}

// One SIGKILL round over the subtrees; `live_out` gets the pids that were there before it.
Status KillRound(const Fs& fs, const Processes& processes, const std::vector<std::string>& dirs,
                 std::vector<pid_t>* live_out) {
  live_out->clear();
  for (const std::string& top : dirs) {
    CH_ASSIGN_OR_RETURN(std::vector<pid_t> live, TreePids(fs, top));
    if (live.empty()) {
      continue;
    }
    live_out->insert(live_out->end(), live.begin(), live.end());
    // cgroup.kill (Linux >= 5.14, cgroup-v2.rst) kills the whole subtree inside the kernel, with
    // no race against fork. Without it each pid read from cgroup.procs gets SIGKILL: a pid listed
    // there is in the cgroup at that moment, and repeated rounds catch what forked meanwhile
    // (pids.max bounds how much that can be).
    std::string kill_file = JoinPath(top, "cgroup.kill");
    if (fs.Exists(kill_file)) {
      CH_RETURN_IF_ERROR(fs.WriteFile(kill_file, "1"));
    } else {
      for (pid_t pid : live) {
        CH_RETURN_IF_ERROR(processes.Kill(pid, SIGKILL));
      }
    }
  }
  return Ok();
}

}  // namespace

std::string JoinPath(std::string_view a, std::string_view b) {
  while (a.size() > 1 && a.back() == '/') {
    a.remove_suffix(1);
  }
  while (!b.empty() && b.front() == '/') {
    b.remove_prefix(1);
  }
  while (!b.empty() && b.back() == '/') {
    b.remove_suffix(1);
  }
  if (b.empty()) {
    return std::string(a);
  }
  std::string out(a);
  if (out.empty() || out.back() != '/') {
    out += '/';
  }
  out += b;
  return out;
}

bool IsValidCgroupName(std::string_view name) {
  constexpr size_t kMaxName = 64;
  if (name.empty() || name.size() > kMaxName || name.front() == '.') {
    return false;
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.';
    if (!ok) {
      return false;
    }
  }
  return true;
}

Result<uint64_t> ReadUint64(const Fs& fs, const std::string& path) {
  CH_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(path));
  return ParseUint64(Trim(text), "'" + path + "'");
}

Result<std::optional<uint64_t>> ReadKeyedUint64(const Fs& fs, const std::string& path,
                                                std::string_view key) {
  CH_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(path));
  for (std::string_view line : Split(text, '\n')) {
    line = Trim(line);
    size_t space = line.find(' ');
    if (space == std::string_view::npos || line.substr(0, space) != key) {
      continue;
    }
    CH_ASSIGN_OR_RETURN(uint64_t value, ParseUint64(Trim(line.substr(space + 1)),
                                                    "'" + path + "' key " + std::string(key)));
    return std::optional<uint64_t>(value);
  }
  return std::optional<uint64_t>();
}

Result<std::vector<pid_t>> ReadPids(const Fs& fs, const std::string& dir) {
  std::string path = JoinPath(dir, "cgroup.procs");
  Result<std::string> text = fs.ReadFile(path);
  if (!text) {
    // The cgroup went away (removed, or never made in this hierarchy): nothing lives there.
    if (text.error().sys_errno() == ENOENT || text.error().sys_errno() == ENODEV) {
      return std::vector<pid_t>();
    }
    return std::move(text).error();
  }
  std::vector<pid_t> pids;
  for (std::string_view line : Split(*text, '\n')) {
    line = Trim(line);
    if (line.empty()) {
      continue;
    }
    CH_ASSIGN_OR_RETURN(int64_t pid, ParseInt64(line, "'" + path + "'"));
    pids.push_back(static_cast<pid_t>(pid));
  }
  return pids;
}

Result<std::set<std::string>> ReadControllerSet(const Fs& fs, const std::string& path) {
  CH_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(path));
  std::set<std::string> out;
  for (std::string_view word : Split(Trim(text), ' ')) {
    word = Trim(word);
    if (!word.empty()) {
      out.emplace(word);
    }
  }
  return out;
}

Result<std::vector<std::string>> ChildCgroups(const Fs& fs, const std::string& dir) {
  std::vector<std::string> out;
  if (!fs.Exists(dir)) {
    return out;
  }
  CH_ASSIGN_OR_RETURN(std::vector<std::string> names, fs.ListSubdirs(dir));
  out.reserve(names.size());
  for (const std::string& name : names) {
    out.push_back(JoinPath(dir, name));
  }
  return out;
}

Result<bool> EnsureDir(const Fs& fs, const std::string& path) {
  Status made = fs.MakeDir(path);
  if (made) {
    return true;
  }
  if (made.error().sys_errno() == EEXIST) {
    return false;
  }
  return std::move(made).error();
}

Status KillTreesOnce(const Fs& fs, const Processes& processes,
                     const std::vector<std::string>& dirs) {
  std::vector<pid_t> live;
  return KillRound(fs, processes, dirs, &live);
}

Status KillTrees(const Fs& fs, const Processes& processes, const std::vector<std::string>& dirs,
                 const TeardownOptions& teardown) {
  std::vector<pid_t> live;
  for (int round = 0; round < teardown.kill_rounds; ++round) {
    CH_RETURN_IF_ERROR(KillRound(fs, processes, dirs, &live));
    if (live.empty()) {
      return Ok();
    }
    processes.Pause(teardown.poll);
  }
  CH_ASSIGN_OR_RETURN(live, LivePids(fs, dirs));
  if (live.empty()) {
    return Ok();
  }
  return Error("killing the processes of cgroup '" + (dirs.empty() ? "" : dirs.front()) + "': " +
               std::to_string(live.size()) + " (pids " + PidList(live) + ") still there after " +
               std::to_string(teardown.kill_rounds) + " rounds of SIGKILL");
}

Status RemoveDirPatiently(const Fs& fs, const Processes& processes, const std::string& dir,
                          const TeardownOptions& teardown) {
  for (int attempt = 0;; ++attempt) {
    Status st = fs.RemoveDir(dir);
    if (st || st.error().sys_errno() == ENOENT) {
      return Ok();
    }
    if (st.error().sys_errno() != EBUSY || attempt + 1 >= teardown.rmdir_rounds) {
      return std::move(st).error();
    }
    // A cgroup whose last process just exited stays busy until the kernel has finished
    // releasing it (css offlining is asynchronous).
    processes.Pause(teardown.poll);
  }
}

Status RemoveSubtreeLevels(const Fs& fs, const Processes& processes,
                           const std::vector<std::string>& levels,
                           const TeardownOptions& teardown) {
  for (auto it = levels.rbegin(); it != levels.rend(); ++it) {
    Result<std::vector<std::string>> children = fs.ListSubdirs(*it);
    if (!children) {
      if (children.error().sys_errno() == ENOENT) {
        continue;
      }
      return std::move(children).error();
    }
    if (!children->empty()) {
      return Ok();
    }
    CH_RETURN_IF_ERROR(RemoveDirPatiently(fs, processes, *it, teardown));
  }
  return Ok();
}

Status KillAndRemoveTrees(const Fs& fs, const Processes& processes,
                          const std::vector<std::string>& dirs, const TeardownOptions& teardown) {
  CH_RETURN_IF_ERROR(KillTrees(fs, processes, dirs, teardown));
  for (const std::string& top : dirs) {
    CH_ASSIGN_OR_RETURN(std::vector<std::string> tree, PostOrder(fs, top));
    for (const std::string& dir : tree) {
      CH_RETURN_IF_ERROR(RemoveDirPatiently(fs, processes, dir, teardown));
    }
  }
  return Ok();
}

Error SubtreeHeldError(Error lock_error, const std::string& base) {
  if (lock_error.sys_errno() != EWOULDBLOCK) {
    return lock_error;
  }
  return Error("another celld is running on the cgroup subtree '" + base + "' (" +
               lock_error.message() +
               "); this one would take that celld's session cgroups for a crashed "
               "predecessor's leftovers. Stop it first, or give this celld a subtree of its own "
               "(--cgroup-subtree NAME). Refusing.");
}

}  // namespace cellhouse::cgroup::internal
