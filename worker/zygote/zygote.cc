#include "worker/zygote/zygote.h"

#include <stdlib.h>

#include <utility>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/io.h"
#include "ipc/control.pb.h"
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
  return
      [factory = std::move(factory)](UniqueFd control, const zygote::SpawnRequest& request) -> int {
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
        Result<std::unique_ptr<session::TurnEngine>> engine = factory(limits);
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
  if (fds.empty()) {
    zygote::SpawnFailed* failed = reply.mutable_failed();
    failed->set_step("request");
    failed->set_message("the spawn request carried no control channel");
    return ipc::SendMessage(channel_.get(), reply);
  }
  UniqueFd control = std::move(fds[0]);
  std::vector<UniqueFd> cgroup_fds;
  for (size_t i = 1; i < fds.size(); ++i) cgroup_fds.push_back(std::move(fds[i]));

  Result<sandbox::SandboxPlan> plan =
      sandbox::SandboxPlan::Build(request.sandbox(), control.get(), cgroup_fds);
  if (!plan) {
    zygote::SpawnFailed* failed = reply.mutable_failed();
    failed->set_step("request");
    failed->set_message(plan.error().message());
    return ipc::SendMessage(channel_.get(), reply);
  }
  sandbox::SpawnOutcome outcome = sandbox::SpawnSandboxed(*plan, [&]() -> int {
    // In the worker: the control channel is the only descriptor left besides the closed status
    // pipe; take ownership of it by number.
    return entry_(UniqueFd(control.release()), request);
  });
  control.reset();  // the zygote's copy; the worker has its own
  std::vector<int> pass;
  if (outcome.process.valid()) pass.push_back(outcome.process.pidfd());
  if (outcome.ok) {
    zygote::Spawned* spawned = reply.mutable_spawned();
    spawned->set_pid(outcome.process.pid());
    for (const auto& [step, micros] : outcome.step_micros) {
      zygote::StepTiming* t = spawned->add_timings();
      t->set_step(step);
      t->set_micros(micros);
    }
  } else {
    zygote::SpawnFailed* failed = reply.mutable_failed();
    failed->set_step(sandbox::StepName(outcome.failed_step));
    failed->set_errno_value(outcome.error);
    failed->set_message(outcome.message);
  }
  return ipc::SendMessage(channel_.get(), reply, pass);
}

}  // namespace cellhouse::zygote_runtime
