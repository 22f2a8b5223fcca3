#include "tests/e2e/probe/probe_engine.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/strings.h"
#include "ipc/control.pb.h"
#include "tests/e2e/probe/attacks.h"

namespace cellhouse::probe {
namespace {

std::string Outcome(int err) {
  if (err == 0) return "ok";
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "errno " + std::to_string(err);
}

session::TurnResult OnePiece(const session::TokenCallback& on_token, const std::string& text) {
  on_token({.token = 0, .text = text});
  session::TurnResult r;
  r.generated_tokens = 1;
  r.stop = api::Done::MAX_TOKENS;
  return r;
}

int ForkOnce() {
  long pid = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid < 0) return errno;
  if (pid == 0) ::syscall(SYS_exit_group, 0);
  int status = 0;
  ::syscall(SYS_wait4, pid, &status, 0, nullptr);
  return 0;
}

// Touches fresh memory, 1 MiB at a time, until the kernel ends this process.
[[noreturn]] void MemoryBomb() {
  for (;;) {
    void* p = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) continue;
    ::memset(p, 0x5a, 1 << 20);
  }
}

// The worker's control channel: its one SOCK_SEQPACKET descriptor.
int FindControlChannel() {
  for (int fd = 0; fd < 64; ++fd) {
    int type = 0;
    socklen_t len = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_SEQPACKET) {
      return fd;
    }
  }
  return -1;
}

int SendHeartbeats(uint32_t context_used, int count) {
  int fd = FindControlChannel();
  if (fd < 0) return ENOENT;
  control::WorkerMessage m;
  m.mutable_heartbeat()->set_context_used(context_used);
  std::string bytes = m.SerializeAsString();
  for (int i = 0; i < count; ++i) {
    if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) return errno;
  }
  return 0;
}

}  // namespace

Result<session::TurnResult> ProbeTurnEngine::Turn(const session::TurnRequest& request,
                                                  const session::TokenCallback& on_token) {
  std::string_view prompt = request.prompt;
  if (!StartsWith(prompt, "probe:")) return real_->Turn(request, on_token);
  prompt.remove_prefix(6);
  if (StartsWith(prompt, "attack:")) {
    const Attack* attack = FindAttack(prompt.substr(7));
    if (attack == nullptr) return OnePiece(on_token, "unknown attack");
    return OnePiece(on_token, std::string(attack->name) + ": " + Outcome(attack->run()));
  }
  if (prompt == "memory-bomb") MemoryBomb();
  if (StartsWith(prompt, "env:")) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): the worker is single-threaded
    const char* value = std::getenv(std::string(prompt.substr(4)).c_str());
    return OnePiece(on_token, value != nullptr ? value : "(unset)");
  }
  if (prompt == "fork") return OnePiece(on_token, "fork: " + Outcome(ForkOnce()));
  if (prompt == "lie" || prompt == "flood") {
    int err = prompt == "lie" ? SendHeartbeats(1u << 30, 1) : SendHeartbeats(0, 20000);
    // Stay in the turn, as a compromised worker would, so celld's answer lands mid-turn.
    timespec wait{5, 0};
    ::nanosleep(&wait, nullptr);
    return OnePiece(on_token, std::string(prompt) + ": " + Outcome(err));
  }
  if (prompt == "hang") {
    for (;;) {
      timespec forever{3600, 0};
      ::nanosleep(&forever, nullptr);
    }
  }
  if (StartsWith(prompt, "slow:")) {
    // "slow:COUNT:MS": COUNT pieces, MS apart, as a long generation; stops when asked to.
    std::vector<std::string_view> parts = Split(prompt.substr(5), ':');
    auto count = ParseInt64(parts.empty() ? "" : parts[0], "count");
    auto ms = ParseInt64(parts.size() < 2 ? "" : parts[1], "ms");
    session::TurnResult r;
    for (int64_t i = 0; i < (count ? *count : 10); ++i) {
      timespec pause{0, (ms ? *ms : 50) * kNanosPerMilli};
      ::nanosleep(&pause, nullptr);
      ++r.generated_tokens;
      if (!on_token({.token = static_cast<int32_t>(i), .text = "s "})) {
        r.stop = api::Done::CANCELLED;
        return r;
      }
    }
    r.stop = api::Done::MAX_TOKENS;
    return r;
  }
  if (StartsWith(prompt, "spin:")) {
    auto ms = ParseInt64(prompt.substr(5), "spin");
    int64_t until = MonotonicNanos() + (ms ? *ms : 1000) * kNanosPerMilli;
    uint64_t iterations = 0;
    while (MonotonicNanos() < until) ++iterations;
    return OnePiece(on_token, "spin: " + std::to_string(iterations));
  }
  return OnePiece(on_token, "unknown probe");
}

}  // namespace cellhouse::probe
