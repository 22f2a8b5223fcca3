#include "tests/cgroup/fake_cgroupfs.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>

#include <cerrno>
#include <string>

#include "base/strings.h"

namespace cellhouse::cgroup::testing {

namespace {

constexpr const char* kV1Unlimited = "9223372036854771712";

bool IsDomainController(const std::string& c) { return c != "cpuset-threaded"; }

}  // namespace

std::string FakeCgroupFs::Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == 0 || slash == std::string::npos) {
    return "/";
  }
  return path.substr(0, slash);
}

std::string FakeCgroupFs::Base(const std::string& path) { return path.substr(path.rfind('/') + 1); }

void FakeCgroupFs::AddMount(const std::string& path, int64_t magic) {
  mounts_[path] = magic;
  for (std::string p = path; p != "/"; p = Parent(p)) {
    dirs_.insert(p);
  }
  dirs_.insert("/");
}

void FakeCgroupFs::AddV1Hierarchy(const std::string& mount,
                                  const std::vector<std::string>& controllers) {
  Hierarchy& h = hierarchies_[mount];
  h.mount = mount;
  h.version = 1;
  h.controllers = {controllers.begin(), controllers.end()};
  CreateCgroup(mount, &h);
}

void FakeCgroupFs::AddV2Hierarchy(const std::string& mount,
                                  const std::vector<std::string>& controllers) {
  Hierarchy& h = hierarchies_[mount];
  h.mount = mount;
  h.version = 2;
  h.controllers = {controllers.begin(), controllers.end()};
  CreateCgroup(mount, &h);
  cgroups_[mount].subtree_control = h.controllers;
  if (h.controllers.count("dmem") != 0) {
    files_[mount + "/dmem.capacity"] = "drm/0000:03:00.0/vram0 8589934592\n";
  }
}

void FakeCgroupFs::MakeCgroups(const std::string& path) {
  if (cgroups_.count(path) != 0) {
    return;
  }
  MakeCgroups(Parent(path));
  const Hierarchy* h = cgroups_.at(Parent(path)).hierarchy;
  CreateCgroup(path, h);
}

void FakeCgroupFs::AddProcess(pid_t pid, const std::vector<std::string>& cgroups) {
  for (const std::string& cg : cgroups) {
    cgroups_.at(cg).procs.insert(pid);
  }
}

void FakeCgroupFs::SetFile(const std::string& path, const std::string& content) {
  for (std::string p = Parent(path); p != "/"; p = Parent(p)) {
    dirs_.insert(p);
  }
  files_[path] = content;
}

std::vector<std::string> FakeCgroupFs::Writes() const {
  std::vector<std::string> out;
  for (const std::string& line : log_) {
    if (StartsWith(line, "write ")) {
      out.push_back(line);
    }
  }
  return out;
}

std::string FakeCgroupFs::File(const std::string& path) const {
  Result<std::string> r = ReadFile(path);
  return r ? *r : "<" + r.error().message() + ">";
}

bool FakeCgroupFs::IsDir(const std::string& path) const { return dirs_.count(path) != 0; }

std::vector<pid_t> FakeCgroupFs::ProcsOf(const std::string& cgroup) const {
  auto it = cgroups_.find(cgroup);
  if (it == cgroups_.end()) {
    return {};
  }
  return {it->second.procs.begin(), it->second.procs.end()};
}

std::vector<std::string> FakeCgroupFs::CgroupsOf(pid_t pid) const {
  std::vector<std::string> out;
  for (const auto& [path, cg] : cgroups_) {
    if (cg.procs.count(pid) != 0) {
      out.push_back(path);
    }
  }
  return out;
}

std::vector<std::string> FakeCgroupFs::CgroupsBelow(const std::string& path) const {
  std::vector<std::string> out;
  for (const auto& [p, cg] : cgroups_) {
    if (StartsWith(p, path + "/")) {
      out.push_back(p);
    }
  }
  return out;
}

Status FakeCgroupFs::Injected(const std::string& path, const std::string& op) const {
  auto it = fail_next_.find(path);
  if (it == fail_next_.end()) {
    return Ok();
  }
  int err = it->second;
  fail_next_.erase(it);
  return Error::FromErrno(err, op + " '" + path + "' (injected)");
}

