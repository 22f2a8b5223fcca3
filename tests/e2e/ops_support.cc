#include "tests/e2e/ops_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/strings.h"
#include "ipc/unix_socket.h"
#include "tests/support/test_env.h"

namespace cellhouse::testing {
namespace {

std::atomic<int> g_subtree_counter{0};

int RemainingMs(int64_t deadline_ns) {
  int64_t left = (deadline_ns - MonotonicNanos()) / kNanosPerMilli;
  return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace

bool NotifySocket::Message::Has(std::string_view line) const {
  for (std::string_view l : Split(text, '\n')) {
    if (l == line) return true;
  }
  return false;
}

std::optional<std::string> NotifySocket::Message::Get(std::string_view key) const {
  for (std::string_view l : Split(text, '\n')) {
    if (l.size() > key.size() && l.substr(0, key.size()) == key && l[key.size()] == '=') {
      return std::string(l.substr(key.size() + 1));
    }
  }
  return std::nullopt;
}

Result<NotifySocket> NotifySocket::Bind(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::FromErrno(errno, "socket(AF_UNIX, SOCK_DGRAM)");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return Error("notify socket path too long");
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::FromErrno(errno, "bind " + Quote(path));
  }
  // Every sender is root here; the notify socket is the daemon's to write to.
  ::chmod(path.c_str(), 0666);
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) {
    return Error::FromErrno(errno, "setsockopt(SO_PASSCRED)");
  }
  return NotifySocket(path, std::move(fd));
}

std::optional<NotifySocket::Message> NotifySocket::Receive(int timeout_ms) {
  pollfd p{fd_.get(), POLLIN, 0};
  int rc = ::poll(&p, 1, timeout_ms);
  if (rc <= 0) return std::nullopt;
  char buf[8192];
  iovec iov{buf, sizeof(buf)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0) return std::nullopt;
  Message m;
  m.text.assign(buf, static_cast<size_t>(n));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred cred{};
      std::memcpy(&cred, CMSG_DATA(c), sizeof(cred));
      m.sender = cred.pid;
    }
  }
  received_.push_back(m);
  return m;
}

std::optional<NotifySocket::Message> NotifySocket::WaitFor(std::string_view line, int timeout_ms) {
  int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * kNanosPerMilli;
  for (;;) {
    std::optional<Message> m = Receive(RemainingMs(deadline));
    if (!m) return std::nullopt;
    if (m->Has(line)) return m;
  }
}

void NotifySocket::Drain() {
  while (Receive(0)) {
  }
}

Result<Daemon> Daemon::Spawn(const DaemonOptions& options) {
  Daemon daemon;
  daemon.log_path_ = options.log_path;
  // O_TRUNC on an existing file keeps its inode: a test may have taken its st_dev:st_ino for
  // JOURNAL_STREAM before.
  UniqueFd log(::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log.valid()) return Error::FromErrno(errno, "open " + Quote(options.log_path));
  std::vector<std::string> env = options.env;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read-only use of the test's environment
  const char* path = std::getenv("PATH");
  env.push_back(std::string("PATH=") + (path != nullptr ? path : "/usr/bin:/bin"));
  std::vector<std::pair<int, int>> fds = {{1, log.get()}, {2, log.get()}};
  fds.insert(fds.end(), options.fds.begin(), options.fds.end());
  CH_ASSIGN_OR_RETURN(daemon.process_,
                      SpawnProgram({.argv = options.argv, .fds = fds, .env = env}));
  return daemon;
}

Daemon::~Daemon() {
  if (!running()) return;
  // Ended on its own (a test that stopped early on a failed assertion): reap it quietly.
  auto ended = process_.TryReap();
  if (ended && ended->has_value()) return;
  ADD_FAILURE() << "daemon still running at the end of the test; killing it. Log:\n" << Log();
  static_cast<void>(process_.Kill(SIGKILL));
  static_cast<void>(process_.Wait());
}

std::string Daemon::Log() const {
  auto text = ReadFileToString(log_path_, 64 << 20);
  return text ? *text : "(no log: " + text.error().message() + ")";
}

