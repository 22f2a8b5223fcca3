// Pool workers: a few sandboxed workers per policy, started ahead of need, so a session opens
// without waiting for clone3, the id maps and (on cgroup v1, ~10 ms) the cgroup placement.
//
// A pool worker holds nothing of any tenant: it was forked from the zygote, contained, placed
// in its own cgroup under its own host ids, and then waits for an Assign. It allocates its
// conversation only after that, serves that one session, and is never put back in the pool.
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "base/random.h"
#include "ipc/messages.h"
#include "ipc/packet.h"
#include "ipc/worker_contract.h"
#include "supervisor/supervisor.h"

namespace cellhouse::supervisor {
namespace {
constexpr size_t kPoolIdBytes = 16;
}  // namespace

Session* Supervisor::TakePooledWorker(const policy::CompiledPolicy& policy) {
  auto it = pool_.find(policy.name());
  while (it != pool_.end() && !it->second.empty()) {
    std::string id = it->second.front();
    it->second.pop_front();
    Session* s = FindSession(id);
    // Only a worker started for this very policy object: a reload makes a new one.
    if (s != nullptr && s->state() == Session::State::kPooled && s->policy.get() == &policy) {
      return s;
    }
  }
  return nullptr;
}

void Supervisor::AssignPooledWorker(Session& session, Connection& conn, resources::Grant grant,
                                    uint32_t context, std::string token) {
  BindTenant(session, conn, grant, context, std::move(token));
  control::SupervisorMessage message;
  control::Assign* assign = message.mutable_assign();
  zygote::SessionLimits limits = LimitsFor(session);
  assign->set_session_id(session.id());
  assign->set_context_length(limits.context_length());
  assign->set_max_new_tokens(limits.max_new_tokens());
  assign->set_heartbeat_interval_ms(limits.heartbeat_interval_ms());
  assign->set_idle_timeout_ms(limits.idle_timeout_ms());
  assign->set_chat_template(limits.chat_template());
  assign->set_drop_oldest_messages(limits.drop_oldest_messages());
  Status sent = ipc::SendMessage(session.control.get(), message);
  UniqueFd client = ReleaseConnection(conn.id);
  if (!sent) {
    // The pool worker died under us; end it (quietly) and tell the client to retry.
    spdlog::warn("pool worker pid {} could not be assigned: {}", session.worker.pid(),
                 sent.error().message());
    std::string frame = ipc::EncodeFrame(ipc::MakeError(
        api::SPAWN_FAILED, "the session's worker ended before it started; try again"));
    static_cast<void>(::send(client.get(), frame.data(), frame.size(), MSG_NOSIGNAL));
    EndSession(session, api::WORKER_CRASHED, "pool worker lost", /*graceful=*/false);
    return;
  }
  StartServing(session, std::move(client));
  RefillPools();
}

void Supervisor::OnPoolWorkerReady(Session& session) {
  if (shutting_down_ || session.state() == Session::State::kEnding) {
    EndSession(session, api::SHUTDOWN, "celld is shutting down", /*graceful=*/false);
    return;
  }
  session.BecomePooled();
  pool_[session.policy->name()].push_back(session.id());
}

void Supervisor::RefillPools() {
  if (shutting_down_ || options_.pool_size == 0 || !zygote_) return;
  std::map<std::string, uint32_t> have;  // ready or starting, per policy
  for (const auto& [id, s] : sessions_) {
    bool for_pool = s.state() == Session::State::kPooled ||
                    (s.pooled && s.state() == Session::State::kSpawning);
    if (for_pool) ++have[s.policy->name()];
  }
  for (const auto& [name, policy] : policies_) {
    // A GPU share is granted per session at admission: such workers cannot be made ahead.
    if (policy->proto().has_gpu()) continue;
    for (uint32_t n = have[name]; n < options_.pool_size; ++n) {
      const policy::IdRange& range = policy->proto().host_uids();
      Result<uint32_t> ids = host_ids_.Allocate(range.first(), range.count(), ipc::kIdsPerSession);
      if (!ids) break;  // the range is in use by sessions: the pool waits
      std::string id(kPoolIdBytes, '\0');
      if (!FillRandom(std::as_writable_bytes(std::span<char>(id.data(), id.size())))) {
        host_ids_.Release(*ids);
        return;
      }
      Session& s = NewSession(id, policy);
      s.host_id_first = *ids;
      s.context_length = policy->proto().budgets().context_length();
      Status spawned = SpawnWorker(s, nullptr, /*pooled=*/true);
      if (!spawned) {
        spdlog::warn("could not start a pool worker for policy {}: {}", name,
                     spawned.error().message());
        ReleaseResources(s);
        sessions_.erase(id);
        SchedulePoolRefill(kPoolRetryNs);
        return;
      }
    }
  }
}

void Supervisor::SchedulePoolRefill(int64_t delay_ns) {
  if (pool_refill_timer_ != 0 || shutting_down_) return;
  pool_refill_timer_ = loop_->AddTimer(clock_.NowNanos() + delay_ns, [this] {
    pool_refill_timer_ = 0;
    RefillPools();
  });
}

void Supervisor::DrainStalePoolWorkers() {
  std::vector<std::string> stale;
  for (const auto& [id, s] : sessions_) {
    if (s.state() != Session::State::kPooled) continue;
    auto current = policies_.find(s.policy->name());
    if (current == policies_.end() || current->second != s.policy) stale.push_back(id);
  }
  for (const std::string& id : stale) {
    if (Session* s = FindSession(id)) {
      EndSession(*s, api::SHUTDOWN, "its policy was reloaded", /*graceful=*/false);
    }
  }
}

}  // namespace cellhouse::supervisor
