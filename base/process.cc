#include "base/process.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>

#include "base/io.h"
#include "base/strings.h"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX name

namespace cellhouse {

std::string ExitStatus::ToString() const {
  if (kind == Kind::kExited) return "exited with status " + std::to_string(code);
  const char* name = sigabbrev_np(signal);
  const char* desc = sigdescr_np(signal);
  std::string out = "killed by signal ";
  out += name != nullptr ? std::string("SIG") + name : std::to_string(signal);
  if (desc != nullptr) out += std::string(" (") + desc + ")";
  if (core_dumped) out += ", core dumped";
  return out;
}

Result<ChildProcess> ChildProcess::FromPid(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return Error::FromErrno(errno, "pidfd_open(" + std::to_string(pid) + ")");
  // pidfd_open sets O_CLOEXEC on the new descriptor (pidfd_open(2)).
  return ChildProcess(pid, UniqueFd(fd));
}

Status ChildProcess::Kill(int signal) const {
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal, nullptr, 0) != 0) {
    if (errno == ESRCH) return Ok();
    return Error::FromErrno(errno, "pidfd_send_signal to pid " + std::to_string(pid_));
  }
  return Ok();
}

Result<std::optional<ExitStatus>> ChildProcess::WaitImpl(int options) {
  if (reaped_) return Error("pid " + std::to_string(pid_) + " was already reaped");
  siginfo_t info{};
  for (;;) {
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &info,
                 WEXITED | options) == 0) {
      break;
    }
    if (errno == EINTR) continue;
    return Error::FromErrno(errno, "waitid on pid " + std::to_string(pid_));
  }
  if (info.si_pid == 0) return std::optional<ExitStatus>();  // WNOHANG, still running
  reaped_ = true;
  ExitStatus st;
  if (info.si_code == CLD_EXITED) {
    st.kind = ExitStatus::Kind::kExited;
    st.code = info.si_status;
  } else {
    st.kind = ExitStatus::Kind::kSignaled;
    st.signal = info.si_status;
    st.core_dumped = info.si_code == CLD_DUMPED;
  }
  return std::optional<ExitStatus>(st);
}

Result<std::optional<ExitStatus>> ChildProcess::TryReap() { return WaitImpl(WNOHANG); }

Result<ExitStatus> ChildProcess::Wait() {
  CH_ASSIGN_OR_RETURN(std::optional<ExitStatus> st, WaitImpl(0));
  return *st;
}

namespace {

// Runs in the child between fork and exec: async-signal-safe calls only, no allocation.
[[noreturn]] void ExecInChild(const SpawnOptions& options, char* const* argv, char* const* envp,
                              int report_fd, pid_t parent) {
  auto fail = [report_fd](int err) {
    ssize_t ignored = ::write(report_fd, &err, sizeof(err));
    static_cast<void>(ignored);
    ::_exit(127);
  };
  if (options.die_with_parent) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
    if (::getppid() != parent) fail(ESRCH);
  }
  // Move every source fd above the highest target first, so dup2 cannot clobber a source.
  int highest = report_fd;
  for (const auto& [child_fd, parent_fd] : options.fds) {
    highest = std::max({highest, child_fd, parent_fd});
  }
  std::array<int, 64> staged{};
  if (options.fds.size() > staged.size()) fail(E2BIG);
  for (size_t i = 0; i < options.fds.size(); ++i) {
    staged[i] = ::fcntl(options.fds[i].second, F_DUPFD_CLOEXEC, highest + 1);
    if (staged[i] < 0) fail(errno);
  }
  for (size_t i = 0; i < options.fds.size(); ++i) {
    // dup2 clears FD_CLOEXEC on the new descriptor: it survives the exec.
    if (::dup2(staged[i], options.fds[i].first) < 0) fail(errno);
  }
  // Only the plan survives: close everything else above stderr (an fd a library opened without
  // O_CLOEXEC, or one inherited from our own parent), except the exec-status pipe, which closes
  // on exec. The kept fds, sorted in place (no allocation here).
  std::array<int, 66> keep{};
  size_t kept = 0;
  keep[kept++] = report_fd;
  for (const auto& [child_fd, parent_fd] : options.fds) keep[kept++] = child_fd;
  for (size_t i = 1; i < kept; ++i) {
    for (size_t j = i; j > 0 && keep[j - 1] > keep[j]; --j) std::swap(keep[j - 1], keep[j]);
  }
  unsigned next = 3;
  for (size_t i = 0; i < kept; ++i) {
    if (keep[i] < 3) continue;
    auto fd = static_cast<unsigned>(keep[i]);
    if (fd > next && ::close_range(next, fd - 1, 0) != 0) fail(errno);
    next = std::max(next, fd + 1);
  }
  if (::close_range(next, ~0U, 0) != 0) fail(errno);
  sigset_t all;
  sigemptyset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, nullptr);
  ::execve(argv[0], argv, envp);
  fail(errno);
  __builtin_unreachable();
}

}  // namespace

Result<ChildProcess> SpawnProgram(const SpawnOptions& options) {
  if (options.argv.empty()) return Error("spawn: empty argv");
  // Everything the child needs is built before fork: it may not allocate afterwards.
  std::vector<char*> argv;
  for (const std::string& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (options.env) {
    for (const std::string& e : *options.env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  char* const* env = options.env ? envp.data() : environ;
  CH_ASSIGN_OR_RETURN(FdPair report, MakePipe());
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Error::FromErrno(errno, "fork for " + Quote(options.argv[0]));
  if (pid == 0) ExecInChild(options, argv.data(), env, report.second.get(), parent);
  report.second.reset();
  CH_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::FromPid(pid));
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(report.first.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    auto reaped = child.Wait();
    static_cast<void>(reaped);
    return Error::FromErrno(child_errno, "exec " + Quote(options.argv[0]));
  }
  return child;
}

Result<std::string> SelfExeDir() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n < 0) return Error::FromErrno(errno, "readlink /proc/self/exe");
  std::string path(buf, static_cast<size_t>(n));
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return Error("readlink /proc/self/exe: not an absolute path");
  return path.substr(0, slash);
}

int CpusAllowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  const int n = CPU_COUNT(&set);
  return n > 0 ? n : 1;
}

}  // namespace cellhouse