std::optional<ExitStatus> Daemon::WaitExit(int timeout_ms) {
  if (!running()) return std::nullopt;
  pollfd p{process_.pidfd(), POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return std::nullopt;
  auto st = process_.Wait();
  if (!st) return std::nullopt;
  return *st;
}

ExitStatus Daemon::Terminate(int timeout_ms) {
  if (!running()) return {};
  static_cast<void>(process_.Kill(SIGTERM));
  std::optional<ExitStatus> st = WaitExit(timeout_ms);
  if (st) return *st;
  ADD_FAILURE() << "no exit within " << timeout_ms << " ms of SIGTERM";
  static_cast<void>(process_.Kill(SIGKILL));
  auto killed = process_.Wait();
  return killed ? *killed : ExitStatus{};
}

std::vector<std::string> CelldArgs(const std::string& model, const std::string& policy_dir,
                                   const std::vector<std::string>& extra) {
  std::string subtree =
      "ops-" + std::to_string(::getpid()) + "-" + std::to_string(g_subtree_counter++);
  std::vector<std::string> argv = {
      BinPath("celld"),          "--model", model, "--cgroup-subtree", subtree,
      "--heartbeat-interval-ms", "200"};
  if (std::find(extra.begin(), extra.end(), "--log-level") == extra.end()) {
    argv.push_back("--log-level");
    argv.push_back("debug");
  }
  if (!policy_dir.empty()) {
    argv.push_back("--policy-dir");
    argv.push_back(policy_dir);
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::vector<std::string> SocketActivated(const std::vector<std::string>& activate_args,
                                         const std::vector<std::string>& daemon_argv) {
  std::vector<std::string> argv = {"/usr/bin/systemd-socket-activate"};
  argv.insert(argv.end(), activate_args.begin(), activate_args.end());
  argv.insert(argv.end(), daemon_argv.begin(), daemon_argv.end());
  return argv;
}

Result<uint16_t> FreeLoopbackPort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::FromErrno(errno, "socket(AF_INET)");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::FromErrno(errno, "bind 127.0.0.1:0");
  }
  socklen_t len = sizeof(addr);
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Error::FromErrno(errno, "getsockname");
  }
  return ntohs(addr.sin_port);
}

bool WaitUntilConnectable(const std::string& path, int timeout_ms) {
  int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * kNanosPerMilli;
  while (MonotonicNanos() < deadline) {
    if (ipc::ConnectUnix(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

Result<HttpResponse> HttpGet(const UniqueFd& connection, const std::string& target) {
  std::string request = "GET " + target + " HTTP/1.0\r\nHost: localhost\r\n\r\n";
  CH_RETURN_IF_ERROR(WriteFull(connection.get(), request, "metrics server"));
  std::string raw;
  int64_t deadline = MonotonicNanos() + int64_t{kLongWaitMs} * kNanosPerMilli;
  for (;;) {
    pollfd p{connection.get(), POLLIN, 0};
    if (::poll(&p, 1, RemainingMs(deadline)) <= 0) return Error("no complete HTTP response");
    char buf[16384];
    ssize_t n = ::read(connection.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "read HTTP response");
    }
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  size_t line_end = raw.find("\r\n");
  size_t head_end = raw.find("\r\n\r\n");
  if (line_end == std::string::npos || head_end == std::string::npos) {
    return Error("malformed HTTP response: " + Quote(raw.substr(0, 200)));
  }
  HttpResponse response;
  response.status_line = raw.substr(0, line_end);
  response.headers = raw.substr(line_end + 2, head_end - line_end - 2);
  response.body = raw.substr(head_end + 4);
  return response;
}

Result<UniqueFd> ConnectTcp(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Error::FromErrno(errno, "socket(AF_INET)");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::FromErrno(errno, "connect 127.0.0.1:" + std::to_string(port));
  }
  return fd;
}

Result<HttpResponse> HttpGetTcp(uint16_t port, const std::string& target) {
  CH_ASSIGN_OR_RETURN(UniqueFd fd, ConnectTcp(port));
  return HttpGet(fd, target);
}

Result<HttpResponse> HttpGetUnix(const std::string& path, const std::string& target) {
  CH_ASSIGN_OR_RETURN(UniqueFd fd, ipc::ConnectUnix(path));
  return HttpGet(fd, target);
}

std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm) {
  std::vector<pid_t> found;
  auto entries = ListDirectory("/proc");
  if (!entries) return found;
  for (const std::string& e : *entries) {
    auto pid = ParseInt64(e, "pid");
    if (!pid) continue;
    auto stat = ReadFileToString("/proc/" + e + "/stat", 4096);
    if (!stat) continue;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
    size_t open = stat->find('(');
    size_t close = stat->rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    std::string name = stat->substr(open + 1, close - open - 1);
    auto fields = Split(std::string_view(*stat).substr(close + 2), ' ');
    if (fields.size() < 2) continue;
    auto ppid = ParseInt64(fields[1], "ppid");
    if (ppid && *ppid == parent && name == comm) found.push_back(static_cast<pid_t>(*pid));
  }
  return found;
}

std::vector<pid_t> ZygotesOf(pid_t celld) {
  auto ns = [](pid_t pid) {
    char buf[64] = {};
    std::string path = "/proc/" + std::to_string(pid) + "/ns/user";
    ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
  };
  std::vector<pid_t> zygotes;
  for (pid_t child : ChildrenNamed(celld, "cell-zygote")) {
    if (ns(child) == ns(celld)) zygotes.push_back(child);
  }
  return zygotes;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

}  // namespace cellhouse::testing
