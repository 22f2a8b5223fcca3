// The cgroup v2 driver (Documentation/admin-guide/cgroup-v2.rst). The unified hierarchy has the
// "no internal processes" rule: a non-root cgroup that enables domain controllers for its
// children (cgroup.subtree_control) may hold no process itself. So celld first moves itself into
// a supervisor/ leaf, then enables +memory +pids +cpu in its own cgroup and in sessions/.
#include <cerrno>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/strings.h"
#include "supervisor/cgroup/cgroupfs_util.h"
#include "supervisor/cgroup/drivers.h"

namespace cellhouse::cgroup::internal {

namespace {

constexpr const char* kDomainControllers[] = {"memory", "pids", "cpu"};
// Optional: device memory (Linux >= 6.14), enabled when offered so GPU shares can be limited.
constexpr const char* kOptionalControllers[] = {"dmem"};

std::string ControlLine(const std::vector<std::string>& controllers, char sign) {
  std::string out;
  for (const std::string& c : controllers) {
    if (!out.empty()) {
      out += ' ';
    }
    out += sign;
    out += c;
  }
  return out;
}

class V2Driver final : public Driver {
 public:
  V2Driver(const Fs& fs, const Processes& processes, DriverOptions options, V2Layout layout)
      : fs_(fs), processes_(processes), options_(std::move(options)), layout_(std::move(layout)) {
    own_dir_ = JoinPath(layout_.mount, layout_.own);
    base_dir_ = JoinPath(own_dir_, options_.subtree);
    sessions_dir_ = JoinPath(base_dir_, "sessions");
    supervisor_dir_ = JoinPath(base_dir_, "supervisor");
    for (const char* c : kDomainControllers) {
      wanted_.emplace_back(c);
    }
    for (const char* c : kOptionalControllers) {
      if (layout_.controllers.count(c) != 0) {
        wanted_.emplace_back(c);
      }
    }
  }

  Version version() const override { return Version::kV2; }

  std::string Describe() const override {
    std::string out = "cgroup v2 (";
    for (size_t i = 0; i < wanted_.size(); ++i) {
      out += (i > 0 ? ", " : "") + wanted_[i];
    }
    out += "): " + layout_.why + "; celld runs in '" + supervisor_dir_ + "', sessions in '" +
           sessions_dir_ + "/<id>'";
    if (setup_done_ && !swap_limited_) {
      out += "; swap is not limited (no memory.swap.max: the kernel has no swap accounting)";
    }
    return out;
  }

  Result<SetupReport> Setup() override {
    // First this celld's claim on the subtree: without it, what another celld's sessions hold
    // would look like a crashed predecessor's leftovers.
    Status locked = TakeSubtreeLock();
    if (!locked) {
      return std::move(locked).error().Context("setting up cgroup v2 under '" + own_dir_ + "'");
    }
    Result<SetupReport> report = SetupSteps();
    if (!report) {
      Status undo = Unwind();
      static_cast<void>(undo);  // the setup error is the one worth reporting
      lock_.reset();
      return std::move(report).error().Context("setting up cgroup v2 under '" + own_dir_ + "'");
    }
    setup_done_ = true;
    return report;
  }

  Result<SessionCgroup> CreateSession(std::string_view id, const Limits& limits) override {
    if (!setup_done_) {
      return Error("creating a session cgroup: Setup() has not run");
    }
    if (!IsValidCgroupName(id)) {
      return Error("creating a session cgroup: " + Quote(id) +
                   " is not a valid cgroup name (1..64 of [A-Za-z0-9_.-])");
    }
    CH_RETURN_IF_ERROR(ValidateLimits(limits));
    if (!limits.device_memory.empty() && !HasController("dmem")) {
      return Error("creating the cgroup of session " + Quote(id) +
                   ": a device memory limit needs the dmem controller, which '" + own_dir_ +
                   "' does not offer");
    }
    std::string dir = JoinPath(sessions_dir_, id);
    CH_RETURN_IF_ERROR(fs_.MakeDir(dir));
    Result<Placement> placement = WriteLimitsAndOpen(dir, limits);
    if (!placement) {
      Status removed = fs_.RemoveDir(dir);
      static_cast<void>(removed);  // empty and just made: the write error is what matters
      return std::move(placement).error().Context("creating the cgroup of session " + Quote(id));
    }
    SessionPaths paths{.memory = dir, .pids = dir, .cpu = dir, .cpuacct = dir};
    return SessionCgroup(std::string(id), Version::kV2, std::move(paths), limits,
                         std::move(*placement), &fs_, &processes_, options_.teardown);
  }

