#include "worker/sandbox/spawn.h"

#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/clock.h"
#include "base/io.h"
#include "worker/sandbox/user_ns.h"

namespace cellhouse::sandbox {
namespace {

constexpr uint64_t kNamespaceMask = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                                    CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWCGROUP;
// How long the child may take to contain itself before the zygote gives up on it.
constexpr int kChildSetupTimeoutMs = 10'000;

std::string StepError(Step step, int err) {
  return Error::FromErrno(err, std::string("sandbox step '") + StepName(step) + "' failed")
      .message();
}

}  // namespace

Result<SandboxPlan> SandboxPlan::Build(const zygote::SandboxSpec& spec, int control_fd,
                                       std::span<const UniqueFd> cgroup_fds,
                                       std::span<const int> extra_fds) {
  for (int fd : extra_fds) {
    if (fd < 0 || fd == control_fd) return Error("sandbox plan: bad descriptor to keep");
  }
  CH_ASSIGN_OR_RETURN(CapabilityPlan caps, CapabilityPlan::Create());
  SandboxPlan plan(spec, control_fd, cgroup_fds, extra_fds, std::move(caps));
  CH_RETURN_IF_ERROR(plan.Prepare());
  return plan;
}

Status SandboxPlan::Prepare() {
  if ((spec_.namespace_flags() & ~kNamespaceMask) != 0) {
    return Error("sandbox spec: namespace flags contain non-namespace bits");
  }
  if (!spec_.disabled() && ((spec_.namespace_flags() & CLONE_NEWUSER) == 0 ||
                            (spec_.namespace_flags() & CLONE_NEWNS) == 0)) {
    return Error("sandbox spec: the user and mount namespaces are required");
  }
  const std::string& bpf = spec_.seccomp_bpf();
  if (!spec_.disabled()) {
    if (bpf.empty() || bpf.size() % sizeof(sock_filter) != 0 ||
        bpf.size() / sizeof(sock_filter) > BPF_MAXINSNS) {
      return Error("sandbox spec: the seccomp program must be 1 to " +
                   std::to_string(BPF_MAXINSNS) + " instructions, got " +
                   std::to_string(bpf.size()) + " bytes");
    }
    filter_.resize(bpf.size() / sizeof(sock_filter));
    std::memcpy(filter_.data(), bpf.data(), bpf.size());
  }
  switch (spec_.cgroup()) {
    case zygote::SandboxSpec::CGROUP_NONE:
      if (!cgroup_fds_.empty()) return Error("sandbox spec: cgroup descriptors without placement");
      break;
    case zygote::SandboxSpec::CGROUP_V2:
      if (cgroup_fds_.size() != 1) return Error("sandbox spec: v2 placement needs one directory");
      break;
    case zygote::SandboxSpec::CGROUP_V1:
      if (cgroup_fds_.empty()) return Error("sandbox spec: v1 placement needs cgroup.procs fds");
      break;
    default:
      return Error("sandbox spec: unknown cgroup placement");
  }
  for (const zygote::Rlimit& r : spec_.rlimits()) {
    if (r.resource() < 0 || r.resource() >= RLIM_NLIMITS || r.soft() > r.hard()) {
      return Error("sandbox spec: invalid rlimit " + std::to_string(r.resource()));
    }
    rlimits_.push_back({r.resource(), r.soft(), r.hard()});
  }
  hostname_ = spec_.hostname().empty() ? "cell" : spec_.hostname();
  if (hostname_.size() > 64) return Error("sandbox spec: hostname longer than 64 bytes");
  // Binds: "/dev/nvidia0" is bound at "<mount_point>/dev/nvidia0"; the target's parent
  // directories are created first.
  const std::string mount_point = "/tmp";
  std::vector<std::pair<std::string, bool>> binds;
  for (const std::string& node : spec_.device_nodes()) binds.emplace_back(node, false);
  for (const std::string& dir : spec_.bind_directories()) binds.emplace_back(dir, true);
  for (const auto& [path, is_dir] : binds) {
    if (path.size() < 2 || path[0] != '/' || path.find("..") != std::string::npos) {
      return Error("sandbox spec: bind path '" + path + "' must be absolute, without '..'");
    }
  }
  std::vector<std::pair<size_t, size_t>> parents;  // per bind: [first, end) in strings_
  for (const auto& [path, is_dir] : binds) {
    size_t first = strings_.size();
    for (size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
      strings_.push_back(mount_point + path.substr(0, slash));
    }
    parents.emplace_back(first, strings_.size());
    strings_.push_back(path);
    strings_.push_back(mount_point + path);
  }
  // Pointers are taken only after strings_ stops growing.
  bind_is_directory_ = std::make_unique<bool[]>(binds.size() + 1);
  for (size_t b = 0; b < binds.size(); ++b) {
    auto [first, end] = parents[b];
    for (size_t p = first; p < end; ++p) directories_.push_back(strings_[p].c_str());
    bind_sources_.push_back(strings_[end].c_str());
    bind_targets_.push_back(strings_[end + 1].c_str());
    bind_is_directory_[b] = binds[b].second;
  }
  return Ok();
}

ChildPlan SandboxPlan::MakeChildPlan(int release_fd, int status_fd) {
  keep_fds_ = extra_fds_;
  keep_fds_.push_back(control_fd_);
  keep_fds_.push_back(status_fd);
  std::sort(keep_fds_.begin(), keep_fds_.end());
  ChildPlan child;
  child.release_fd = release_fd;
  child.status_fd = status_fd;
  child.root.mount_point = "/tmp";
  child.root.directories = directories_.data();
  child.root.directory_count = directories_.size();
  child.root.bind_sources = bind_sources_.data();
  child.root.bind_targets = bind_targets_.data();
  child.root.bind_is_directory = bind_is_directory_.get();
  child.root.bind_count = bind_sources_.size();
  child.hostname = hostname_.c_str();
  child.hostname_length = hostname_.size();
  child.rlimits = rlimits_.data();
  child.rlimit_count = rlimits_.size();
  child.keep_fds = keep_fds_.data();
  child.keep_fd_count = keep_fds_.size();
  child.capabilities = &caps_;
  child.inside_uid = spec_.inside_uid() != 0 ? spec_.inside_uid() : kWorkerInsideUid;
  child.inside_gid = spec_.inside_gid() != 0 ? spec_.inside_gid() : kWorkerInsideGid;
  child.filter.len = static_cast<unsigned short>(filter_.size());
  child.filter.filter = filter_.data();
  return child;
}

namespace {

// Places the child and lets it go. Returns the failing step and errno, or {kCount, 0}.
std::pair<Step, Error> ParentStepsFromParent(SandboxPlan& plan, pid_t pid, int release_fd,
                                             std::vector<std::pair<std::string, uint64_t>>* t) {
  auto timed = [&](Step step, auto&& fn) -> Status {
    int64_t start = MonotonicNanos();
    Status st = fn();
    t->emplace_back(StepName(step), static_cast<uint64_t>((MonotonicNanos() - start) / 1000));
    return st;
  };
  const zygote::SandboxSpec& spec = plan.spec();
  if ((spec.namespace_flags() & CLONE_NEWUSER) != 0) {
    Status st = timed(Step::kUidMap, [&] { return WriteUidMapFromParent(pid, spec.host_uid()); });
    if (!st) return {Step::kUidMap, std::move(st).error()};
    st = timed(Step::kGidMap, [&] { return WriteGidMapFromParent(pid, spec.host_gid()); });
    if (!st) return {Step::kGidMap, std::move(st).error()};
  }
  if (spec.cgroup() == zygote::SandboxSpec::CGROUP_V1) {
    Status st = timed(Step::kCgroup, [&]() -> Status {
      std::string text = std::to_string(pid);
      for (const UniqueFd& procs : plan.cgroup_fds()) {
        if (::write(procs.get(), text.data(), text.size()) < 0) {
          return Error::FromErrno(errno, "write pid to cgroup.procs");
        }
      }
      return Ok();
    });
    if (!st) return {Step::kCgroup, std::move(st).error()};
  }
  char go = 1;
  if (::write(release_fd, &go, 1) != 1) {
    return {Step::kRelease, Error::FromErrno(errno, "release the child")};
  }
  return {Step::kCount, Error("")};
}

// Reads the child's report; a child that dies or hangs during setup is a failure of the step
// after the last one it could have finished.
Result<ChildReport> ReadChildReport(int status_fd, const ChildProcess& child) {
  pollfd p{status_fd, POLLIN, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, kChildSetupTimeoutMs);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    static_cast<void>(child.Kill(SIGKILL));
    return Error("the child did not finish its setup within " +
                 std::to_string(kChildSetupTimeoutMs) + " ms");
  }
  ChildReport report{};
  ssize_t n;
  do {
    n = ::read(status_fd, &report, sizeof(report));
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof(report))) {
    return Error("the child ended during its setup without reporting a step");
  }
  return report;
}

}  // namespace

