#include "supervisor/zygote_process.h"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>

#include "base/clock.h"
#include "base/io.h"
#include "base/strings.h"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX name

namespace cellhouse::supervisor {

Result<ZygoteProcess> ZygoteProcess::Start(const ZygoteOptions& options) {
  CH_ASSIGN_OR_RETURN(FdPair channel, MakeSocketPair(SOCK_SEQPACKET));
  SpawnOptions spawn;
  spawn.argv = {options.binary, "--model", options.model, "--channel-fd",
                std::to_string(kZygoteChannelFd)};
  if (!options.tokenizer.empty()) {
    spawn.argv.push_back("--tokenizer");
    spawn.argv.push_back(options.tokenizer);
  }
  if (!options.lock_weights) spawn.argv.push_back("--no-mlock");
  spawn.argv.insert(spawn.argv.end(), options.extra_args.begin(), options.extra_args.end());
  spawn.fds = {{kZygoteChannelFd, channel.second.get()}};
  // The parent's environment, with OpenBLAS pinned to one thread, and without what systemd gave
  // celld alone: the zygote must not notify, pet the watchdog or take the listening sockets.
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view var(*e);
    bool celld_only = false;
    for (std::string_view prefix :
         {"OPENBLAS_NUM_THREADS=", "NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=",
          "LISTEN_FDS=", "LISTEN_PID=", "LISTEN_FDNAMES="}) {
      celld_only = celld_only || StartsWith(var, prefix);
    }
    if (!celld_only) env.emplace_back(var);
  }
  env.emplace_back("OPENBLAS_NUM_THREADS=1");
  spawn.env = std::move(env);
  CH_ASSIGN_OR_RETURN(ChildProcess process, SpawnProgram(spawn));
  channel.second.reset();

  // Wait for ZygoteReady, or for the zygote to end first.
  int64_t deadline = MonotonicNanos() + options.ready_timeout_ms * kNanosPerMilli;
  for (;;) {
    pollfd fds[2] = {{channel.first.get(), POLLIN, 0}, {process.pidfd(), POLLIN, 0}};
    int64_t left_ms = (deadline - MonotonicNanos()) / kNanosPerMilli;
    if (left_ms <= 0) {
      static_cast<void>(process.Kill(SIGKILL));
      static_cast<void>(process.Wait());
      return Error("the zygote did not report ready within " +
                   std::to_string(options.ready_timeout_ms) + " ms");
    }
    int rc = ::poll(fds, 2, static_cast<int>(left_ms));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "poll");
    }
    if ((fds[0].revents & POLLIN) != 0) {
      auto ready = ipc::ReceiveMessage<zygote::ZygoteReady>(channel.first.get(), {});
      if (ready && !ready->end_of_stream) {
        return ZygoteProcess(std::move(process), std::move(channel.first),
                             std::move(ready->message));
      }
    }
    if (fds[0].revents != 0 || fds[1].revents != 0) {
      // It closed the channel or ended: report how.
      auto st = process.Wait();
      return Error("the zygote (" + options.binary +
                   ") ended before it was ready: " + (st ? st->ToString() : st.error().message()) +
                   "; its error is on celld's standard error");
    }
  }
}

Status ZygoteProcess::SendSpawn(const zygote::SpawnRequest& request, std::span<const int> fds) {
  if (!channel_.valid()) return Error("the zygote's channel is closed");
  return ipc::SendMessage(channel_.get(), request, fds);
}

Result<ipc::ReceivedMessage<zygote::SpawnReply>> ZygoteProcess::ReceiveReply() {
  return ipc::ReceiveMessage<zygote::SpawnReply>(channel_.get(),
                                                 {.max_fds = 1, .nonblocking = true});
}

}  // namespace cellhouse::supervisor