  Status Shutdown() override {
    if (!lock_.valid()) {
      // Setup never took the subtree (refused while another celld holds it, or not run): what
      // is there is not this celld's to remove.
      setup_done_ = false;
      return Ok();
    }
    Status st = Unwind();
    lock_.reset();  // after the subtree is gone: a successor finds it clean
    setup_done_ = false;
    if (!st) {
      return std::move(st).error().Context("shutting down cgroup v2 under '" + own_dir_ + "'");
    }
    return Ok();
  }

  Result<std::optional<uint64_t>> OwnMemoryLimit() const override {
    std::optional<uint64_t> lowest;
    // The own cgroup and each ancestor up to (not including) the root, which has no memory.max.
    std::string rel = layout_.own;
    while (rel.size() > 1) {
      Result<std::string> text = fs_.ReadFile(JoinPath(JoinPath(layout_.mount, rel), "memory.max"));
      if (text && Trim(*text) != "max") {
        CH_ASSIGN_OR_RETURN(uint64_t v, ParseUint64(Trim(*text), "memory.max of '" + rel + "'"));
        if (!lowest || v < *lowest) {
          lowest = v;
        }
      }
      size_t slash = rel.rfind('/');
      rel = slash == 0 ? "/" : rel.substr(0, slash);
    }
    return lowest;
  }

  Result<std::vector<DeviceMemoryRegion>> DeviceMemoryRegions() const override {
    std::vector<DeviceMemoryRegion> out;
    if (!HasController("dmem")) {
      return out;
    }
    CH_ASSIGN_OR_RETURN(std::string text, fs_.ReadFile(JoinPath(layout_.mount, "dmem.capacity")));
    for (std::string_view line : Split(text, '\n')) {
      line = Trim(line);
      size_t space = line.rfind(' ');
      if (line.empty() || space == std::string_view::npos) {
        continue;
      }
      CH_ASSIGN_OR_RETURN(uint64_t bytes,
                          ParseUint64(Trim(line.substr(space + 1)), "dmem.capacity"));
      out.push_back({.name = std::string(Trim(line.substr(0, space))), .capacity_bytes = bytes});
    }
    return out;
  }

 private:
  bool HasController(std::string_view c) const {
    for (const std::string& w : wanted_) {
      if (w == c) {
        return true;
      }
    }
    return false;
  }

  // The cgroups that must delegate controllers to their children: own, then each subtree level.
  std::vector<std::string> DelegationChain() const {
    std::vector<std::string> chain = {own_dir_};
    std::string dir = own_dir_;
    if (!options_.subtree.empty()) {
      for (std::string_view part : Split(options_.subtree, '/')) {
        dir = JoinPath(dir, part);
        chain.push_back(dir);
      }
    }
    return chain;
  }

  // The subtree levels below own (a predecessor's are this celld's now), then an exclusive lock
  // on the innermost, held until Shutdown. Refused, with nothing touched, while another celld
  // holds it.
  Status TakeSubtreeLock() {
    std::vector<std::string> chain = DelegationChain();
    std::vector<std::string> made_here;
    for (size_t i = 1; i < chain.size(); ++i) {
      Result<bool> made = EnsureDir(fs_, chain[i]);
      if (!made) {
        RemoveMadeLevels(made_here);
        return std::move(made).error();
      }
      if (*made) made_here.push_back(chain[i]);
      levels_.push_back(chain[i]);
    }
    Result<UniqueFd> lock = fs_.LockDirectory(base_dir_);
    if (!lock) {
      RemoveMadeLevels(made_here);
      levels_.clear();
      return SubtreeHeldError(std::move(lock).error(), base_dir_);
    }
    lock_ = std::move(*lock);
    return Ok();
  }