SpawnOutcome SpawnSandboxed(SandboxPlan& plan, const std::function<int()>& serve) {
  SpawnOutcome out;
  auto release = MakePipe();
  auto status = MakePipe();
  if (!release || !status) {
    // Before clone3: no child to reap. The real errno (EMFILE, ENFILE, ...), not a guess.
    const Error& failed = !release ? release.error() : status.error();
    out.failed_step = Step::kHandshake;
    out.error = failed.sys_errno();
    out.message = "sandbox step '" + std::string(StepName(Step::kHandshake)) +
                  "' failed: " + failed.message();
    return out;
  }
  ChildPlan child_plan = plan.MakeChildPlan(release->first.get(), status->second.get());
  const zygote::SandboxSpec& spec = plan.spec();

  clone_args args{};
  int pidfd = -1;
  // CLONE_PARENT: celld, not the zygote, is the parent; clone3 then requires exit_signal 0, and
  // the child's end still reaches celld as SIGCHLD with the real status (design brief).
  args.flags = CLONE_PIDFD | CLONE_PARENT | (spec.disabled() ? 0 : spec.namespace_flags());
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = 0;
  if (spec.cgroup() == zygote::SandboxSpec::CGROUP_V2) {
    args.flags |= CLONE_INTO_CGROUP;
    args.cgroup = static_cast<uint64_t>(plan.cgroup_fds()[0].get());
  }
  int64_t clone_start = MonotonicNanos();
  long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) {
    out.failed_step = Step::kClone;
    out.error = errno;
    out.message = StepError(Step::kClone, out.error);
    return out;
  }
  if (pid == 0) {
    // The child. Drop the parent's ends first, so a dead parent reads as EOF, not a hang.
    ::close(release->second.get());
    ::close(status->first.get());
    if (!spec.disabled()) {
      if (!ContainInChild(child_plan)) ::_exit(kSetupFailedExitCode);
    } else {
      char go = 0;
      if (::read(child_plan.release_fd, &go, 1) != 1) ::_exit(kSetupFailedExitCode);
      ChildReport ok{};
      ok.ok = 1;
      if (::write(child_plan.status_fd, &ok, sizeof(ok)) < 0) ::_exit(kSetupFailedExitCode);
      ::close(child_plan.status_fd);
    }
    ::_exit(serve());
  }
  out.step_micros.emplace_back(StepName(Step::kClone),
                               static_cast<uint64_t>((MonotonicNanos() - clone_start) / 1000));
  out.process = ChildProcess(static_cast<pid_t>(pid), UniqueFd(pidfd));
  release->first.reset();
  status->second.reset();

  auto [failed, error] =
      ParentStepsFromParent(plan, static_cast<pid_t>(pid), release->second.get(), &out.step_micros);
  if (failed != Step::kCount) {
    static_cast<void>(out.process.Kill(SIGKILL));
    out.failed_step = failed;
    out.error = error.sys_errno();
    out.message = "sandbox step '" + std::string(StepName(failed)) + "' failed: " + error.message();
    return out;
  }
  release->second.reset();
  Result<ChildReport> report = ReadChildReport(status->first.get(), out.process);
  if (!report) {
    static_cast<void>(out.process.Kill(SIGKILL));
    out.failed_step = Step::kWaitForParent;
    out.message = report.error().message();
    return out;
  }
  if (report->ok != 1) {
    out.failed_step = static_cast<Step>(std::clamp(report->step, 0, kStepCount - 1));
    out.error = report->error;
    out.message = StepError(out.failed_step, out.error);
    return out;
  }
  if (!spec.disabled()) {  // with the sandbox off, the child ran no steps to time
    for (int s = static_cast<int>(Step::kWaitForParent); s < kStepCount; ++s) {
      out.step_micros.emplace_back(StepName(static_cast<Step>(s)), report->micros[s]);
    }
  }
  out.ok = true;
  return out;
}

}  // namespace cellhouse::sandbox
