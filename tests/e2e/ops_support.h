// What the operations tests (systemd, metrics, logs, install) share: a stand-in for systemd's
// notification socket, celld started the ways a service manager starts it (under
// systemd-socket-activate(1), with an environment and descriptors of the test's choosing), and a
// plain HTTP GET for scraping metrics.
//
//   TempDir dir;
//   auto notify = NotifySocket::Bind(dir.File("notify"));
//   auto celld = Daemon::Spawn({.argv = SocketActivated({"-l", dir.File("api")}, CelldArgs(...)),
//                               .env = {"NOTIFY_SOCKET=" + notify->path()},
//                               .log_path = dir.File("celld.log")});
//   auto ready = notify->WaitFor("READY=1", kLongWaitMs);
//   EXPECT_TRUE(celld->Terminate().Success());
#ifndef CELLHOUSE_TESTS_E2E_OPS_SUPPORT_H_
#define CELLHOUSE_TESTS_E2E_OPS_SUPPORT_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/process.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::testing {

// How long a test waits for something that normally takes milliseconds: a bound on a hang, not
// a claim about speed.
inline constexpr int kLongWaitMs = 60'000;

// A SOCK_DGRAM Unix socket bound where NOTIFY_SOCKET points, as systemd's own is (sd_notify(3)):
// it receives the daemon's state changes with the sender's pid (SO_PASSCRED).
class NotifySocket {
 public:
  struct Message {
    std::string text;  // "READY=1\nSTATUS=..." as sent
    pid_t sender = 0;  // from SCM_CREDENTIALS
    // True when one line of the message is exactly `line` ("READY=1").
    bool Has(std::string_view line) const;
    // The value of "KEY=value" for `key`, or nullopt.
    std::optional<std::string> Get(std::string_view key) const;
  };

  static Result<NotifySocket> Bind(const std::string& path);
  const std::string& path() const { return path_; }

  // The next message within timeout_ms (it is also appended to received()), or nullopt.
  std::optional<Message> Receive(int timeout_ms);
  // Receives until a message holds `line`; returns it, or nullopt after timeout_ms.
  std::optional<Message> WaitFor(std::string_view line, int timeout_ms);
  // Receives whatever is queued, without waiting.
  void Drain();
  const std::vector<Message>& received() const { return received_; }

 private:
  NotifySocket(std::string path, UniqueFd fd) : path_(std::move(path)), fd_(std::move(fd)) {}
  std::string path_;
  UniqueFd fd_;
  std::vector<Message> received_;
};

struct DaemonOptions {
  std::vector<std::string> argv;
  // The whole environment (nothing is inherited), besides PATH, which is always passed on.
  std::vector<std::string> env;
  // stdout and stderr go to this file (created, or truncated in place).
  std::string log_path;
  // Further descriptors the process gets: {child_fd, parent_fd}.
  std::vector<std::pair<int, int>> fds;
};

// A long-running process whose output goes to a log file. Teardown is explicit: the destructor
// of a process still running fails the test and kills it (one that ended is only reaped).
class Daemon {
 public:
  static Result<Daemon> Spawn(const DaemonOptions& options);
  Daemon(Daemon&&) noexcept = default;
  Daemon& operator=(Daemon&&) noexcept = default;
  ~Daemon();

  pid_t pid() const { return process_.pid(); }
  std::string Log() const;
  // The exit status once the process has ended within timeout_ms, else nullopt.
  std::optional<ExitStatus> WaitExit(int timeout_ms);
  // SIGTERM, then waits up to timeout_ms; SIGKILL after that (and the test fails).
  ExitStatus Terminate(int timeout_ms = kLongWaitMs);
  bool running() const { return process_.valid() && !process_.reaped(); }

 private:
  Daemon() = default;
  ChildProcess process_;
  std::string log_path_;
};

// The flags every test celld gets: the model, policies, a cgroup subtree of its own (so tests run
// side by side and leave nothing behind), a short heartbeat and, unless `extra` has a
// --log-level, debug logging.
std::vector<std::string> CelldArgs(const std::string& model, const std::string& policy_dir,
                                   const std::vector<std::string>& extra = {});
// argv for systemd-socket-activate(1) with `activate_args` (listen addresses, --fdname, -E) in
// front of the daemon's own argv.
std::vector<std::string> SocketActivated(const std::vector<std::string>& activate_args,
                                         const std::vector<std::string>& daemon_argv);

// A loopback TCP port nothing listens on right now (bound to port 0, then released).
Result<uint16_t> FreeLoopbackPort();
// A connected TCP socket to 127.0.0.1:port.
Result<UniqueFd> ConnectTcp(uint16_t port);
// Waits until something accepts connections on the Unix socket `path`.
bool WaitUntilConnectable(const std::string& path, int timeout_ms);

struct HttpResponse {
  std::string status_line;  // "HTTP/1.0 200 OK"
  std::string headers;      // everything between the status line and the blank line
  std::string body;
};
// GET `target` on a connected stream socket, reading until the server closes.
Result<HttpResponse> HttpGet(const UniqueFd& connection, const std::string& target);
Result<HttpResponse> HttpGetTcp(uint16_t port, const std::string& target);
Result<HttpResponse> HttpGetUnix(const std::string& path, const std::string& target);

// Processes whose parent is `parent` and whose comm is `comm`.
std::vector<pid_t> ChildrenNamed(pid_t parent, const std::string& comm);
// celld's zygote(s): its cell-zygote children in celld's own user namespace. Workers, pool
// workers included, are forks of the zygote with the same name, each in a namespace of its own.
std::vector<pid_t> ZygotesOf(pid_t celld);

// Lower-case hex of a byte string (session ids on the wire are raw bytes).
std::string Hex(std::string_view bytes);

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_E2E_OPS_SUPPORT_H_