  void RemoveMadeLevels(const std::vector<std::string>& made) {
    for (auto it = made.rbegin(); it != made.rend(); ++it) {
      static_cast<void>(fs_.RemoveDir(*it));  // empty and just made; the first error matters
    }
  }

  Result<SetupReport> SetupSteps() {
    SetupReport report;
    // 1. What a crashed predecessor left: its sessions, with whatever still runs in them.
    CH_ASSIGN_OR_RETURN(report.removed_leftovers, ChildCgroups(fs_, sessions_dir_));
    CH_RETURN_IF_ERROR(
        KillAndRemoveTrees(fs_, processes_, report.removed_leftovers, options_.teardown));
    // 2. The supervisor/ leaf (the subtree levels were made with the lock), and celld into it.
    std::vector<std::string> chain = DelegationChain();
    // supervisor/ is this celld's by name, even when a crashed predecessor left it.
    CH_ASSIGN_OR_RETURN(bool made_supervisor, EnsureDir(fs_, supervisor_dir_));
    static_cast<void>(made_supervisor);
    owns_supervisor_ = true;
    CH_RETURN_IF_ERROR(fs_.WriteFile(JoinPath(supervisor_dir_, "cgroup.procs"),
                                     std::to_string(processes_.SelfPid())));
    moved_self_ = true;
    // 3. Delegate the controllers down the chain, then into sessions/.
    for (const std::string& dir : chain) {
      CH_RETURN_IF_ERROR(EnableControllers(dir));
    }
    CH_ASSIGN_OR_RETURN(bool made_sessions, EnsureDir(fs_, sessions_dir_));
    static_cast<void>(made_sessions);  // removed by Unwind whether made now or by a predecessor
    CH_RETURN_IF_ERROR(EnableControllers(sessions_dir_));
    swap_limited_ = fs_.Exists(JoinPath(sessions_dir_, "memory.swap.max"));
    return report;
  }

  Status EnableControllers(const std::string& dir) {
    std::string control = JoinPath(dir, "cgroup.subtree_control");
    CH_ASSIGN_OR_RETURN(std::set<std::string> present, ReadControllerSet(fs_, control));
    std::vector<std::string> missing;
    for (const std::string& c : wanted_) {
      if (present.count(c) == 0) {
        missing.push_back(c);
      }
    }
    if (missing.empty()) {
      return Ok();
    }
    Status st = fs_.WriteFile(control, ControlLine(missing, '+'));
    if (!st) {
      if (st.error().sys_errno() == EBUSY) {
        Result<std::vector<pid_t>> pids = ReadPids(fs_, dir);
        std::string who = pids && !pids->empty()
                              ? std::to_string(pids->size()) + " other process(es), e.g. pid " +
                                    std::to_string(pids->front()) + ","
                              : "other processes";
        return Error("enabling " + ControlLine(missing, '+') + " in '" + control + "': " + who +
                     " still live in '" + dir +
                     "' (cgroup v2 allows no process in a cgroup that delegates controllers). "
                     "Start celld as the only process of its cgroup (systemd Delegate=yes). "
                     "Refusing.");
      }
      return std::move(st).error();
    }
    enabled_.emplace_back(dir, missing);
    return Ok();
  }