void FakeCgroupFs::CreateCgroup(const std::string& path, const Hierarchy* h) const {
  dirs_.insert(path);
  Cgroup& cg = cgroups_[path];
  cg.hierarchy = h;
  files_[path + "/cgroup.procs"] = "";
  if (h->version == 1) {
    files_[path + "/tasks"] = "";
    files_[path + "/notify_on_release"] = "0\n";
    for (const std::string& c : h->controllers) {
      AddControllerFiles(path, *h, c);
    }
    return;
  }
  files_[path + "/cgroup.controllers"] = "";
  files_[path + "/cgroup.subtree_control"] = "";
  files_[path + "/cgroup.events"] = "populated 0\nfrozen 0\n";
  files_[path + "/cpu.stat"] = "usage_usec 0\nuser_usec 0\nsystem_usec 0\n";
  if (IsRootCgroup(path)) {
    return;
  }
  if (options_.v2_cgroup_kill) {
    files_[path + "/cgroup.kill"] = "";
  }
  for (const std::string& c : cgroups_.at(Parent(path)).subtree_control) {
    AddControllerFiles(path, *h, c);
  }
}

void FakeCgroupFs::AddControllerFiles(const std::string& dir, const Hierarchy& h,
                                      const std::string& controller) const {
  auto set = [&](const std::string& name, const std::string& value) {
    files_[dir + "/" + name] = value;
  };
  bool root = IsRootCgroup(dir);
  if (h.version == 1) {
    if (controller == "memory") {
      set("memory.limit_in_bytes", std::string(kV1Unlimited) + "\n");
      if (options_.v1_memsw) {
        set("memory.memsw.limit_in_bytes", std::string(kV1Unlimited) + "\n");
      }
      set("memory.soft_limit_in_bytes", std::string(kV1Unlimited) + "\n");
      set("memory.usage_in_bytes", "0\n");
      set("memory.max_usage_in_bytes", "0\n");
      set("memory.failcnt", "0\n");
      set("memory.oom_control", options_.v1_oom_kill_field
                                    ? "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
                                    : "oom_kill_disable 0\nunder_oom 0\n");
    } else if (controller == "pids" && !root) {
      set("pids.max", "max\n");
      set("pids.current", "0\n");
    } else if (controller == "cpu") {
      set("cpu.shares", "1024\n");
      set("cpu.cfs_quota_us", "-1\n");
      set("cpu.cfs_period_us", "100000\n");
    } else if (controller == "cpuacct") {
      set("cpuacct.usage", "0\n");
    }
    return;
  }
  if (root) {
    return;
  }
  if (controller == "memory") {
    set("memory.max", "max\n");
    set("memory.high", "max\n");
    if (options_.v2_swap) {
      set("memory.swap.max", "max\n");
    }
    set("memory.current", "0\n");
    set("memory.peak", "0\n");
    set("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
  } else if (controller == "pids") {
    set("pids.max", "max\n");
    set("pids.current", "0\n");
  } else if (controller == "cpu") {
    set("cpu.max", "max 100000\n");
    set("cpu.weight", "100\n");
  } else if (controller == "dmem") {
    set("dmem.max", "drm/0000:03:00.0/vram0 max\n");
    set("dmem.current", "drm/0000:03:00.0/vram0 0\n");
  }
}

void FakeCgroupFs::RemoveControllerFiles(const std::string& dir,
                                         const std::string& controller) const {
  std::string prefix = dir + "/" + controller + ".";
  for (auto it = files_.begin(); it != files_.end();) {
    it = StartsWith(it->first, prefix) ? files_.erase(it) : std::next(it);
  }
}

bool FakeCgroupFs::IsRootCgroup(const std::string& dir) const {
  return hierarchies_.count(dir) != 0;
}

std::set<std::string> FakeCgroupFs::OfferedV2(const std::string& dir) const {
  if (IsRootCgroup(dir)) {
    return cgroups_.at(dir).hierarchy->controllers;
  }
  return cgroups_.at(Parent(dir)).subtree_control;
}

std::vector<std::string> FakeCgroupFs::ChildDirs(const std::string& dir) const {
  std::vector<std::string> out;
  for (const std::string& d : dirs_) {
    if (d != dir && Parent(d) == dir) {
      out.push_back(d);
    }
  }
  return out;
}

Result<std::string> FakeCgroupFs::ReadFile(const std::string& path) const {
  std::string dir = Parent(path);
  std::string name = Base(path);
  auto cg = cgroups_.find(dir);
  if (cg != cgroups_.end() && files_.count(path) != 0) {
    if (name == "cgroup.procs") {
      std::string out;
      for (pid_t p : cg->second.procs) {
        out += std::to_string(p) + "\n";
      }
      return out;
    }
    if (cg->second.hierarchy->version == 2 && name == "cgroup.controllers") {
      std::string out;
      for (const std::string& c : OfferedV2(dir)) {
        out += (out.empty() ? "" : " ") + c;
      }
      return out + "\n";
    }
    if (cg->second.hierarchy->version == 2 && name == "cgroup.subtree_control") {
      std::string out;
      for (const std::string& c : cg->second.subtree_control) {
        out += (out.empty() ? "" : " ") + c;
      }
      return out + "\n";
    }
  }
  auto it = files_.find(path);
  if (it == files_.end()) {
    return Error::FromErrno(dirs_.count(path) != 0 ? EISDIR : ENOENT, "open '" + path + "'");
  }
  return it->second;
}

Status FakeCgroupFs::WriteProcs(const std::string& dir, std::string_view value) const {
  CH_ASSIGN_OR_RETURN(int64_t pid, ParseInt64(Trim(value), "cgroup.procs"));
  Cgroup& target = cgroups_.at(dir);
  if (target.hierarchy->version == 2 && !IsRootCgroup(dir)) {
    for (const std::string& c : target.subtree_control) {
      if (IsDomainController(c)) {
        return Error::FromErrno(EBUSY, "write '" + dir + "/cgroup.procs'");
      }
    }
  }
  for (auto& [path, cg] : cgroups_) {
    if (cg.hierarchy == target.hierarchy) {
      cg.procs.erase(static_cast<pid_t>(pid));
    }
  }
  target.procs.insert(static_cast<pid_t>(pid));
  return Ok();
}

Status FakeCgroupFs::WriteSubtreeControl(const std::string& dir, std::string_view value) const {
  Cgroup& cg = cgroups_.at(dir);
  std::set<std::string> offered = OfferedV2(dir);
  std::set<std::string> enable;
  std::set<std::string> disable;
  for (std::string_view token : Split(Trim(value), ' ')) {
    if (token.empty()) {
      continue;
    }
    std::string name(token.substr(1));
    if ((token[0] != '+' && token[0] != '-') || offered.count(name) == 0) {
      return Error::FromErrno(token[0] == '+' || token[0] == '-' ? ENOENT : EINVAL,
                              "write '" + dir + "/cgroup.subtree_control'");
    }
    (token[0] == '+' ? enable : disable).insert(name);
  }
  // The no-internal-process rule (cgroup-v2.rst): a non-root cgroup with processes cannot
  // delegate domain controllers.
  if (!enable.empty() && !IsRootCgroup(dir) && !cg.procs.empty()) {
    return Error::FromErrno(EBUSY, "write '" + dir + "/cgroup.subtree_control'");
  }
  for (const std::string& c : disable) {
    for (const std::string& child : ChildDirs(dir)) {
      auto child_cg = cgroups_.find(child);
      if (child_cg != cgroups_.end() && child_cg->second.subtree_control.count(c) != 0) {
        return Error::FromErrno(EBUSY, "write '" + dir + "/cgroup.subtree_control'");
      }
    }
  }
  for (const std::string& c : enable) {
    if (cg.subtree_control.insert(c).second) {
      for (const std::string& child : ChildDirs(dir)) {
        if (cgroups_.count(child) != 0) {
          AddControllerFiles(child, *cg.hierarchy, c);
        }
      }
    }
  }
  for (const std::string& c : disable) {
    if (cg.subtree_control.erase(c) != 0) {
      for (const std::string& child : ChildDirs(dir)) {
        RemoveControllerFiles(child, c);
      }
    }
  }
  return Ok();
}

void FakeCgroupFs::KillTree(const std::string& dir) const {
  for (auto& [p, c] : cgroups_) {
    if (p != dir && !StartsWith(p, dir + "/")) {
      continue;
    }
    for (auto it = c.procs.begin(); it != c.procs.end();) {
      it = unkillable_.count(*it) != 0 ? std::next(it) : c.procs.erase(it);
    }
  }
}

Status FakeCgroupFs::WriteFile(const std::string& path, std::string_view value) const {
  log_.push_back("write " + path + " " + std::string(value));
  CH_RETURN_IF_ERROR(Injected(path, "write"));
  if (files_.count(path) == 0) {
    return Error::FromErrno(ENOENT, "open '" + path + "'");
  }
  std::string dir = Parent(path);
  std::string name = Base(path);
  auto cg = cgroups_.find(dir);
  if (cg != cgroups_.end()) {
    if (name == "cgroup.procs") {
      return WriteProcs(dir, value);
    }
    if (cg->second.hierarchy->version == 2 && name == "cgroup.subtree_control") {
      return WriteSubtreeControl(dir, value);
    }
    if (name == "cgroup.kill") {
      KillTree(dir);
      return Ok();
    }
  }
  files_[path] = std::string(value);
  return Ok();
}

Status FakeCgroupFs::MakeDir(const std::string& path) const {
  log_.push_back("mkdir " + path);
  CH_RETURN_IF_ERROR(Injected(path, "mkdir"));
  if (dirs_.count(path) != 0 || files_.count(path) != 0) {
    return Error::FromErrno(EEXIST, "mkdir '" + path + "'");
  }
  if (dirs_.count(Parent(path)) == 0) {
    return Error::FromErrno(ENOENT, "mkdir '" + path + "'");
  }
  auto parent = cgroups_.find(Parent(path));
  if (parent != cgroups_.end()) {
    CreateCgroup(path, parent->second.hierarchy);
  } else {
    dirs_.insert(path);
  }
  return Ok();
}

Status FakeCgroupFs::RemoveDir(const std::string& path) const {
  log_.push_back("rmdir " + path);
  CH_RETURN_IF_ERROR(Injected(path, "rmdir"));
  if (dirs_.count(path) == 0) {
    return Error::FromErrno(ENOENT, "rmdir '" + path + "'");
  }
  if (!ChildDirs(path).empty()) {
    return Error::FromErrno(cgroups_.count(path) != 0 ? EBUSY : ENOTEMPTY, "rmdir '" + path + "'");
  }
  auto cg = cgroups_.find(path);
  if (cg != cgroups_.end()) {
    if (!cg->second.procs.empty() || IsRootCgroup(path)) {
      return Error::FromErrno(EBUSY, "rmdir '" + path + "'");
    }
    cgroups_.erase(cg);
    for (auto it = files_.begin(); it != files_.end();) {
      it = Parent(it->first) == path ? files_.erase(it) : std::next(it);
    }
  } else {
    for (const auto& [f, content] : files_) {
      if (Parent(f) == path) {
        return Error::FromErrno(ENOTEMPTY, "rmdir '" + path + "'");
      }
    }
  }
  dirs_.erase(path);
  return Ok();
}

Result<std::vector<std::string>> FakeCgroupFs::ListSubdirs(const std::string& path) const {
  if (dirs_.count(path) == 0) {
    return Error::FromErrno(ENOENT, "open directory '" + path + "'");
  }
  std::vector<std::string> out;
  for (const std::string& d : ChildDirs(path)) {
    out.push_back(Base(d));
  }
  return out;  // dirs_ is ordered, so this is sorted
}

Result<int64_t> FakeCgroupFs::FilesystemType(const std::string& path) const {
  if (dirs_.count(path) == 0 && files_.count(path) == 0) {
    return Error::FromErrno(ENOENT, "statfs '" + path + "'");
  }
  for (std::string p = path;; p = Parent(p)) {
    auto it = mounts_.find(p);
    if (it != mounts_.end()) {
      return it->second;
    }
    if (p == "/") {
      break;
    }
  }
  return int64_t{0xEF53};  // ext4, the root file system
}

bool FakeCgroupFs::Exists(const std::string& path) const {
  return dirs_.count(path) != 0 || files_.count(path) != 0;
}

Result<UniqueFd> FakeCgroupFs::OpenDirectory(const std::string& path) const {
  log_.push_back("open " + path);
  CH_RETURN_IF_ERROR(Injected(path, "open"));
  if (dirs_.count(path) == 0) {
    return Error::FromErrno(ENOENT, "open directory '" + path + "'");
  }
  return UniqueFd(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

Result<UniqueFd> FakeCgroupFs::OpenForWriting(const std::string& path) const {
  log_.push_back("open " + path);
  CH_RETURN_IF_ERROR(Injected(path, "open"));
  if (files_.count(path) == 0) {
    return Error::FromErrno(ENOENT, "open '" + path + "'");
  }
  return UniqueFd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
}

Result<UniqueFd> FakeCgroupFs::LockDirectory(const std::string& path) const {
  log_.push_back("lock " + path);
  CH_RETURN_IF_ERROR(Injected(path, "lock"));
  if (dirs_.count(path) == 0) {
    return Error::FromErrno(ENOENT, "open directory '" + path + "'");
  }
  UniqueFd& file = lock_files_[path];
  if (!file.valid()) {
    file = UniqueFd(::memfd_create("fake-cgroup-lock", MFD_CLOEXEC));
    if (!file.valid()) return Error::FromErrno(errno, "memfd_create");
  }
  // A new open file description each time: flock(2) locks conflict between them.
  std::string self = "/proc/self/fd/" + std::to_string(file.get());
  UniqueFd fd(::open(self.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Error::FromErrno(errno, "open " + self);
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    return Error::FromErrno(errno, "flock '" + path + "'");
  }
  return fd;
}

Status FakeCgroupFs::Kill(pid_t pid, int signal) const {
  log_.push_back("kill " + std::to_string(pid) + " " + std::to_string(signal));
  if (unkillable_.count(pid) != 0) {
    return Ok();
  }
  for (auto& [path, cg] : cgroups_) {
    cg.procs.erase(pid);
  }
  return Ok();
}

void FakeCgroupFs::Pause(std::chrono::milliseconds /*duration*/) const { ++pauses_; }

}  // namespace cellhouse::cgroup::testing
