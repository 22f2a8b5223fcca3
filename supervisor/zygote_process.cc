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

std::vector<std::string> ZygoteEnvironment(char** parent_environment) {
  std::vector<std::string> env = {"OPENBLAS_NUM_THREADS=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                  "LANG=C.UTF-8"};
  for (char** e = parent_environment; e != nullptr && *e != nullptr; ++e) {
    std::string_view var(*e);
    for (std::string_view name : kZygotePassedVariables) {
      if (var.size() > name.size() && StartsWith(var, name) && var[name.size()] == '=') {
        env.emplace_back(var);
      }
    }
  }
  return env;
}

namespace {

// Ends a zygote that failed to start properly; `what` says how it failed.
Error AbandonZygote(ChildProcess& process, const ZygoteOptions& options, const std::string& what) {
  // It may still run (a channel closed, or garbage sent, by a live process): kill it, or Wait
  // would block celld for as long as it lives.
  static_cast<void>(process.Kill(SIGKILL));
  auto st = process.Wait();
  return Error("the zygote (" + options.binary + ") " + what + " (it " +
               (st ? st->ToString() : st.error().message()) +
               "); its error, if any, is on celld's standard error");
}

}  // namespace

Result<ZygoteProcess> ZygoteProcess::Start(const ZygoteOptions& options) {
  CH_ASSIGN_OR_RETURN(FdPair channel, MakeSocketPair(SOCK_SEQPACKET));
  SpawnOptions spawn;
  spawn.argv = {options.binary, "--model", options.model, "--channel-fd",
                std::to_string(kZygoteChannelFd)};
  if (!options.tokenizer.empty()) {
    spawn.argv.push_back("--tokenizer");
    spawn.argv.push_back(options.tokenizer);
  }
  if (options.ctx_size > 0) {
    spawn.argv.push_back("--ctx-size");
    spawn.argv.push_back(std::to_string(options.ctx_size));
  }
  if (!options.lock_weights) spawn.argv.push_back("--no-mlock");
  if (!options.chat_template.empty()) {
    spawn.argv.push_back("--chat-template");
    spawn.argv.push_back(options.chat_template);
  }
  spawn.argv.insert(spawn.argv.end(), options.extra_args.begin(), options.extra_args.end());
  spawn.fds = {{kZygoteChannelFd, channel.second.get()}};
  spawn.env = ZygoteEnvironment(environ);
  CH_ASSIGN_OR_RETURN(ChildProcess process, SpawnProgram(spawn));
  channel.second.reset();

  // Wait for ZygoteReady, or for the zygote to end first.
  int64_t deadline = MonotonicNanos() + options.ready_timeout_ms * kNanosPerMilli;
  for (;;) {
    pollfd fds[2] = {{channel.first.get(), POLLIN, 0}, {process.pidfd(), POLLIN, 0}};
    int64_t left_ms = (deadline - MonotonicNanos()) / kNanosPerMilli;
    if (left_ms <= 0) {
      return AbandonZygote(
          process, options,
          "did not report ready within " + std::to_string(options.ready_timeout_ms) + " ms");
    }
    int rc = ::poll(fds, 2, static_cast<int>(left_ms));
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "poll");
    }
    if ((fds[0].revents & POLLIN) != 0) {
      auto ready = ipc::ReceiveMessage<zygote::ZygoteReady>(
          channel.first.get(), {.max_bytes = size_t{64} * 1024, .max_fds = 0, .nonblocking = true});
      if (!ready) {
        return AbandonZygote(process, options,
                             "sent something other than ZygoteReady: " + ready.error().message());
      }
      if (ready->would_block) continue;
      if (!ready->end_of_stream) {
        return ZygoteProcess(std::move(process), std::move(channel.first),
                             std::move(ready->message));
      }
      return AbandonZygote(process, options, "closed its channel before it was ready");
    }
    if (fds[0].revents != 0 || fds[1].revents != 0) {
      return AbandonZygote(process, options, "ended before it was ready");
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
