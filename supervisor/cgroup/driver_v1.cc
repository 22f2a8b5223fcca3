// The cgroup v1 driver (Documentation/admin-guide/cgroup-v1/): one hierarchy per controller (or
// per co-mounted group such as cpu,cpuacct), each with its own copy of celld's tree
// <own>/[subtree/]sessions/<id>. v1 has no "no internal processes" rule, so celld stays where it
// is, and a worker is placed by writing its pid into each hierarchy's cgroup.procs.
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

#include "base/strings.h"
#include "supervisor/cgroup/cgroupfs_util.h"
#include "supervisor/cgroup/drivers.h"

namespace cellhouse::cgroup::internal {

namespace {

// v1 reports "no limit" as the largest page-aligned counter (PAGE_COUNTER_MAX * PAGE_SIZE).
constexpr uint64_t kV1Unlimited = 1ULL << 62;

class V1Driver final : public Driver {
 public:
  V1Driver(const Fs& fs, const Processes& processes, DriverOptions options, V1Layout layout)
      : fs_(fs), processes_(processes), options_(std::move(options)), layout_(std::move(layout)) {
    for (const V1Hierarchy& h : layout_.hierarchies) {
      std::string base = JoinPath(JoinPath(h.mount, h.own), options_.subtree);
      bool seen = false;
      for (const Tree& t : trees_) {
        seen = seen || t.base == base;
      }
      if (!seen) {
        trees_.push_back(Tree{.own = JoinPath(h.mount, h.own),
                              .base = base,
                              .sessions = JoinPath(base, "sessions"),
                              .levels = {}});
      }
    }
  }

  Version version() const override { return Version::kV1; }

  std::string Describe() const override {
    std::string out = "cgroup v1 (";
    for (size_t i = 0; i < layout_.hierarchies.size(); ++i) {
      out += (i > 0 ? ", " : "") + layout_.hierarchies[i].controller;
    }
    out += "): " + layout_.why + "; sessions in ";
    for (size_t i = 0; i < trees_.size(); ++i) {
      out += (i > 0 ? ", '" : "'") + trees_[i].sessions + "/<id>'";
    }
    if (setup_done_ && !memsw_) {
      out += "; swap is not limited (no memory.memsw.limit_in_bytes: boot with swapaccount=1)";
    }
    if (Hierarchy("cpuacct") == nullptr) {
      out += "; no cpuacct hierarchy, so no CPU usage figures";
    }
    return out;
  }

  Result<SetupReport> Setup() override {
    // First this celld's claim on the subtree: without it, what another celld's sessions hold
    // would look like a crashed predecessor's leftovers.
    Status locked = TakeSubtreeLock();
    if (!locked) {
      return std::move(locked).error().Context("setting up cgroup v1");
    }
    Result<SetupReport> report = SetupSteps();
    if (!report) {
      Status undo = Unwind();
      static_cast<void>(undo);  // the setup error is the one worth reporting
      lock_.reset();
      return std::move(report).error().Context("setting up cgroup v1");
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
    if (!limits.device_memory.empty()) {
      return Error("creating the cgroup of session " + Quote(id) +
                   ": device memory limits need the cgroup v2 dmem controller");
    }
    std::vector<std::string> made;
    Result<SessionCgroup> session = CreateSteps(id, limits, &made);
    if (!session) {
      for (auto it = made.rbegin(); it != made.rend(); ++it) {
        Status removed = fs_.RemoveDir(*it);
        static_cast<void>(removed);  // empty and just made: the first error is what matters
      }
      return std::move(session).error().Context("creating the cgroup of session " + Quote(id));
    }
    return session;
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
      return std::move(st).error().Context("shutting down cgroup v1");
    }
    return Ok();
  }

