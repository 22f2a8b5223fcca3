// celld's side of each model's shared step executor (docs/EXECUTOR.md, shared_executor.h):
// starting it through the model's zygote, handing its slots to sharing sessions' workers,
// reading its reports into per-policy metrics, removing a reaped worker's slot, restarting it
// when it ends. A worker whose executor is gone computes alone: nothing here can cost a session
// its conversation.
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "executor/executor_filter.h"
#include "ipc/executor.pb.h"
#include "ipc/messages.h"
#include "ipc/packet.h"
#include "supervisor/sandbox_spec.h"
#include "supervisor/supervisor.h"

namespace cellhouse::supervisor {
namespace {

// A report carries every slot's usage: 127 slots of a few varints each, and its events.
constexpr size_t kMaxReportBytes = size_t{64} * 1024;

std::string SlotEventName(executor_ipc::SlotEvent::Kind kind) {
  std::string name = executor_ipc::SlotEvent::Kind_Name(kind);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

// How long a stopping executor may take before it is killed (it holds no state).
constexpr int kExecutorStopWaitMs = 1000;

}  // namespace

void Supervisor::StartExecutors() {
  if (!options_.shared_executor.enabled) return;
  const uint32_t first = options_.shared_executor.host_uid_first;
  for (auto& [name, model] : models_) {
    if (!model.zygote || model.zygote->ready().executor_slot_bytes() == 0) {
      spdlog::info(
          "model {}: no shared executor (its format has none); its sessions compute "
          "in their own workers",
          name);
      continue;
    }
    // From the allocator every session's ids come from: no live session of any policy can be
    // given the executor's host ids, whatever ranges admins write.
    Result<uint32_t> ids = host_ids_.Allocate(first, kExecutorHostIdRange, 2);
    if (!ids) {
      spdlog::error("model {}: no shared executor: no two free host ids from {}: {}", name, first,
                    ids.error().message());
      continue;
    }
    auto executor = std::make_unique<SharedExecutor>(*loop_);
    executor->host_id_first = *ids;
    executors_[name] = std::move(executor);
    StartExecutor(name);
  }
}

void Supervisor::StartExecutor(const std::string& model) {
  SharedExecutor& ex = *executors_.at(model);
  auto served = models_.find(model);
  auto retry = [&](const std::string& why) {
    spdlog::error("model {}: the shared executor could not start: {}", model, why);
    ScheduleExecutorRestart(model, 0);
  };
  if (served == models_.end() || !served->second.zygote) return retry("its zygote is gone");
  ExecutorRecipe recipe{.host_id_first = ex.host_id_first,
                        .threads = options_.shared_executor.threads,
                        .memory_max_bytes = options_.shared_executor.memory_max_bytes,
                        .sandbox_enabled = options_.sandbox};
  // Without --executor-threads the executor sizes its pool from its own CPU affinity (its
  // cpuset, inherited from celld through the zygote); its limits allow that many threads.
  if (recipe.threads == 0) recipe.threads = static_cast<uint32_t>(CpusAllowed());
  Result<std::string> filter = executor::ExecutorFilterBytes();
  if (!filter) return retry(filter.error().message());
  recipe.seccomp_bpf = std::move(*filter);
  std::vector<int> placement_fds;
  zygote::SandboxSpec::CgroupPlacement placement = zygote::SandboxSpec::CGROUP_NONE;
  if (cgroups_) {
    Result<cgroup::SessionCgroup> cg = cgroups_->CreateSession(
        "executor-" + std::to_string(ex.host_id_first), ExecutorCgroupLimits(recipe));
    if (!cg) return retry("creating its cgroup: " + cg.error().message());
    ex.cgroup.emplace(std::move(*cg));
    placement_fds = ex.cgroup->placement().RawFds();
    placement = ex.cgroup->placement().kind == cgroup::Placement::Kind::kCloneIntoCgroup
                    ? zygote::SandboxSpec::CGROUP_V2
                    : zygote::SandboxSpec::CGROUP_V1;
  }
  Result<FdPair> control = MakeSocketPair(SOCK_SEQPACKET);
  if (!control) return retry(control.error().message());
  zygote::SpawnRequest spawn;
  spawn.set_request_id(next_spawn_request_++);
  *spawn.mutable_sandbox() = BuildExecutorSandboxSpec(recipe, placement);
  zygote::ExecutorSpec* spec = spawn.mutable_executor();
  spec->set_max_slots(kExecutorSlotCapacity);
  spec->set_threads(options_.shared_executor.threads);  // 0: its own CPUs,
  spec->set_max_threads(recipe.threads);                // as many as its limits allow
  spec->set_solo(options_.shared_executor.solo);
  std::vector<int> fds = {control->second.get()};
  fds.insert(fds.end(), placement_fds.begin(), placement_fds.end());
  Status sent = served->second.zygote->SendSpawn(spawn, fds);
  if (!sent) return retry("asking the zygote: " + sent.error().message());
  ex.control = std::move(control->first);
  ex.spawn_request_id = spawn.request_id();
  ex.stop_requested = false;
  ex.state = SharedExecutor::State::kStarting;
  pending_executor_spawns_[spawn.request_id()] = model;
}

void Supervisor::OnExecutorSpawned(const std::string& model, const zygote::SpawnReply& reply,
                                   std::vector<UniqueFd> fds) {
  auto it = executors_.find(model);
  if (it == executors_.end()) return;
  SharedExecutor& ex = *it->second;
  UniqueFd pidfd = fds.empty() ? UniqueFd() : std::move(fds[0]);
  if (pidfd.valid()) ex.process = ChildProcess(reply.spawned().pid(), std::move(pidfd));
  if (!reply.has_spawned()) {
    ex.last_end = "did not start: " + reply.failed().step() + ": " + reply.failed().message();
    spdlog::error("model {}: the shared executor {}", model, ex.last_end);
    metrics_.executor_exits.Inc({"spawn_failed"});
    if (ex.process.valid()) static_cast<void>(ex.process.Wait());
    ex.process = ChildProcess();
    FinishExecutor(model);
    return;
  }
  ex.state = SharedExecutor::State::kRunning;
  ex.started_ns = clock_.NowNanos();
  ex.killed_silent = false;
  ArmExecutorSilence(model);
  ++ex.starts;
  spdlog::info("model {}: shared executor pid {} started ({} slots)", model, reply.spawned().pid(),
               kExecutorSlotCapacity);
  LogIfError(
      loop_->Add(ex.process.pidfd(), EPOLLIN, [this, model](uint32_t) { OnExecutorExit(model); }),
      "watching the executor");
  LogIfError(
      loop_->Add(ex.control.get(), EPOLLIN, [this, model](uint32_t) { OnExecutorReadable(model); }),
      "watching the executor's channel");
  // Pool workers made while no executor ran would compute alone for their whole life: they
  // make way for workers with a slot (the pool refills). Those still starting go when ready.
  std::vector<std::string> slotless;
  for (const auto& [id, s] : sessions_) {
    if (s.state() == Session::State::kPooled && PooledWithoutSlot(s)) slotless.push_back(id);
  }
  for (const std::string& id : slotless) {
    if (Session* s = FindSession(id)) {
      EndSession(*s, api::SHUTDOWN, "replaced by a worker with an executor slot", false);
    }
  }
}

void Supervisor::OnExecutorReadable(const std::string& model) {
  auto it = executors_.find(model);
  if (it == executors_.end() || !it->second->control.valid()) return;
  SharedExecutor& ex = *it->second;
  for (;;) {
    auto report = ipc::ReceiveMessage<executor_ipc::ExecutorReport>(
        ex.control.get(), {.max_bytes = kMaxReportBytes, .nonblocking = true});
    if (!report || report->end_of_stream) {
      // Its end shows on the pidfd too; the channel is of no more use.
      if (!report) spdlog::warn("model {}: executor channel: {}", model, report.error().message());
      loop_->Remove(ex.control.get());
      ex.control.reset();
      return;
    }
    if (report->would_block) return;
    ArmExecutorSilence(model);
    ApplyExecutorReport(ex, report->message);
  }
}

void Supervisor::ArmExecutorSilence(const std::string& model) {
  SharedExecutor& ex = *executors_.at(model);
  ex.silence_timer.Arm(clock_.NowNanos() + kExecutorSilenceNs, [this, model] {
    auto it = executors_.find(model);
    if (it == executors_.end() || it->second->state != SharedExecutor::State::kRunning) return;
    SharedExecutor& silent = *it->second;
    spdlog::error(
        "model {}: the shared executor sent no report for {} s (wedged or stopped): "
        "killing it; its sessions compute in their own workers until the next one",
        model, kExecutorSilenceNs / kNanosPerSecond);
    silent.killed_silent = true;
    LogIfError(silent.process.Kill(SIGKILL), "killing a silent executor");
  });
}

void Supervisor::ApplyExecutorReport(SharedExecutor& ex,
                                     const executor_ipc::ExecutorReport& report) {
  ReportDigest digest = ex.slots.Apply(report);
  const int64_t now = clock_.NowNanos();
  for (const SlotDelta& d : digest.deltas) {
    metrics_.executor_rows.Inc({d.policy}, d.rows);
    metrics_.executor_cpu.Inc({d.policy}, d.cpu_ns);
    metrics_.executor_late.Inc({d.policy}, d.late);
    Session* s = d.session_id.empty() ? nullptr : FindSession(d.session_id);
    if (s == nullptr) continue;
    s->executor_rows += d.rows;
    s->executor_cpu_ns += d.cpu_ns;
    // Over its policy's CPU quota: its slot is not served until the refill pays the debt back.
    const int64_t pause_ns = ex.fairness.Charge(d.session_id, d.cpu_ns, now);
    if (pause_ns > 0 && ex.control.valid()) {
      executor_ipc::ExecutorControl command;
      executor_ipc::PauseSlot* pause = command.mutable_pause_slot();
      pause->set_slot_id(d.slot_id);
      pause->set_duration_ms(
          static_cast<uint32_t>(std::min(pause_ns, kMaxExecutorPauseNs) / kNanosPerMilli));
      LogIfError(ipc::SendMessage(ex.control.get(), command), "pausing an executor slot");
      metrics_.executor_pauses.Inc({d.policy});
    }
  }
  metrics_.executor_batches.Inc({}, digest.batches);
  metrics_.executor_gathers_cut_short.Inc({}, digest.gathers_cut_short);
  for (const SlotNews& e : digest.events) {
    metrics_.executor_slot_events.Inc({SlotEventName(e.kind)});
    Session* s = e.session_id.empty() ? nullptr : FindSession(e.session_id);
    if (e.kind == executor_ipc::SlotEvent::VIOLATION && s != nullptr) {
      // A worker that breaks the protocol is compromised or broken: it ends (as one killed by
      // its filter would), its neighbours never waited on it beyond one bounded delay.
      spdlog::warn("session {}: its worker broke the executor's protocol: {}",
                   ipc::IdToHex(s->id()), e.detail);
      EndSession(*s, api::KILLED, "its worker broke the shared executor's protocol", false);
    } else if (s != nullptr) {
      spdlog::debug("session {}: executor slot {}: {} {}", ipc::IdToHex(s->id()), e.slot_id,
                    SlotEventName(e.kind), e.detail);
    }
  }
}

void Supervisor::OnExecutorExit(const std::string& model) {
  auto it = executors_.find(model);
  if (it == executors_.end() || !it->second->process.valid()) return;
  SharedExecutor& ex = *it->second;
  Result<std::optional<ExitStatus>> status = ex.process.TryReap();
  if (!status || !status->has_value()) return;
  // Its last report (the final usage of slots it dropped) may still be queued.
  if (ex.control.valid() && loop_->Watching(ex.control.get())) OnExecutorReadable(model);
  ExecutorEndFacts facts{.status = **status, .stop_requested = ex.stop_requested};
  if (ex.cgroup) {
    auto oom = ex.cgroup->OomKills();
    if (oom) facts.oom_kills = *oom;
    facts.memory_limit_bytes = ex.cgroup->limits().memory_max.value_or(0);
  }
  ExecutorEnd end = ClassifyExecutorEnd(facts);
  if (ex.killed_silent) {
    end.reason = "silent";
    end.message = "killed by celld after " + std::to_string(kExecutorSilenceNs / kNanosPerSecond) +
                  " s without a report";
  }
  metrics_.executor_exits.Inc({end.reason});
  ex.last_end = end.message;
  if (ex.stop_requested) {
    spdlog::info("model {}: the shared executor ended: {}", model, end.message);
  } else {
    spdlog::error(
        "model {}: the shared executor ended: {}; its sessions compute in their own "
        "workers",
        model, end.message);
  }
  FinishExecutor(model);
}

void Supervisor::FinishExecutor(const std::string& model) {
  SharedExecutor& ex = *executors_.at(model);
  if (ex.process.valid() && loop_->Watching(ex.process.pidfd())) loop_->Remove(ex.process.pidfd());
  if (ex.control.valid() && loop_->Watching(ex.control.get())) loop_->Remove(ex.control.get());
  ex.control.reset();
  ex.process = ChildProcess();
  ex.silence_timer.Cancel();
  // Its workers saw it go (their liveness words) and compute alone; their slots are no more.
  for (const std::string& id : ex.slots.Reset()) {
    ex.fairness.Untrack(id);
    if (Session* s = FindSession(id)) s->executor_slot = 0;
  }
  if (ex.cgroup && !ex.cgroup->removed()) LogIfError(ex.cgroup->Remove(), "the executor's cgroup");
  ex.cgroup.reset();
  const int64_t ran = ex.started_ns == 0 ? 0 : clock_.NowNanos() - ex.started_ns;
  ex.started_ns = 0;
  if (ex.stop_requested || shutting_down_) {
    ex.state = SharedExecutor::State::kOff;
    return;
  }
  ScheduleExecutorRestart(model, ran);
}

void Supervisor::ScheduleExecutorRestart(const std::string& model, int64_t ran_ns) {
  SharedExecutor& ex = *executors_.at(model);
  ex.state = SharedExecutor::State::kRestartWait;
  const int64_t delay = ex.backoff.Next(ran_ns);
  ex.restart_timer.Arm(clock_.NowNanos() + delay, [this, model] {
    if (!shutting_down_) StartExecutor(model);
  });
}

uint64_t Supervisor::ReserveExecutorSlot(const Session& session) {
  auto it = executors_.find(session.model);
  if (it == executors_.end() || !it->second->TakesSlots()) return 0;
  const policy::Policy& p = session.policy->proto();
  if (p.has_shared_executor() && !p.shared_executor()) return 0;  // exempt: computes alone
  return it->second->slots.Reserve(session.id(), session.policy->name()).value_or(0);
}

bool Supervisor::PooledWithoutSlot(const Session& session) const {
  auto it = executors_.find(session.model);
  if (!session.pooled || session.executor_slot != 0 || it == executors_.end()) return false;
  const SharedExecutor& ex = *it->second;
  const policy::Policy& p = session.policy->proto();
  // Only a worker asked for before this executor started: one asked for since that still has
  // no slot (the zygote could not make it) stays, or the pool would churn.
  return ex.state == SharedExecutor::State::kRunning && ex.started_ns > session.created_ns &&
         (!p.has_shared_executor() || p.shared_executor());
}

void Supervisor::TrackExecutorSlot(const Session& session) {
  auto it = executors_.find(session.model);
  if (it == executors_.end() || session.executor_slot == 0) return;
  std::optional<double> cpus;
  const policy::Cgroup& c = session.policy->proto().cgroup();
  if (c.has_cpu_quota() && c.cpu_quota().period_us() > 0) {
    cpus = static_cast<double>(c.cpu_quota().quota_us()) /
           static_cast<double>(c.cpu_quota().period_us());
  }
  const uint32_t weight = c.has_cpu_weight() ? c.cpu_weight() : cgroup::kCpuWeightDefault;
  it->second->fairness.Track(session.id(), cpus, clock_.NowNanos(), weight);
  ApplyExecutorWeight(*it->second);
}

void Supervisor::ApplyExecutorWeight(SharedExecutor& ex) {
  if (!ex.cgroup || ex.cgroup->removed()) return;
  const uint32_t weight = ex.fairness.CgroupWeight();
  // A new cgroup has the kernel's default weight until one is written.
  if (ex.cgroup->limits().cpu_weight.value_or(cgroup::kCpuWeightDefault) == weight) return;
  Status set = ex.cgroup->SetCpuWeight(weight);
  if (!set) {
    spdlog::warn("the shared executor's cgroup: setting its CPU weight to {}: {}", weight,
                 set.error().message());
  }
}

void Supervisor::ReleaseExecutorSlot(Session& session, bool worker_had_it) {
  if (session.executor_slot == 0) return;
  const uint64_t slot = session.executor_slot;
  session.executor_slot = 0;
  auto it = executors_.find(session.model);
  if (it == executors_.end()) return;
  it->second->fairness.Untrack(session.id());
  ApplyExecutorWeight(*it->second);
  if (!it->second->slots.Holds(slot)) return;
  SharedExecutor& ex = *it->second;
  if (!worker_had_it) {
    ex.slots.Forget(slot);
    return;
  }
  ex.slots.Detach(slot);
  if (!ex.control.valid()) return;
  executor_ipc::ExecutorControl command;
  command.mutable_remove_slot()->set_slot_id(slot);
  LogIfError(ipc::SendMessage(ex.control.get(), command), "removing an executor slot");
}

void Supervisor::StopExecutors() {
  for (auto& [model, ex] : executors_) {
    ex->restart_timer.Cancel();
    ex->stop_requested = true;
    if (ex->control.valid()) {
      executor_ipc::ExecutorControl command;
      command.mutable_stop();
      LogIfError(ipc::SendMessage(ex->control.get(), command), "stopping the executor");
    }
    if (ex->process.valid() && !ex->process.reaped()) {
      // It ends on StopExecutor (or when its zygote's channel closes); a wedged one is killed.
      pollfd gone{ex->process.pidfd(), POLLIN, 0};
      if (::poll(&gone, 1, kExecutorStopWaitMs) <= 0) static_cast<void>(ex->process.Kill(SIGKILL));
      Result<ExitStatus> st = ex->process.Wait();
      if (st && !st->Success()) spdlog::warn("model {}: executor ended: {}", model, st->ToString());
    }
    FinishExecutor(model);
  }
}

}  // namespace cellhouse::supervisor
