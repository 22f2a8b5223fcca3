// Administrative requests (sessions, kill, policies, status, reload), the policy set, the
// systemd status line and the shutdown drain.
#include <signal.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "ipc/messages.h"
#include "ipc/worker_contract.h"
#include "supervisor/supervisor.h"

namespace cellhouse::supervisor {

void LogIfError(const Status& status, std::string_view what) {
  if (!status) spdlog::error("{}: {}", what, status.error().message());
}

bool Supervisor::Owns(const Connection& conn, const Session& session) {
  return session.tenant_uid == conn.peer.uid && session.gateway_tenant == conn.identity.tenant();
}

bool Supervisor::TakeTenantAssertion(Connection& conn, const std::string& tenant) {
  if (!options_.gateway_uid || conn.peer.uid != *options_.gateway_uid) {
    spdlog::warn("uid {} asserted gateway tenant '{}' but is not celld's --gateway-user; refused",
                 conn.peer.uid, policy::ValidGatewayTenant(tenant) ? tenant : "(invalid)");
    metrics_.admission_refusals.Inc({"tenant_assertion"});
    Reply(conn, ipc::MakeError(api::PERMISSION_DENIED,
                               "only celld's --gateway-user may assert a tenant; uid " +
                                   std::to_string(conn.peer.uid) + " is not it"));
    return false;
  }
  if (!policy::ValidGatewayTenant(tenant)) {
    Reply(conn,
          ipc::MakeError(api::INVALID_ARGUMENT, "tenant: expected 1 to 64 of [A-Za-z0-9_.@-]"));
    return false;
  }
  if (!conn.identity.tenant().empty() && conn.identity.tenant() != tenant) {
    Reply(conn, ipc::MakeError(api::PERMISSION_DENIED,
                               "this connection already serves another tenant; a connection "
                               "serves one tenant"));
    return false;
  }
  if (Status st =
          connections_->AssertTenant(conn, Identity::ForGatewayTenant(conn.peer.uid, tenant));
      !st) {
    // The tenant's own share of connections is used up.
    Reply(conn, ipc::MakeError(api::TENANT_LIMIT, st.error().message()));
    return false;
  }
  return true;
}

bool Supervisor::IsAdministrator(const Connection& conn) const {
  const ipc::PeerCredentials& peer = conn.peer;
  if (!conn.identity.tenant().empty()) return false;
  if (peer.uid == 0) return true;
  if (!options_.admin_group) return false;
  gid_t admins = *options_.admin_group;
  return peer.gid == admins ||
         std::find(peer.groups.begin(), peer.groups.end(), admins) != peer.groups.end();
}

void Supervisor::ListSessions(Connection& conn) {
  api::Response response;
  api::SessionList* list = response.mutable_sessions();
  int64_t now = clock_.NowNanos();
  bool all = IsAdministrator(conn);
  for (const auto& [id, s] : sessions_) {
    // A tenant sees its own sessions; an administrator sees all.
    if (!all && !Owns(conn, s)) continue;
    if (!s.VisibleToClients()) continue;
    api::SessionInfo* info = list->add_sessions();
    info->set_session_id(id);
    info->set_tenant_uid(s.tenant_uid);
    info->set_tenant(s.gateway_tenant);
    info->set_policy(s.policy->name());
    info->set_model(s.model);
    info->set_worker_pid(s.worker.pid());
    info->set_age_ms(static_cast<uint64_t>((now - s.created_ns) / kNanosPerMilli));
    info->set_idle_ms(s.attached()
                          ? s.claims.idle_ms
                          : static_cast<uint64_t>((now - s.detached_since_ns()) / kNanosPerMilli));
    info->set_tokens_generated(s.claims.tokens_generated);
    info->set_context_used(s.claims.context_used);
    info->set_attached(s.attached());
    info->set_host_uid(s.host_id_first + ipc::kWorkerInsideUid);
    info->set_shared_executor(s.executor_slot != 0);
    info->set_executor_rows(s.executor_rows);
    info->set_executor_cpu_nanos(s.executor_cpu_ns);
    if (s.cgroup) {
      auto bytes = s.cgroup->MemoryCurrent();
      if (bytes) info->set_memory_bytes(*bytes);
      auto cpu = s.cgroup->CpuUsageNanos();
      if (cpu) info->set_cpu_nanos(*cpu);
    }
  }
  Reply(conn, response);
}

void Supervisor::KillSession(Connection& conn, const api::KillSession& kill) {
  Session* session = FindSession(kill.session_id());
  bool root = conn.peer.uid == 0 && conn.identity.tenant().empty();
  if (session == nullptr || (!root && !Owns(conn, *session)) || !session->VisibleToClients()) {
    Reply(conn, ipc::MakeError(api::NOT_FOUND, "no session " + ipc::IdToHex(kill.session_id()) +
                                                   " visible to " + conn.identity.ToString()));
    return;
  }
  std::string by = Owns(conn, *session) ? "its owner" : "an administrator";
  spdlog::info("session {} killed by {}", ipc::IdToHex(session->id()), conn.identity.ToString());
  EndSession(*session, api::KILLED, "the session was killed by " + by, /*graceful=*/false);
  Reply(conn, ipc::MakeAck("session " + ipc::IdToHex(kill.session_id()) + " killed"));
}

void Supervisor::ListPolicies(Connection& conn) {
  api::Response response;
  api::PolicyList* list = response.mutable_policies();
  // A tenant sees the policies it may use and its own sessions under them, never where another
  // policy's file lives or how busy other tenants are; an administrator sees everything.
  bool all = IsAdministrator(conn);
  std::map<std::string, uint32_t> active;
  for (const auto& [id, s] : sessions_) {
    if (s.state() != Session::State::kRunning) continue;
    if (all || Owns(conn, s)) ++active[s.policy->name()];
  }
  const std::string& tenant = conn.identity.tenant();
  for (const auto& [name, p] : policies_) {
    bool may = tenant.empty() ? p->MayUse(conn.peer.uid, conn.peer.gid, conn.peer.groups)
                              : policy::ChooseTenantPolicy(policies_, name, tenant, conn.peer.uid,
                                                           conn.peer.gid, conn.peer.groups)
                                    .has_value();
    if (!all && !may) continue;
    api::PolicySummary* summary = list->add_policies();
    summary->set_name(name);
    if (all) summary->set_source(p->source());
    summary->set_description(p->proto().description());
    summary->set_context_length(p->proto().budgets().context_length());
    summary->set_memory_max_bytes(p->proto().cgroup().memory_max_bytes());
    summary->set_active_sessions(active[name]);
  }
  Reply(conn, response);
}

Status Supervisor::LoadPolicies() {
  Result<policy::PolicySet> loaded =
      options_.policy_dir.empty() ? policy::BuiltinPolicySet(&model_facts_)
                                  : policy::LoadPolicyDirectory(options_.policy_dir, &model_facts_);
  if (!loaded) return std::move(loaded).error();
  // Running sessions hold their own shared_ptr: they keep the policy they started with.
  policies_ = std::move(*loaded);
  DrainStalePoolWorkers();
  RefillPools();
  std::string names;
  for (const auto& [name, p] : policies_) {
    names += (names.empty() ? "" : ", ") + name;
    for (const std::string& warning : p->warnings()) spdlog::warn("policy {}: {}", name, warning);
  }
  spdlog::info("policies loaded from {}: {}",
               options_.policy_dir.empty() ? std::string("built-in defaults") : options_.policy_dir,
               names);
  return Ok();
}

Status Supervisor::ReloadPolicies() {
  notifier_.Reloading();
  Status loaded = LoadPolicies();
  notifier_.Ready(StatusLine());
  return loaded;
}

void Supervisor::Reload(Connection& conn) {
  if (conn.peer.uid != 0 || !conn.identity.tenant().empty()) {
    Reply(conn, ipc::MakeError(api::PERMISSION_DENIED, "only root may reload policies"));
    return;
  }
  Status st = ReloadPolicies();
  if (!st) {
    spdlog::error("policy reload failed; the old set stays: {}", st.error().message());
    Reply(conn, ipc::MakeError(api::POLICY_INVALID,
                               "reload refused, the previous policies stay in force: " +
                                   st.error().message()));
    return;
  }
  Reply(conn, ipc::MakeAck("reloaded " + std::to_string(policies_.size()) + " policies"));
}

api::ServerStatus Supervisor::TenantStatus(const Connection& conn) const {
  api::ServerStatus status;
  status.set_version(CELLHOUSE_VERSION);
  uint32_t active = 0;
  for (const auto& [id, s] : sessions_) {
    active += s.state() == Session::State::kRunning && Owns(conn, s) ? 1 : 0;
  }
  status.set_sessions_active(active);
  // The policy its opens get when they name none: its models and its limits.
  Result<std::shared_ptr<const policy::CompiledPolicy>> chosen =
      ChoosePolicyFor(policies_, conn, "");
  AddModels(/*everything=*/false, chosen ? chosen->get() : nullptr, status);
  if (chosen) {
    const std::shared_ptr<const policy::CompiledPolicy>& p = *chosen;
    const policy::Budgets& b = p->proto().budgets();
    status.set_policy(p->name());
    status.set_max_new_tokens(b.max_new_tokens());
    status.set_context_length(b.context_length());
    const policy::GatewayLimits& g = p->proto().gateway();
    status.set_gateway_max_body_bytes(g.max_body_bytes());
    status.set_gateway_max_messages(g.max_messages());
    status.set_gateway_max_concurrent_requests(g.max_concurrent_requests());
    status.set_gateway_max_idle_sessions(g.max_idle_sessions());
    status.set_gateway_max_idle_sessions_set(g.has_max_idle_sessions());
  }
  return status;
}

void Supervisor::AddModels(bool everything, const policy::CompiledPolicy* policy,
                           api::ServerStatus& status) const {
  auto visible = [&](const std::string& name) {
    return everything || (policy != nullptr && policy->AllowsModel(name));
  };
  for (const auto& [name, model] : models_) {
    if (!model.zygote) continue;
    const zygote::ZygoteReady& ready = model.zygote->ready();
    if (name == default_model_) status.set_model(ready.model_description());
    if (!visible(name)) continue;
    api::ModelStatus& m = *status.add_models();
    m.set_name(name);
    m.set_description(ready.model_description());
    m.set_weights_bytes(ready.weights_bytes());
    m.set_context_length(ready.seq_len());
    m.set_is_default(name == default_model_);
  }
  status.set_weights_bytes(WeightsMappedBytes());
}

api::ServerStatus Supervisor::StatusSnapshot() const {
  api::ServerStatus status;
  status.set_full_view(true);
  status.set_version(CELLHOUSE_VERSION);
  uint32_t active = 0;
  for (const auto& [id, s] : sessions_) active += s.state() == Session::State::kRunning ? 1 : 0;
  status.set_sessions_active(active);
  status.set_sessions_admitted(sessions_admitted_);
  status.set_sessions_refused(sessions_refused_);
  if (admission_) {
    status.set_memory_budget_bytes(admission_->config().memory_budget_bytes);
    status.set_memory_committed_bytes(admission_->committed_bytes());
  }
  if (cgroups_) status.set_cgroup_driver(cgroups_->Describe());
  AddModels(/*everything=*/true, nullptr, status);
  status.set_weights_resident_bytes(WeightsResidentBytes());
  return status;
}

void Supervisor::ServerStatusRequest(Connection& conn) {
  api::Response response;
  *response.mutable_status() = IsAdministrator(conn) ? StatusSnapshot() : TenantStatus(conn);
  Reply(conn, response);
}

std::string Supervisor::StatusLine() const {
  api::ServerStatus s = StatusSnapshot();
  return std::to_string(s.sessions_active()) + " sessions active, " +
         std::to_string(s.sessions_admitted()) + " admitted, " +
         std::to_string(s.sessions_refused()) + " refused";
}

void Supervisor::UpdateNotifyStatus() { notifier_.Status(StatusLine()); }

void Supervisor::BeginShutdown(const std::string& why) {
  if (shutting_down_) return;
  shutting_down_ = true;
  size_t live = 0;
  for (const auto& [id, s] : sessions_) live += s.token.empty() ? 0 : 1;  // not pool workers
  spdlog::info("shutting down ({}): {} session(s) to drain", why, live);
  notifier_.Stopping("draining " + std::to_string(live) + " sessions");
  connections_->CloseListeners();
  // The socket file celld bound itself goes with it (one systemd passed is systemd's).
  if (own_socket_) {
    LogIfError(ipc::RemoveSocketFile(*own_socket_), "removing the client socket");
    own_socket_.reset();
  }
  connections_->ReplyToAllAndClose(ipc::MakeError(api::SHUTTING_DOWN, "celld is shutting down"));
  // Idle sessions end now; a running generation may finish within the grace period.
  for (auto& [id, s] : sessions_) {
    if ((s.state() == Session::State::kRunning && !s.claims.generating) ||
        s.state() == Session::State::kPooled) {
      EndSession(s, api::SHUTDOWN, "celld is shutting down", /*graceful=*/true);
    }
  }
  if (pool_refill_timer_ != 0) loop_->CancelTimer(pool_refill_timer_);
  pool_refill_timer_ = 0;
  shutdown_timer_ =
      loop_->AddTimer(clock_.NowNanos() + options_.shutdown_grace_ms * kNanosPerMilli, [this] {
        shutdown_timer_ = 0;
        for (auto& [id, s] : sessions_) {
          if (s.state() != Session::State::kEnding || !s.requested_end()) {
            EndSession(s, api::SHUTDOWN, "celld is shutting down (grace period over)",
                       /*graceful=*/true);
          }
        }
      });
  CheckShutdownComplete();
}

void Supervisor::CheckShutdownComplete() {
  if (!shutting_down_ || finished_ || !sessions_.empty() || !pending_spawns_.empty()) return;
  if (shutdown_timer_ != 0) loop_->CancelTimer(shutdown_timer_);
  shutdown_timer_ = 0;
  StopZygotes();
  if (cgroups_) LogIfError(cgroups_->Shutdown(), "removing cgroups at shutdown");
  spdlog::info("shutdown complete");
  finished_ = true;
}

}  // namespace cellhouse::supervisor