  Result<std::optional<uint64_t>> OwnMemoryLimit() const override {
    const V1Hierarchy* memory = Hierarchy("memory");
    std::optional<uint64_t> lowest;
    if (memory == nullptr) {
      return lowest;
    }
    // v1 with use_hierarchy (always on since Linux 5.x) enforces every ancestor's limit too.
    std::string rel = memory->own;
    for (;;) {
      Result<uint64_t> v =
          ReadUint64(fs_, JoinPath(JoinPath(memory->mount, rel), "memory.limit_in_bytes"));
      if (v && *v < kV1Unlimited && (!lowest || *v < *lowest)) {
        lowest = *v;
      }
      if (rel.size() <= 1) {
        break;
      }
      size_t slash = rel.rfind('/');
      rel = slash == 0 ? "/" : rel.substr(0, slash);
    }
    return lowest;
  }

  Result<std::vector<DeviceMemoryRegion>> DeviceMemoryRegions() const override {
    return std::vector<DeviceMemoryRegion>();
  }

 private:
  struct Tree {
    std::string own;                  // <mount><own cgroup>
    std::string base;                 // own + subtree
    std::string sessions;             // base/sessions
    std::vector<std::string> levels;  // the subtree levels, outermost first
  };

  const V1Hierarchy* Hierarchy(std::string_view controller) const {
    for (const V1Hierarchy& h : layout_.hierarchies) {
      if (h.controller == controller) {
        return &h;
      }
    }
    return nullptr;
  }

  std::string SessionDir(std::string_view controller, std::string_view id) const {
    const V1Hierarchy* h = Hierarchy(controller);
    if (h == nullptr) {
      return "";
    }
    return JoinPath(JoinPath(JoinPath(JoinPath(h->mount, h->own), options_.subtree), "sessions"),
                    id);
  }

  // The subtree levels in every hierarchy (a predecessor's are this celld's now), then an
  // exclusive lock on the innermost level of the first (memory) hierarchy, held until Shutdown:
  // every celld locks the same one. Refused, with nothing touched, while another celld holds it.
  Status TakeSubtreeLock() {
    std::vector<std::string> made_here;
    auto undo = [&] {
      for (auto it = made_here.rbegin(); it != made_here.rend(); ++it) {
        static_cast<void>(fs_.RemoveDir(*it));  // empty and just made; the first error matters
      }
      for (Tree& t : trees_) t.levels.clear();
    };
    for (Tree& t : trees_) {
      std::string dir = t.own;
      if (options_.subtree.empty()) {
        continue;
      }
      for (std::string_view part : Split(options_.subtree, '/')) {
        dir = JoinPath(dir, part);
        Result<bool> made = EnsureDir(fs_, dir);
        if (!made) {
          undo();
          return std::move(made).error();
        }
        if (*made) made_here.push_back(dir);
        t.levels.push_back(dir);
      }
    }
    if (trees_.empty()) {
      return Ok();
    }
    Result<UniqueFd> lock = fs_.LockDirectory(trees_.front().base);
    if (!lock) {
      undo();
      return SubtreeHeldError(std::move(lock).error(), trees_.front().base);
    }
    lock_ = std::move(*lock);
    return Ok();
  }

  Result<SetupReport> SetupSteps() {
    SetupReport report;
    // 1. What a crashed predecessor left, in every hierarchy (the memory one first, so the
    //    killed processes have left every hierarchy when the others are removed).
    for (const Tree& t : trees_) {
      CH_ASSIGN_OR_RETURN(std::vector<std::string> dirs, ChildCgroups(fs_, t.sessions));
      CH_RETURN_IF_ERROR(KillAndRemoveTrees(fs_, processes_, dirs, options_.teardown));
      report.removed_leftovers.insert(report.removed_leftovers.end(), dirs.begin(), dirs.end());
    }
    // 2. sessions/ in each hierarchy (the subtree levels were made with the lock).
    for (Tree& t : trees_) {
      CH_ASSIGN_OR_RETURN(bool made_sessions, EnsureDir(fs_, t.sessions));
      static_cast<void>(made_sessions);  // removed by Unwind either way
    }
    const V1Hierarchy* memory = Hierarchy("memory");
    memsw_ = memory != nullptr && fs_.Exists(JoinPath(JoinPath(memory->mount, memory->own),
                                                      "memory.memsw.limit_in_bytes"));
    return report;
  }

