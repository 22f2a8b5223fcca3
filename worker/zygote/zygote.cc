#include "worker/zygote/zygote.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <utility>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/io.h"
#include "executor/futex.h"
#include "ipc/control.pb.h"
#include "ipc/executor.pb.h"
#include "ipc/packet.h"
#include "ipc/worker_contract.h"
#include "worker/sandbox/spawn.h"
#include "worker/session/session_server.h"

namespace cellhouse::zygote_runtime {

Status CheckSingleThreaded() {
  CH_ASSIGN_OR_RETURN(std::vector<std::string> tasks, ListDirectory("/proc/self/task"));
  if (tasks.size() != 1) {
    return Error("the zygote has " + std::to_string(tasks.size()) +
                 " threads; it must have one (is OPENBLAS_NUM_THREADS=1 set in its "
                 "environment?). Refusing to fork workers.");
  }
  return Ok();
}

namespace {

// A pool worker waits here, sandboxed and in its cgroup but holding nothing of any session, for
// the session it will serve. Returns the limits, or the exit status if celld stopped it first.
std::variant<zygote::SessionLimits, int> AwaitAssignment(int control, std::string* session_id) {
  for (;;) {
    auto received =
        ipc::ReceiveMessage<control::SupervisorMessage>(control, {.max_bytes = 4096, .max_fds = 0});
    if (!received || received->end_of_stream) {
      return static_cast<int>(ipc::WorkerExit::kSupervisorGone);
    }
    const control::SupervisorMessage& m = received->message;
    if (m.has_stop()) return static_cast<int>(ipc::WorkerExit::kStopped);
    if (!m.has_assign()) continue;
    *session_id = m.assign().session_id();
    zygote::SessionLimits limits;
    limits.set_context_length(m.assign().context_length());
    limits.set_max_new_tokens(m.assign().max_new_tokens());
    limits.set_heartbeat_interval_ms(m.assign().heartbeat_interval_ms());
    limits.set_idle_timeout_ms(m.assign().idle_timeout_ms());
    limits.set_chat_template(m.assign().chat_template());
    limits.set_drop_oldest_messages(m.assign().drop_oldest_messages());
    return limits;
  }
}

}  // namespace

WorkerEntry MakeSessionWorkerEntry(EngineFactory factory) {
  return [factory = std::move(factory)](UniqueFd control, const zygote::SpawnRequest& request,
                                        executor::WorkerSlot slot) -> int {
    // The worker never execs, so environment variables only reach libraries loaded in-process
    // (a GPU runtime reads CUDA_VISIBLE_DEVICES and the MPS limits at initialisation).
    for (const std::string& entry : request.sandbox().env()) {
      size_t eq = entry.find('=');
      if (eq == std::string::npos) continue;
      // NOLINTNEXTLINE(concurrency-mt-unsafe): the worker is single-threaded
      ::setenv(entry.substr(0, eq).c_str(), entry.substr(eq + 1).c_str(), 1);
    }
    zygote::SessionLimits limits = request.limits();
    std::string session_id = request.session_id();
    if (request.pooled()) {
      auto assigned = AwaitAssignment(control.get(), &session_id);
      if (const int* exit_status = std::get_if<int>(&assigned)) return *exit_status;
      limits = std::get<zygote::SessionLimits>(assigned);
    }
    Result<std::unique_ptr<session::TurnEngine>> engine = factory(limits, slot);
    if (!engine) return static_cast<int>(session::WorkerExit::kInternalError);
    session::SessionConfig config;
    config.session_id = session_id;
    config.max_new_tokens = limits.max_new_tokens();
    if (limits.heartbeat_interval_ms() > 0) {
      config.heartbeat_interval_ns =
          static_cast<int64_t>(limits.heartbeat_interval_ms()) * kNanosPerMilli;
    }
    if (limits.idle_timeout_ms() > 0) {
      config.idle_timeout_ns = static_cast<int64_t>(limits.idle_timeout_ms()) * kNanosPerMilli;
    }
    RealClock clock;
    session::SessionServer server(std::move(control), **engine, config, clock);
    return static_cast<int>(server.Run());
  };
}

Status Zygote::Run() {
  CH_RETURN_IF_ERROR(CheckSingleThreaded());
  if (executor_support_) {
    CH_RETURN_IF_ERROR(executor::ValidateShape(executor_support_->shape));
    ready_.set_executor_slot_bytes(executor::SlotBytes(executor_support_->shape));
  }
  CH_RETURN_IF_ERROR(ipc::SendMessage(channel_.get(), ready_));
  for (;;) {
    auto received = ipc::ReceiveMessage<zygote::SpawnRequest>(
        channel_.get(), {.max_bytes = ipc::kMaxPacketBytes, .max_fds = ipc::kMaxPacketFds});
    if (!received) return std::move(received).error().Context("reading a spawn request");
    if (received->end_of_stream) return Ok();
    CH_RETURN_IF_ERROR(HandleSpawn(received->message, std::move(received->fds)));
  }
}

Status Zygote::HandleSpawn(const zygote::SpawnRequest& request, std::vector<UniqueFd> fds) {
  zygote::SpawnReply reply;
  reply.set_request_id(request.request_id());
  auto fail = [&](const std::string& step, const std::string& message) {
    zygote::SpawnFailed* failed = reply.mutable_failed();
    failed->set_step(step);
    failed->set_message(message);
    return ipc::SendMessage(channel_.get(), reply);
  };
  if (fds.empty()) return fail("request", "the spawn request carried no control channel");
  UniqueFd control = std::move(fds[0]);
  std::vector<UniqueFd> cgroup_fds;
  for (size_t i = 1; i < fds.size(); ++i) cgroup_fds.push_back(std::move(fds[i]));

  if (request.has_executor()) {
    return SpawnExecutor(request, std::move(control), std::move(cgroup_fds), &reply);
  }
  std::vector<int> pass;

  Result<sandbox::SandboxPlan> plan =
      sandbox::SandboxPlan::Build(request.sandbox(), control.get(), cgroup_fds);
  if (!plan) return fail("request", plan.error().message());
  // Made before the fork so that this worker, and only this one, inherits its mapping.
  std::optional<executor::SlotMemory> slot = MakeSlot(request);
  sandbox::SpawnOutcome outcome = sandbox::SpawnSandboxed(*plan, [&]() -> int {
    // In the worker: the control channel is the only descriptor left besides the closed status
    // pipe; take ownership of it by number. Its slot is charged to its cgroup before anything
    // else touches it.
    const executor::WorkerSlot view = slot ? slot->worker_view() : executor::WorkerSlot{};
    executor::TouchPayload(view);
    return entry_(UniqueFd(control.release()), request, view);
  });
  control.reset();  // the zygote's copy; the worker has its own
  if (outcome.process.valid()) pass.push_back(outcome.process.pidfd());
  if (outcome.ok) {
    zygote::Spawned* spawned = reply.mutable_spawned();
    spawned->set_pid(outcome.process.pid());
    for (const auto& [step, micros] : outcome.step_micros) {
      zygote::StepTiming* t = spawned->add_timings();
      t->set_step(step);
      t->set_micros(micros);
    }
    spawned->set_executor_slot(slot && HandSlotToExecutor(request.executor_slot(), *slot));
  } else {
    zygote::SpawnFailed* failed = reply.mutable_failed();
    failed->set_step(sandbox::StepName(outcome.failed_step));
    failed->set_errno_value(outcome.error);
    failed->set_message(outcome.message);
  }
  // `slot` ends here: the zygote's mapping and descriptor go, so no later fork inherits them.
  return ipc::SendMessage(channel_.get(), reply, pass);
}

std::optional<executor::SlotMemory> Zygote::MakeSlot(const zygote::SpawnRequest& request) {
  if (request.executor_slot() == 0 || !executor_channel_ || !executor_support_) {
    return std::nullopt;
  }
  // An executor that ended closed its end: the worker gets no slot rather than a dead one.
  pollfd link{executor_channel_.get(), POLLOUT, 0};
  if (::poll(&link, 1, 0) < 0 || (link.revents & (POLLHUP | POLLERR)) != 0) {
    executor_channel_.reset();
    executor_doorbell_ = Mapping();
    return std::nullopt;
  }
  Result<executor::SlotMemory> slot = executor::SlotMemory::Create(executor_support_->shape);
  if (!slot) return std::nullopt;  // the worker computes alone; the reply says it has no slot
  return std::move(*slot);
}

bool Zygote::HandSlotToExecutor(uint64_t slot_id, executor::SlotMemory& slot) {
  executor_ipc::ExecutorCommand command;
  command.mutable_add_slot()->set_slot_id(slot_id);
  const int fd = slot.fd().get();
  // The channel is non-blocking: an executor that stopped reading costs this worker its slot,
  // never the zygote its loop.
  Status sent = ipc::SendMessage(executor_channel_.get(), command, {&fd, 1});
  if (!sent) {
    slot.MarkUnavailable();
    if (sent.error().sys_errno() != EAGAIN) {
      executor_channel_.reset();  // the executor is gone: no more slots until a new one
      executor_doorbell_ = Mapping();
    }
    return false;
  }
  auto* bell = reinterpret_cast<std::atomic<uint32_t>*>(executor_doorbell_.mutable_data());
  bell->fetch_add(1, std::memory_order_release);
  executor::FutexWake(bell);
  return true;
}

Status Zygote::SpawnExecutor(const zygote::SpawnRequest& request, UniqueFd control,
                             std::vector<UniqueFd> cgroup_fds, zygote::SpawnReply* reply) {
  auto fail = [&](const std::string& step, const std::string& message) {
    zygote::SpawnFailed* failed = reply->mutable_failed();
    failed->set_step(step);
    failed->set_message(message);
    return ipc::SendMessage(channel_.get(), *reply);
  };
  if (!executor_support_) {
    return fail("request",
                "this zygote cannot start an executor (its model has no executor "
                "support)");
  }
  Result<FdPair> link = MakeSocketPair(SOCK_SEQPACKET);
  if (!link) return fail("request", link.error().message());
  Result<Mapping> doorbell = Mapping::AnonymousShared(executor::kSlotPageBytes, "the doorbell");
  if (!doorbell) return fail("request", doorbell.error().message());
  const int executor_end = link->second.get();
  Result<sandbox::SandboxPlan> plan = sandbox::SandboxPlan::Build(
      request.sandbox(), control.get(), cgroup_fds, std::span<const int>(&executor_end, 1));
  if (!plan) return fail("request", plan.error().message());
  auto* bell = reinterpret_cast<std::atomic<uint32_t>*>(doorbell->mutable_data());
  sandbox::SpawnOutcome outcome = sandbox::SpawnSandboxed(*plan, [&]() -> int {
    executor::ExecutorChannels channels;
    channels.control = UniqueFd(control.release());
    channels.zygote = UniqueFd(link->second.release());
    channels.doorbell = bell;
    return executor_support_->entry(std::move(channels), request.executor());
  });
  control.reset();
  link->second.reset();
  std::vector<int> pass;
  if (outcome.process.valid()) pass.push_back(outcome.process.pidfd());
  // From here on, no fork of the zygote inherits the doorbell: only the executor shares it.
  if (outcome.ok && ::madvise(doorbell->mutable_data(), doorbell->size(), MADV_DONTFORK) != 0) {
    outcome.ok = false;
    outcome.message = Error::FromErrno(errno, "madvise(MADV_DONTFORK) of the doorbell").message();
    static_cast<void>(outcome.process.Kill(SIGKILL));
  }
  if (outcome.ok && !SetNonBlocking(link->first.get())) {
    outcome.ok = false;
    outcome.message = "O_NONBLOCK on the executor's channel failed";
    static_cast<void>(outcome.process.Kill(SIGKILL));
  }
  if (!outcome.ok) {
    zygote::SpawnFailed* failed = reply->mutable_failed();
    failed->set_step(sandbox::StepName(outcome.failed_step));
    failed->set_errno_value(outcome.error);
    failed->set_message(outcome.message);
    return ipc::SendMessage(channel_.get(), *reply, pass);  // celld still reaps it
  }
  // Replaces the link to a previous executor, which sees its channel close and ends.
  executor_channel_ = std::move(link->first);
  executor_doorbell_ = std::move(*doorbell);
  zygote::Spawned* spawned = reply->mutable_spawned();
  spawned->set_pid(outcome.process.pid());
  for (const auto& [step, micros] : outcome.step_micros) {
    zygote::StepTiming* t = spawned->add_timings();
    t->set_step(step);
    t->set_micros(micros);
  }
  return ipc::SendMessage(channel_.get(), *reply, pass);
}

}  // namespace cellhouse::zygote_runtime
