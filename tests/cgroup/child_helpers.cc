#include "tests/cgroup/child_helpers.h"

#include <fcntl.h>
#include <linux/sched.h>  // struct clone_args, CLONE_INTO_CGROUP (clone(2))
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "base/io.h"

namespace cellhouse::cgroup::testing {

namespace {

pid_t CloneIntoCgroup(int cgroup_dir_fd) {
  clone_args args{};
  args.flags = CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(cgroup_dir_fd);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof(args)));
}

double Now() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

}  // namespace

Status WaitingChild::Release() {
  char go = 1;
  CH_RETURN_IF_ERROR(WriteFull(release.get(), std::string_view(&go, 1), "release pipe"));
  release.reset();
  return Ok();
}

Result<WaitingChild> StartWaiting(ChildBody body, const void* arg, int cgroup_dir_fd) {
  CH_ASSIGN_OR_RETURN(FdPair pipe, MakePipe());
  pid_t pid = cgroup_dir_fd >= 0 ? CloneIntoCgroup(cgroup_dir_fd) : ::fork();
  if (pid < 0) {
    return Error::FromErrno(errno, cgroup_dir_fd >= 0 ? "clone3(CLONE_INTO_CGROUP)" : "fork");
  }
  if (pid == 0) {
    pipe.second.reset();
    char go = 0;
    ssize_t n;
    do {
      n = ::read(pipe.first.get(), &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
      ::_exit(120);  // the parent gave up on us
    }
    pipe.first.reset();
    ::_exit(body(arg));
  }
  pipe.first.reset();
  CH_ASSIGN_OR_RETURN(ChildProcess child, ChildProcess::FromPid(pid));
  return WaitingChild{.process = std::move(child), .release = std::move(pipe.second)};
}

void KillAndReap(ChildProcess& child) {
  if (!child.valid() || child.reaped()) {
    return;
  }
  Status killed = child.Kill(SIGKILL);
  static_cast<void>(killed);
  Result<ExitStatus> st = child.Wait();
  static_cast<void>(st);
}

int AllocateBody(const void* arg) {
  const auto* spec = static_cast<const AllocateSpec*>(arg);
  void* p =
      ::mmap(nullptr, spec->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return 2;
  }
  auto* bytes = static_cast<volatile char*>(p);
  long page = ::sysconf(_SC_PAGESIZE);
  for (uint64_t off = 0; off < spec->bytes; off += static_cast<uint64_t>(page)) {
    bytes[off] = 1;
  }
  return 0;
}

int ForkUntilRefusedBody(const void* arg) {
  const auto* spec = static_cast<const ForkSpec*>(arg);
  std::vector<pid_t> kids;
  int result = 200;
  for (int i = 0; i < spec->max_forks; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      ::pause();
      ::_exit(0);
    }
    if (pid < 0) {
      result = errno == EAGAIN ? static_cast<int>(kids.size()) : 201;
      break;
    }
    kids.push_back(pid);
  }
  for (pid_t kid : kids) {
    ::kill(kid, SIGKILL);
    ::waitpid(kid, nullptr, 0);
  }
  return result;
}

int BusyLoopBody(const void* arg) {
  const auto* spec = static_cast<const BusySpec*>(arg);
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(spec->cpu, &set);
  if (::sched_setaffinity(0, sizeof(set), &set) != 0) {
    return 3;
  }
  double end = Now() + spec->seconds;
  volatile uint64_t spin = 0;
  while (Now() < end) {
    for (int i = 0; i < 10000; ++i) {
      spin = spin + 1;
    }
  }
  return 0;
}

int PauseBody(const void* /*arg*/) {
  for (;;) {
    ::pause();
  }
}

int ReportCgroupBody(const void* arg) {
  const auto* spec = static_cast<const ReportSpec*>(arg);
  int fd = ::open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return 4;
  }
  char buf[4096];
  ssize_t n = ::read(fd, buf, sizeof(buf));
  ::close(fd);
  if (n <= 0) {
    return 5;
  }
  return ::write(spec->fd, buf, static_cast<size_t>(n)) == n ? 0 : 6;
}

Result<int> FirstAllowedCpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) {
    return Error::FromErrno(errno, "sched_getaffinity");
  }
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) {
      return cpu;
    }
  }
  return Error("sched_getaffinity: no CPU allowed");
}

Result<std::string> CgroupFileOf(pid_t pid) {
  return ReadFileToString("/proc/" + std::to_string(pid) + "/cgroup", 1 << 16);
}

}  // namespace cellhouse::cgroup::testing