  Status Unwind() {
    Status first;
    auto note = [&first](Status st) {
      if (!st && first) {
        first = std::move(st);
      }
    };
    for (Tree& t : trees_) {
      Result<std::vector<std::string>> dirs = ChildCgroups(fs_, t.sessions);
      note(dirs ? KillAndRemoveTrees(fs_, processes_, *dirs, options_.teardown)
                : Status(std::move(dirs).error()));
    }
    for (Tree& t : trees_) {
      note(RemoveDirPatiently(fs_, processes_, t.sessions, options_.teardown));
      note(RemoveSubtreeLevels(fs_, processes_, t.levels, options_.teardown));
      t.levels.clear();
    }
    return first;
  }

  Result<SessionCgroup> CreateSteps(std::string_view id, const Limits& limits,
                                    std::vector<std::string>* made) {
    SessionPaths paths{.memory = SessionDir("memory", id),
                       .pids = SessionDir("pids", id),
                       .cpu = SessionDir("cpu", id),
                       .cpuacct = SessionDir("cpuacct", id)};
    std::vector<std::string> dirs;
    for (const Tree& t : trees_) {
      dirs.push_back(JoinPath(t.sessions, id));
    }
    for (const std::string& dir : dirs) {
      CH_RETURN_IF_ERROR(fs_.MakeDir(dir));
      made->push_back(dir);
    }
    auto write = [this](const std::string& dir, const char* file, const std::string& value) {
      return fs_.WriteFile(JoinPath(dir, file), value);
    };
    if (limits.memory_max) {
      CH_RETURN_IF_ERROR(
          write(paths.memory, "memory.limit_in_bytes", std::to_string(*limits.memory_max)));
      // memsw is memory + swap and may not be below limit_in_bytes: set after it.
      if (memsw_) {
        CH_RETURN_IF_ERROR(write(paths.memory, "memory.memsw.limit_in_bytes",
                                 std::to_string(*limits.memory_max + limits.swap_max)));
      }
    }
    if (limits.memory_high) {
      CH_RETURN_IF_ERROR(
          write(paths.memory, "memory.soft_limit_in_bytes", std::to_string(*limits.memory_high)));
    }
    if (limits.pids_max) {
      CH_RETURN_IF_ERROR(write(paths.pids, "pids.max", std::to_string(*limits.pids_max)));
    }
    if (limits.cpu) {
      // Period first: the kernel checks the quota against the period it has.
      CH_RETURN_IF_ERROR(
          write(paths.cpu, "cpu.cfs_period_us", std::to_string(limits.cpu->period_us)));
      CH_RETURN_IF_ERROR(
          write(paths.cpu, "cpu.cfs_quota_us", std::to_string(limits.cpu->quota_us)));
    }
    if (limits.cpu_weight) {
      CH_RETURN_IF_ERROR(
          write(paths.cpu, "cpu.shares", std::to_string(CpuWeightToShares(*limits.cpu_weight))));
    }
    Placement placement{.kind = Placement::Kind::kWriteProcs};
    for (const std::string& dir : dirs) {
      CH_ASSIGN_OR_RETURN(UniqueFd fd, fs_.OpenForWriting(JoinPath(dir, "cgroup.procs")));
      placement.fds.push_back(std::move(fd));
    }
    return SessionCgroup(std::string(id), Version::kV1, std::move(paths), limits,
                         std::move(placement), &fs_, &processes_, options_.teardown);
  }

  const Fs& fs_;
  const Processes& processes_;
  DriverOptions options_;
  V1Layout layout_;
  std::vector<Tree> trees_;  // one per distinct hierarchy, in layout order (memory first)
  UniqueFd lock_;            // this celld's claim on trees_.front().base (Fs::LockDirectory)
  bool setup_done_ = false;
  bool memsw_ = false;
};

}  // namespace

std::unique_ptr<Driver> MakeV1Driver(const Fs& fs, const Processes& processes,
                                     const DriverOptions& options, V1Layout layout) {
  return std::make_unique<V1Driver>(fs, processes, options, std::move(layout));
}

}  // namespace cellhouse::cgroup::internal