  // Undoes Setup in reverse, as far as it got: sessions, controllers, the leaf move, the dirs.
  // Keeps going past errors and returns the first.
  Status Unwind() {
    Status first;
    auto note = [&first](Status st) {
      if (!st && first) {
        first = std::move(st);
      }
    };
    Result<std::vector<std::string>> dirs = ChildCgroups(fs_, sessions_dir_);
    note(dirs ? KillAndRemoveTrees(fs_, processes_, *dirs, options_.teardown)
              : Status(std::move(dirs).error()));
    // sessions/ goes before any controller is disabled: a parent cannot drop a controller that a
    // child still has in its own cgroup.subtree_control (EBUSY). Then deepest first.
    note(RemoveDirPatiently(fs_, processes_, sessions_dir_, options_.teardown));
    for (auto it = enabled_.rbegin(); it != enabled_.rend(); ++it) {
      if (it->first == sessions_dir_) {
        continue;  // gone with the directory
      }
      note(fs_.WriteFile(JoinPath(it->first, "cgroup.subtree_control"),
                         ControlLine(it->second, '-')));
    }
    bool own_delegates_now = false;
    Result<std::set<std::string>> own_control =
        ReadControllerSet(fs_, JoinPath(own_dir_, "cgroup.subtree_control"));
    if (own_control) {
      for (const char* c : kDomainControllers) {
        own_delegates_now |= own_control->count(c) != 0;
      }
    }
    // Back into the own cgroup, so supervisor/ can be removed: possible only once the own
    // cgroup delegates no domain controller again (the no-internal-process rule).
    if (moved_self_ && !own_delegates_now) {
      note(fs_.WriteFile(JoinPath(own_dir_, "cgroup.procs"), std::to_string(processes_.SelfPid())));
      moved_self_ = false;
    }
    if (!moved_self_ && owns_supervisor_) {
      note(RemoveDirPatiently(fs_, processes_, supervisor_dir_, options_.teardown));
      owns_supervisor_ = false;
    }
    if (!moved_self_) {
      note(RemoveSubtreeLevels(fs_, processes_, levels_, options_.teardown));
      levels_.clear();
    }
    enabled_.clear();
    return first;
  }

  Result<Placement> WriteLimitsAndOpen(const std::string& dir, const Limits& limits) {
    auto write = [&](const char* file, const std::string& value) {
      return fs_.WriteFile(JoinPath(dir, file), value);
    };
    if (limits.memory_max) {
      CH_RETURN_IF_ERROR(write("memory.max", std::to_string(*limits.memory_max)));
    }
    if (swap_limited_) {
      CH_RETURN_IF_ERROR(write("memory.swap.max", std::to_string(limits.swap_max)));
    }
    if (limits.memory_high) {
      CH_RETURN_IF_ERROR(write("memory.high", std::to_string(*limits.memory_high)));
    }
    if (limits.pids_max) {
      CH_RETURN_IF_ERROR(write("pids.max", std::to_string(*limits.pids_max)));
    }
    if (limits.cpu) {
      CH_RETURN_IF_ERROR(write("cpu.max", std::to_string(limits.cpu->quota_us) + " " +
                                              std::to_string(limits.cpu->period_us)));
    }
    if (limits.cpu_weight) {
      CH_RETURN_IF_ERROR(write("cpu.weight", std::to_string(*limits.cpu_weight)));
    }
    for (const DeviceMemoryLimit& d : limits.device_memory) {
      CH_RETURN_IF_ERROR(write("dmem.max", d.region + " " + std::to_string(d.bytes)));
    }
    Placement placement{.kind = Placement::Kind::kCloneIntoCgroup};
    CH_ASSIGN_OR_RETURN(UniqueFd fd, fs_.OpenDirectory(dir));
    placement.fds.push_back(std::move(fd));
    return placement;
  }

  const Fs& fs_;
  const Processes& processes_;
  DriverOptions options_;
  V2Layout layout_;
  std::vector<std::string> wanted_;
  std::string own_dir_;
  std::string base_dir_;
  std::string sessions_dir_;
  std::string supervisor_dir_;

  // What Setup did, for Unwind.
  bool setup_done_ = false;
  bool moved_self_ = false;
  bool owns_supervisor_ = false;
  bool swap_limited_ = false;
  std::vector<std::string> levels_;  // subtree levels, outermost first
  std::vector<std::pair<std::string, std::vector<std::string>>> enabled_;  // dir, controllers
  UniqueFd lock_;  // this celld's claim on base_dir_ (Fs::LockDirectory)
};

}  // namespace

std::unique_ptr<Driver> MakeV2Driver(const Fs& fs, const Processes& processes,
                                     const DriverOptions& options, V2Layout layout) {
  return std::make_unique<V2Driver>(fs, processes, options, std::move(layout));
}

}  // namespace cellhouse::cgroup::internal
