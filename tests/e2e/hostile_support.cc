#include "tests/e2e/hostile_support.h"

#include <grp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/clock.h"
#include "base/io.h"
#include "base/strings.h"
#include "ipc/api.pb.h"
#include "ipc/frame.h"

namespace cellhouse::testing {

Result<ChildProcess> RunAs(uid_t uid, const std::function<int()>& body) {
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return Error::FromErrno(errno, "fork");
  if (pid == 0) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) ::_exit(120);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      ::_exit(121);
    }
    ::_exit(body());
  }
  return ChildProcess::FromPid(pid);
}

ProcessUsage UsageOf(pid_t pid) {
  ProcessUsage usage;
  auto status = ReadFileToString("/proc/" + std::to_string(pid) + "/status", 1 << 16);
  if (status) {
    for (std::string_view line : Split(*status, '\n')) {
      if (!StartsWith(line, "VmRSS:")) continue;
      auto fields = Split(Trim(line.substr(6)), ' ');
      if (!fields.empty()) {
        auto kib = ParseUint64(fields[0], "VmRSS");
        if (kib) usage.rss_bytes = *kib * 1024;
      }
    }
  }
  auto stat = ReadFileToString("/proc/" + std::to_string(pid) + "/stat", 4096);
  if (stat) {
    size_t close = stat->rfind(')');
    if (close != std::string::npos) {
      // After "pid (comm) ": state is field 3; utime and stime are fields 14 and 15.
      auto fields = Split(std::string_view(*stat).substr(close + 2), ' ');
      if (fields.size() > 12) {
        auto utime = ParseUint64(fields[11], "utime");
        auto stime = ParseUint64(fields[12], "stime");
        double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
        if (utime && stime) usage.cpu_seconds = static_cast<double>(*utime + *stime) / hz;
      }
    }
  }
  return usage;
}

std::string PipelinedStatusRequests(size_t count) {
  api::Request status;
  status.mutable_status();
  std::string one = ipc::EncodeFrame(status);
  std::string out;
  out.reserve(one.size() * count);
  for (size_t i = 0; i < count; ++i) out += one;
  return out;
}

namespace {

struct Slot {
  int fd = -1;
  HostileRole role = HostileRole::kPipeliner;
  int64_t next_byte_ns = 0;
};

int Connect(const sockaddr_un& addr) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);  // backlog full (EAGAIN): tried again on the next round
    return -1;
  }
  return fd;
}

}  // namespace

int RunHostileClients(const HostileOptions& options) {
  rlimit nofile{};
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options.socket.size() >= sizeof(addr.sun_path)) return 1;
  std::memcpy(addr.sun_path, options.socket.data(), options.socket.size());
  int epoll = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) return 1;

  const std::string pipelined = PipelinedStatusRequests(8192);
  const std::string announce("\x80\x80\x40", 3);  // 1 MiB
  std::vector<Slot> slots(static_cast<size_t>(options.connections));
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i].role = options.role != HostileRole::kMixed ? options.role
                    : i % 3 == 0                        ? HostileRole::kPipeliner
                    : i % 3 == 1                        ? HostileRole::kTrickler
                                                        : HostileRole::kReconnector;
  }
  uint64_t connected = 0;
  auto open = [&](size_t i) {
    Slot& s = slots[i];
    s.fd = Connect(addr);
    if (s.fd < 0) return;
    ++connected;
    switch (s.role) {
      case HostileRole::kPipeliner:
        static_cast<void>(::send(s.fd, pipelined.data(), pipelined.size(), MSG_NOSIGNAL));
        break;
      case HostileRole::kTrickler:
        static_cast<void>(::send(s.fd, announce.data(), announce.size(), MSG_NOSIGNAL));
        s.next_byte_ns = MonotonicNanos() + 100 * kNanosPerMilli;
        break;
      case HostileRole::kReconnector:
      case HostileRole::kMixed:
        ::close(s.fd);
        s.fd = -1;
        return;
    }
    // Hang-ups only: replies are never read, so readability is not watched.
    epoll_event ev{};
    ev.events = EPOLLRDHUP;
    ev.data.u64 = i;
    static_cast<void>(::epoll_ctl(epoll, EPOLL_CTL_ADD, s.fd, &ev));
  };
  for (size_t i = 0; i < slots.size(); ++i) open(i);
  if (options.ready_fd >= 0) {
    char one = 1;
    static_cast<void>(::write(options.ready_fd, &one, 1));
  }

  // The stop descriptor's events carry an index no slot has.
  const uint64_t stop_index = slots.size();
  if (options.stop_fd >= 0) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = stop_index;
    if (::epoll_ctl(epoll, EPOLL_CTL_ADD, options.stop_fd, &ev) != 0) return 1;
  }
  bool stopped = false;
  int64_t end = MonotonicNanos() + options.duration_ms * kNanosPerMilli;
  std::vector<epoll_event> events(256);
  while (!stopped && MonotonicNanos() < end) {
    int n = ::epoll_wait(epoll, events.data(), static_cast<int>(events.size()), 10);
    for (int e = 0; e < n; ++e) {
      if (events[e].data.u64 == stop_index) {
        stopped = true;
        continue;
      }
      Slot& s = slots[events[e].data.u64];
      if (s.fd >= 0) {
        static_cast<void>(::epoll_ctl(epoll, EPOLL_CTL_DEL, s.fd, nullptr));
        ::close(s.fd);
        s.fd = -1;
      }
    }
    int64_t now = MonotonicNanos();
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots[i];
      if (s.fd < 0) {
        open(i);  // closed by celld, refused, or a reconnector: again
      } else if (s.role == HostileRole::kTrickler && now >= s.next_byte_ns) {
        static_cast<void>(::send(s.fd, "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT));
        s.next_byte_ns = now + 100 * kNanosPerMilli;
      }
    }
  }
  for (Slot& s : slots) {
    if (s.fd >= 0) ::close(s.fd);
  }
  ::close(epoll);
  if (options.stats_fd >= 0) {
    static_cast<void>(WriteFull(options.stats_fd, std::to_string(connected) + "\n", "stats"));
  }
  return options.stop_fd >= 0 && !stopped ? 3 : 0;
}

}  // namespace cellhouse::testing
