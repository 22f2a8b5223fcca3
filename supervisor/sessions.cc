// A session's life in celld: open (choose a policy, admit, place on a pooled or a new worker),
// the zygote's reply, hand-off of the client connection, the worker's control messages, its end.
// The Session object (session.h) owns its timers and state changes; this file decides when.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <variant>

#include <spdlog/spdlog.h>

#include "base/io.h"
#include "base/random.h"
#include "base/strings.h"
#include "ipc/messages.h"
#include "ipc/packet.h"
#include "ipc/worker_contract.h"
#include "supervisor/logging.h"
#include "supervisor/outcome.h"
#include "supervisor/sandbox_spec.h"
#include "supervisor/supervisor.h"

namespace cellhouse::supervisor {
namespace {

constexpr size_t kSessionIdBytes = 16;
constexpr size_t kTokenBytes = 32;
// A worker that sends more control messages than this per second is flooding.
constexpr uint32_t kMaxWorkerMessagesPerSecond = 2000;
// How long a SIGSYS end waits for the kernel's audit record before it is recorded without it.
constexpr int64_t kAuditWaitNs = 200 * kNanosPerMilli;

// Constant-time comparison: the time taken does not tell how much of a token matched.
bool SameSecret(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = static_cast<unsigned char>(diff | (a[i] ^ b[i]));
  }
  return diff == 0;
}

// The `reason` label of cellhouse_admission_refusals_total.
std::string RefusalLabel(resources::RefusedBy limit) {
  switch (limit) {
    case resources::RefusedBy::kSessions:
      return "sessions";
    case resources::RefusedBy::kTenantSessions:
      return "tenant_sessions";
    case resources::RefusedBy::kPolicySessions:
      return "policy_sessions";
    case resources::RefusedBy::kPolicyTenantSessions:
      return "policy_tenant_sessions";
    case resources::RefusedBy::kMemoryBudget:
      return "memory_budget";
    case resources::RefusedBy::kNoGpu:
      return "no_gpu";
    case resources::RefusedBy::kGpuShare:
      return "gpu_share";
    case resources::RefusedBy::kInvalidRequest:
      break;
  }
  return "invalid";
}

std::string Seconds(int64_t nanos) {
  char buf[32];
  static_cast<void>(std::snprintf(buf, sizeof(buf), "%.1fs", static_cast<double>(nanos) / 1e9));
  return buf;
}

// Why an open is refused: the error its client gets, and the label it is counted under in
// cellhouse_admission_refusals_total ("" when it is not an admission refusal).
struct OpenRefusal {
  api::ErrorCode code;
  std::string message;
  std::string label;
};

// The first step of an open: the policy the caller may use, and the context it asks for.
struct OpenChoice {
  std::shared_ptr<const policy::CompiledPolicy> policy;
  uint32_t context = 0;
};

std::variant<OpenChoice, OpenRefusal> ChooseForOpen(const policy::PolicySet& policies,
                                                    const Connection& conn,
                                                    const api::OpenSession& open) {
  Result<std::shared_ptr<const policy::CompiledPolicy>> chosen =
      ChoosePolicyFor(policies, conn, open.policy());
  if (!chosen) {
    bool unknown = !open.policy().empty() && policies.count(open.policy()) == 0;
    return OpenRefusal{unknown ? api::UNKNOWN_POLICY : api::PERMISSION_DENIED,
                       chosen.error().message(), unknown ? "unknown_policy" : "permission"};
  }
  const policy::Budgets& budgets = (*chosen)->proto().budgets();
  uint32_t context = open.max_context() != 0 ? open.max_context() : budgets.context_length();
  if (context > budgets.context_length()) {
    return OpenRefusal{api::INVALID_ARGUMENT,
                       "max_context " + std::to_string(context) + " is above policy '" +
                           (*chosen)->name() + "''s context length of " +
                           std::to_string(budgets.context_length()),
                       ""};
  }
  return OpenChoice{*chosen, context};
}

// Which served model: the one the open names (or the default), if it exists and the policy
// allows it; the context is capped by what that model can attend to.
std::variant<const ServedModel*, OpenRefusal> ChooseModel(
    const std::map<std::string, ServedModel>& models, const std::string& default_model,
    const api::OpenSession& open, OpenChoice& choice) {
  const std::string& name = open.model().empty() ? default_model : open.model();
  auto it = models.find(name);
  if (it == models.end() || !choice.policy->AllowsModel(name)) {
    std::string served;
    for (const auto& [n, m] : models) {
      if (!choice.policy->AllowsModel(n)) continue;
      served += (served.empty() ? "" : ", ") + n;
    }
    // A name is echoed only when it is a valid one: it came from the client.
    std::string what = policy::ValidModelName(name) ? "model '" + name + "'" : "that model name";
    return OpenRefusal{
        api::UNKNOWN_MODEL,
        (it == models.end() ? "celld serves no " + what
                            : "policy '" + choice.policy->name() + "' does not allow " + what) +
            (served.empty() ? std::string("; it allows no model") : "; it may use: " + served),
        "unknown_model"};
  }
  const uint32_t longest = it->second.facts.seq_len;
  if (open.max_context() > longest) {
    return OpenRefusal{api::INVALID_ARGUMENT,
                       "max_context " + std::to_string(open.max_context()) + " is above model '" +
                           name + "''s context length of " + std::to_string(longest),
                       ""};
  }
  if (longest != 0) choice.context = std::min(choice.context, longest);
  return &it->second;
}

// The second step: admission (worst-case memory, session caps, GPU share). Never a queue: a
// refusal is immediate.
std::variant<resources::Grant, OpenRefusal> AdmitOpen(resources::Admission& admission,
                                                      const policy::ModelFacts& facts,
                                                      const Identity& tenant,
                                                      const OpenChoice& choice) {
  const policy::Policy& p = choice.policy->proto();
  resources::AdmissionRequest request;
  request.tenant_uid = tenant.uid();
  request.gateway_tenant = tenant.tenant();
  request.policy = choice.policy->name();
  request.worst_case_bytes = choice.policy->WorstCaseSessionBytes(facts, choice.context);
  request.policy_max_sessions = p.budgets().max_sessions();
  request.policy_max_sessions_per_tenant = p.budgets().max_sessions_per_tenant();
  if (p.has_gpu()) {
    request.gpu = resources::GpuRequest{p.gpu().compute_fraction(), p.gpu().device_memory_bytes()};
  }
  resources::Decision decision = admission.Admit(request);
  if (const auto* no = std::get_if<resources::Refusal>(&decision)) {
    bool own_share = no->limit == resources::RefusedBy::kTenantSessions ||
                     no->limit == resources::RefusedBy::kPolicyTenantSessions;
    return OpenRefusal{own_share ? api::TENANT_LIMIT : api::ADMISSION_REFUSED, no->message,
                       RefusalLabel(no->limit)};
  }
  return std::get<resources::Grant>(std::move(decision));
}

SessionLogFields LogFieldsOf(const Session& session, std::string outcome = "") {
  return {.session_id = ipc::IdToHex(session.id()),
          .tenant_uid = session.tenant_uid,
          .policy = session.policy->name(),
          .outcome = std::move(outcome)};
}

}  // namespace

Result<std::shared_ptr<const policy::CompiledPolicy>> ChoosePolicyFor(
    const policy::PolicySet& policies, const Connection& conn, const std::string& name) {
  const ipc::PeerCredentials& peer = conn.peer;
  const std::string& tenant = conn.identity.tenant();
  return tenant.empty()
             ? policy::ChoosePolicy(policies, name, peer.uid, peer.gid, peer.groups)
             : policy::ChooseTenantPolicy(policies, name, tenant, peer.uid, peer.gid, peer.groups);
}

resources::WorkerGpuView Supervisor::GpuViewFor(const resources::GpuGrant& grant) const {
  std::vector<cgroup::DeviceMemoryRegion> regions;
  if (cgroups_) {
    auto found = cgroups_->DeviceMemoryRegions();
    if (found) regions = std::move(*found);
  }
  for (const resources::GpuDevice& device : admission_->gpus().inventory().devices) {
    if (device.index == grant.device_index) {
      return resources::MakeWorkerGpuView(device, grant, regions, {});
    }
  }
  return {};
}

Session* Supervisor::FindSession(const std::string& id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

Session& Supervisor::NewSession(const std::string& id,
                                const std::shared_ptr<const policy::CompiledPolicy>& policy) {
  return sessions_.try_emplace(id, id, next_session_number_++, policy, *loop_, clock_.NowNanos())
      .first->second;
}

// Choose → admit → place; each refusal answers the opener at once.
void Supervisor::OpenSession(Connection& conn, const api::OpenSession& open) {
  auto refuse = [&](const OpenRefusal& no) {
    if (!no.label.empty()) metrics_.admission_refusals.Inc({no.label});
    Reply(conn, ipc::MakeError(no.code, no.message));
  };
  if (shutting_down_) {
    refuse({api::SHUTTING_DOWN, "celld is shutting down and takes no new sessions", "shutdown"});
    return;
  }
  std::variant<OpenChoice, OpenRefusal> chosen = ChooseForOpen(policies_, conn, open);
  if (const auto* no = std::get_if<OpenRefusal>(&chosen)) {
    refuse(*no);
    return;
  }
  OpenChoice choice = std::get<OpenChoice>(std::move(chosen));
  std::variant<const ServedModel*, OpenRefusal> model =
      ChooseModel(models_, default_model_, open, choice);
  if (const auto* no = std::get_if<OpenRefusal>(&model)) {
    refuse(*no);
    return;
  }
  const ServedModel& served = *std::get<const ServedModel*>(model);
  // The session's secrets before anything is reserved: without unpredictable ones no session may
  // start, and nothing would need undoing.
  Result<std::string> new_id = RandomBytes(kSessionIdBytes);
  Result<std::string> token = RandomBytes(kTokenBytes);
  if (!new_id || !token) {
    const Error& why = !new_id ? new_id.error() : token.error();
    spdlog::error("no random bytes for a session id: {}", why.message());
    refuse({api::INTERNAL, "celld could not draw a random session id (" + why.message() + ")",
            "random"});
    return;
  }
  std::variant<resources::Grant, OpenRefusal> admitted =
      AdmitOpen(*admission_, served.facts, conn.identity, choice);
  if (const auto* no = std::get_if<OpenRefusal>(&admitted)) {
    ++sessions_refused_;
    refuse(*no);
    return;
  }
  ++sessions_admitted_;
  PlaceSession(conn, choice.policy, served.spec.name, choice.context,
               std::get<resources::Grant>(std::move(admitted)),
               SessionSecrets{std::move(*new_id), std::move(*token)});
}

// The third step: a pooled worker (already sandboxed and in its cgroup: the fast path), or a
// new one from the zygote.
void Supervisor::PlaceSession(Connection& conn,
                              const std::shared_ptr<const policy::CompiledPolicy>& policy,
                              const std::string& model, uint32_t context, resources::Grant grant,
                              SessionSecrets secrets) {
  // The pools hold the default model's workers.
  Session* pooled = model == default_model_ ? TakePooledWorker(*policy) : nullptr;
  if (pooled != nullptr) {
    AssignPooledWorker(*pooled, conn, grant, context, std::move(secrets.token));
    return;
  }
  const policy::Policy& p = policy->proto();
  Result<uint32_t> host_ids =
      host_ids_.Allocate(p.host_uids().first(), p.host_uids().count(), ipc::kIdsPerSession);
  if (!host_ids) {
    LogIfError(admission_->Release(grant.ticket), "admission");
    metrics_.admission_refusals.Inc({"host_ids"});
    Reply(conn, ipc::MakeError(api::ADMISSION_REFUSED, host_ids.error().message()));
    return;
  }
  std::string id = std::move(secrets.id);
  Session& session = NewSession(id, policy);
  session.model = model;
  session.host_id_first = *host_ids;
  BindTenant(session, conn, grant, context, std::move(secrets.token));
  session.opener_connection = conn.id;
  std::optional<resources::WorkerGpuView> gpu_view;
  if (session.grant->gpu) gpu_view = GpuViewFor(*session.grant->gpu);
  Status spawned = SpawnWorker(session, gpu_view ? &*gpu_view : nullptr, /*pooled=*/false);
  if (!spawned) {
    spdlog::error("session {}: {}", ipc::IdToHex(id), spawned.error().message());
    metrics_.admission_refusals.Inc({"spawn_failed"});
    Reply(conn, ipc::MakeError(api::SPAWN_FAILED,
                               "the session could not start: " + spawned.error().message()));
    ReleaseResources(session);
    sessions_.erase(id);
    return;
  }
  // Until the hand-off celld must not read from the client: what it sends next belongs to the
  // worker.
  connections_->WaitForSession(conn);
}

void Supervisor::BindTenant(Session& session, const Connection& conn, resources::Grant grant,
                            uint32_t context, std::string token) {
  session.token = std::move(token);
  session.tenant_uid = conn.peer.uid;
  session.gateway_tenant = conn.identity.tenant();
  session.tenant_gid = conn.peer.gid;
  session.context_length = context;
  session.grant = grant;
  session.opened_ns = conn.accepted_ns;
}

Status Supervisor::SpawnWorker(Session& session, const resources::WorkerGpuView* gpu, bool pooled) {
  const policy::Policy& p = session.policy->proto();
  std::vector<int> placement_fds;
  zygote::SandboxSpec::CgroupPlacement placement = zygote::SandboxSpec::CGROUP_NONE;
  if (cgroups_) {
    // Named by number: a cgroup's path shows in /proc/PID/cgroup to anyone, the id is a secret.
    Result<cgroup::SessionCgroup> cg =
        cgroups_->CreateSession(std::to_string(session.number()), CgroupLimitsFor(p, gpu));
    if (!cg) return std::move(cg).error().Context("creating its cgroup");
    session.cgroup.emplace(std::move(*cg));
    placement_fds = session.cgroup->placement().RawFds();
    placement = session.cgroup->placement().kind == cgroup::Placement::Kind::kCloneIntoCgroup
                    ? zygote::SandboxSpec::CGROUP_V2
                    : zygote::SandboxSpec::CGROUP_V1;
  }
  CH_ASSIGN_OR_RETURN(FdPair control, MakeSocketPair(SOCK_SEQPACKET));
  zygote::SpawnRequest spawn;
  spawn.set_request_id(next_spawn_request_++);
  spawn.set_session_id(session.id());
  spawn.set_pooled(pooled);
  *spawn.mutable_sandbox() =
      BuildSandboxSpec(*session.policy, session.host_id_first, placement, gpu, options_.sandbox);
  if (!pooled) *spawn.mutable_limits() = LimitsFor(session);
  session.executor_slot = ReserveExecutorSlot(session);
  spawn.set_executor_slot(session.executor_slot);
  std::vector<int> fds = {control.second.get()};
  fds.insert(fds.end(), placement_fds.begin(), placement_fds.end());
  auto served = models_.find(session.model);
  if (served == models_.end() || !served->second.zygote) {
    return Error("the zygote of model '" + session.model + "' is not running");
  }
  Status sent = served->second.zygote->SendSpawn(spawn, fds);
  if (!sent) {
    ReleaseExecutorSlot(session, /*worker_had_it=*/false);
    return std::move(sent).error().Context("asking the zygote");
  }
  session.control = std::move(control.first);
  session.spawn_request_id = spawn.request_id();
  session.pooled = pooled;
  pending_spawns_[spawn.request_id()] = session.id();
  return Ok();
}

zygote::SessionLimits Supervisor::LimitsFor(const Session& session) const {
  const policy::Budgets& b = session.policy->proto().budgets();
  zygote::SessionLimits limits;
  limits.set_context_length(session.context_length);
  limits.set_max_new_tokens(b.max_new_tokens());
  limits.set_heartbeat_interval_ms(static_cast<uint64_t>(options_.heartbeat_interval_ms));
  limits.set_idle_timeout_ms(b.idle_timeout_seconds() * 1000);
  const policy::Chat& chat = session.policy->proto().chat();
  limits.set_chat_template(chat.chat_template());
  limits.set_drop_oldest_messages(chat.context_overflow() == policy::Chat::DROP_OLDEST_MESSAGES);
  return limits;
}

void Supervisor::OnZygoteReadable(const std::string& model) {
  auto served = models_.find(model);
  if (served == models_.end() || !served->second.zygote) return;
  ZygoteProcess& zygote = *served->second.zygote;
  for (;;) {
    auto reply = zygote.ReceiveReply();
    if (!reply) {
      spdlog::error("zygote channel of model {}: {}", model, reply.error().message());
      OnZygoteExit(model);
      return;
    }
    if (reply->would_block) return;
    if (reply->end_of_stream) {
      loop_->Remove(zygote.channel_fd());
      return;
    }
    OnSpawnReply(model, reply->message, std::move(reply->fds));
  }
}

void Supervisor::OnSpawnReply(const std::string& model, const zygote::SpawnReply& reply,
                              std::vector<UniqueFd> fds) {
  if (auto ex = pending_executor_spawns_.find(reply.request_id());
      ex != pending_executor_spawns_.end() && ex->second == model) {
    pending_executor_spawns_.erase(ex);
    OnExecutorSpawned(model, reply, std::move(fds));
    return;
  }
  auto pending = pending_spawns_.find(reply.request_id());
  const Session* asked = pending == pending_spawns_.end() ? nullptr : FindSession(pending->second);
  // A zygote answers only what was asked of it, never another model's requests.
  if (asked == nullptr || asked->model != model) {
    spdlog::error("zygote of model {} answered unknown spawn request {}", model,
                  reply.request_id());
    return;
  }
  std::string id = pending->second;
  pending_spawns_.erase(pending);
  Session* session = FindSession(id);
  if (session == nullptr) return;
  UniqueFd pidfd = fds.empty() ? UniqueFd() : std::move(fds[0]);
  pid_t pid = reply.has_spawned() ? reply.spawned().pid() : -1;
  if (pidfd.valid()) session->worker = ChildProcess(pid, std::move(pidfd));
  // A worker the zygote gave no slot (no executor running, or the hand-off failed) computes
  // alone; the executor never heard of its id.
  if (!reply.has_spawned() || !reply.spawned().executor_slot()) {
    ReleaseExecutorSlot(*session, /*worker_had_it=*/false);
  } else {
    TrackExecutorSlot(*session);
  }

  if (!reply.has_spawned()) {
    std::string why =
        reply.failed().message().empty() ? "the zygote gave no reason" : reply.failed().message();
    session->FailSetup(why);
    if (Connection* opener = FindConnection(session->opener_connection)) {
      Reply(*opener, ipc::MakeError(api::SPAWN_FAILED, "the session could not start: " + why),
            /*then_close=*/true);
    }
    session->opener_connection = 0;
    if (!session->pooled) metrics_.admission_refusals.Inc({"spawn_failed"});
    if (session->pooled) SchedulePoolRefill(kPoolRetryNs);
    if (session->worker.valid()) {
      // Reap it when it is gone (it exits right after reporting the step).
      LogIfError(
          loop_->Add(session->worker.pidfd(), EPOLLIN, [this, id](uint32_t) { OnWorkerExit(id); }),
          "watching a worker");
    } else {
      FinalizeSession(id);
    }
    return;
  }

  by_pid_[pid] = id;
  LogIfError(
      loop_->Add(session->worker.pidfd(), EPOLLIN, [this, id](uint32_t) { OnWorkerExit(id); }),
      "watching a worker");
  LogIfError(
      loop_->Add(session->control.get(), EPOLLIN, [this, id](uint32_t) { OnControlReadable(id); }),
      "watching a control channel");
  if (reply.spawned().timings_size() > 0) {
    std::string steps;
    for (const zygote::StepTiming& t : reply.spawned().timings()) {
      steps += " " + t.step() + "=" + std::to_string(t.micros()) + "us";
    }
    spdlog::debug("worker pid {} sandbox steps:{}", pid, steps);
  }
  if (session->pooled && PooledWithoutSlot(*session)) {
    EndSession(*session, api::SHUTDOWN, "replaced by a worker with an executor slot", false);
    return;
  }
  if (session->pooled) {
    OnPoolWorkerReady(*session);
    return;
  }
  if (session->state() == Session::State::kEnding) {  // ended while it started (shutdown)
    EndSession(*session, *session->requested_end(), session->requested_reason(), false);
    return;
  }
  Connection* opener = FindConnection(session->opener_connection);
  UniqueFd client = opener != nullptr ? ReleaseConnection(opener->id) : UniqueFd();
  session->opener_connection = 0;
  StartServing(*session, std::move(client));
}

void Supervisor::StartServing(Session& session, UniqueFd client) {
  const std::string id = session.id();
  const policy::Budgets& budgets = session.policy->proto().budgets();
  session.StartRunning(clock_.NowNanos());
  metrics_.sessions_started.Inc({session.policy->name()});
  metrics_.open_latency.Observe(static_cast<double>(clock_.NowNanos() - session.opened_ns) / 1e9);
  ArmHeartbeatTimer(session);
  if (budgets.max_lifetime_seconds() > 0) {
    session.lifetime_timer.Arm(
        session.running_since_ns +
            static_cast<int64_t>(budgets.max_lifetime_seconds()) * kNanosPerSecond,
        [this, id] {
          if (Session* s = FindSession(id)) {
            EndSession(*s, api::LIFETIME_EXCEEDED,
                       "the session reached its policy's maximum lifetime", /*graceful=*/true);
          }
        });
  }
  LogSession(spdlog::level::info, LogFieldsOf(session),
             "session " + ipc::IdToHex(id) + " started: tenant uid " +
                 std::to_string(session.tenant_uid) + ", policy " + session.policy->name() +
                 ", worker pid " + std::to_string(session.worker.pid()) + ", host uid " +
                 std::to_string(session.host_id_first + ipc::kWorkerInsideUid) +
                 (session.pooled ? " (pooled)" : ""));
  if (!client.valid()) {
    // The opener went away while the worker started: nobody will use it.
    EndSession(session, api::CLOSED, "the client left before the session started",
               /*graceful=*/false);
    return;
  }
  api::Response opened;
  api::SessionOpened* o = opened.mutable_opened();
  o->set_session_id(id);
  o->set_token(session.token);
  o->set_policy(session.policy->name());
  o->set_model(session.model);
  o->set_context_length(session.context_length);
  o->set_max_new_tokens(budgets.max_new_tokens());
  o->set_idle_timeout_ms(budgets.idle_timeout_seconds() * 1000);
  o->set_detached_grace_ms(budgets.detached_grace_seconds() * 1000);
  // The socket buffer of a fresh connection is empty: this small write goes through whole. It
  // must precede the hand-off so the client reads SessionOpened before the worker's Ready.
  std::string frame = ipc::EncodeFrame(opened);
  if (::send(client.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
      static_cast<ssize_t>(frame.size())) {
    EndSession(session, api::CLOSED, "the client left before the session started",
               /*graceful=*/false);
    return;
  }
  HandOff(session, std::move(client), /*reattach=*/false);
}

void Supervisor::HandOff(Session& session, UniqueFd client, bool reattach) {
  UniqueFd dup(::fcntl(client.get(), F_DUPFD_CLOEXEC, 0));
  control::SupervisorMessage attach;
  attach.mutable_attach_client()->set_reattach(reattach);
  int fd = client.get();
  Status sent = ipc::SendMessage(session.control.get(), attach, std::span<const int>(&fd, 1));
  if (!sent) {
    EndSession(session, api::WORKER_CRASHED,
               "the worker could not take the connection: " + sent.error().message(),
               /*graceful=*/false);
    return;
  }
  session.client_dup = std::move(dup);
  session.MarkAttached();
}

void Supervisor::AttachSession(Connection& conn, const api::AttachSession& attach) {
  Session* session = FindSession(attach.session_id());
  // One answer for "no such id", "not yours" and "wrong token": ids are secrets too, and the
  // reply must not tell another uid that a session exists.
  if (session == nullptr || !Owns(conn, *session) || !SameSecret(session->token, attach.token()) ||
      session->state() != Session::State::kRunning) {
    Reply(conn, ipc::MakeError(api::NOT_FOUND,
                               "no running session " + ipc::IdToHex(attach.session_id()) +
                                   " with that token belongs to " + conn.identity.ToString()));
    return;
  }
  UniqueFd client = ReleaseConnection(conn.id);
  session->client_dup.reset();  // the old connection, if any: the worker drops it too
  HandOff(*session, std::move(client), /*reattach=*/true);
  LogSession(spdlog::level::info, LogFieldsOf(*session),
             "session " + ipc::IdToHex(session->id()) + " re-attached by uid " +
                 std::to_string(session->tenant_uid));
}

void Supervisor::ArmHeartbeatTimer(Session& session) {
  std::string id = session.id();
  session.heartbeat_timer.Arm(
      session.last_heard_ns + options_.worker_timeout_ms * kNanosPerMilli, [this, id] {
        Session* s = FindSession(id);
        if (s == nullptr || s->state() != Session::State::kRunning) return;
        if (clock_.NowNanos() - s->last_heard_ns >= options_.worker_timeout_ms * kNanosPerMilli) {
          EndSession(*s, api::UNRESPONSIVE,
                     "the session's worker stopped answering for " +
                         std::to_string(options_.worker_timeout_ms) + " ms",
                     /*graceful=*/false);
          return;
        }
        ArmHeartbeatTimer(*s);
      });
}

void Supervisor::OnControlReadable(const std::string& id) {
  Session* session = FindSession(id);
  if (session == nullptr) return;
  // Bounded per wake-up so one worker cannot monopolise the loop.
  for (int i = 0; i < 64; ++i) {
    auto received = ipc::ReceiveMessage<control::WorkerMessage>(
        session->control.get(),
        {.max_bytes = size_t{64} * 1024, .max_fds = 0, .nonblocking = true});
    if (!received) {
      EndSession(*session, api::PROTOCOL_VIOLATION,
                 "the worker sent an invalid control message: " + received.error().message(),
                 /*graceful=*/false);
      return;
    }
    if (received->would_block) return;
    if (received->end_of_stream) {
      // The worker is ending; its pidfd reports how.
      loop_->Remove(session->control.get());
      return;
    }
    int64_t now = clock_.NowNanos();
    if (now - session->message_window_start_ns >= kNanosPerSecond) {
      session->message_window_start_ns = now;
      session->messages_this_second = 0;
    }
    if (++session->messages_this_second > kMaxWorkerMessagesPerSecond) {
      EndSession(*session, api::PROTOCOL_VIOLATION, "the worker flooded its control channel",
                 /*graceful=*/false);
      return;
    }
    session->last_heard_ns = now;
    OnWorkerMessage(*session, received->message);
    session = FindSession(id);
    if (session == nullptr || session->state() != Session::State::kRunning) return;
  }
}

void Supervisor::OnWorkerMessage(Session& session, const control::WorkerMessage& message) {
  const uint32_t max_new = session.policy->proto().budgets().max_new_tokens();
  switch (message.kind_case()) {
    case control::WorkerMessage::kHello:
      // A pool worker says hello before it serves anyone; a session's, for its context.
      if (!session.token.empty() && message.hello().context_length() != session.context_length) {
        EndSession(session, api::PROTOCOL_VIOLATION,
                   "the worker holds a context of " +
                       std::to_string(message.hello().context_length()) + " tokens, not the " +
                       std::to_string(session.context_length) + " it was given",
                   /*graceful=*/false);
      }
      return;
    case control::WorkerMessage::kHeartbeat: {
      const control::Heartbeat& h = message.heartbeat();
      auto served = models_.find(session.model);
      const uint64_t kv_per_token = served != models_.end()
                                        ? served->second.facts.kv_bytes_per_token
                                        : model_facts_.kv_bytes_per_token;
      // Claims that cannot be true end the session: a worker that lies is not believed.
      if (h.context_used() > session.context_length ||
          h.tokens_generated() < session.claims.tokens_generated ||
          h.kv_bytes_in_use() > uint64_t{session.context_length} * kv_per_token) {
        metrics_.worker_reports_dropped.Inc({"heartbeat"});
        EndSession(session, api::PROTOCOL_VIOLATION, "the worker reported impossible usage",
                   /*graceful=*/false);
        return;
      }
      session.claims = {.tokens_generated = h.tokens_generated(),
                        .context_used = h.context_used(),
                        .kv_bytes_in_use = h.kv_bytes_in_use(),
                        .generating = h.generating(),
                        .idle_ms = h.idle_ms()};
      return;
    }
    case control::WorkerMessage::kReport: {
      const control::GenerationReport& r = message.report();
      if (r.inter_token_us_size() > 4096 || r.generated_tokens() > max_new) {
        metrics_.worker_reports_dropped.Inc({"report"});
        EndSession(session, api::PROTOCOL_VIOLATION, "the worker reported an impossible generation",
                   /*graceful=*/false);
        return;
      }
      session.claims.generating = false;
      metrics_.tokens_generated.Inc({session.policy->name()}, r.generated_tokens());
      if (r.generated_tokens() > 0) {
        metrics_.time_to_first_token.Observe(static_cast<double>(r.time_to_first_token_us()) / 1e6);
      }
      for (uint32_t us : r.inter_token_us()) {
        metrics_.inter_token_latency.Observe(static_cast<double>(us) / 1e6);
      }
      if (shutting_down_) {
        EndSession(session, api::SHUTDOWN, "celld is shutting down", /*graceful=*/true);
      }
      return;
    }
    case control::WorkerMessage::kDetached:
      OnClientDetached(session);
      return;
    case control::WorkerMessage::KIND_NOT_SET:
      break;
  }
}

// The worker let go of the connection (the client left, `cellctl open` detached on purpose, or
// it sent garbage): celld lets go of its copy too, so the client sees the connection close, and
// the session waits its policy's detached grace for a re-attach. It does not hold its tenant's
// quota slot for the whole idle timeout.
void Supervisor::OnClientDetached(Session& session) {
  session.client_dup.reset();
  session.MarkDetached(clock_.NowNanos());
  if (shutting_down_) {
    EndSession(session, api::SHUTDOWN, "celld is shutting down", /*graceful=*/true);
    return;
  }
  const uint64_t grace = session.policy->proto().budgets().detached_grace_seconds();
  std::string id = session.id();
  session.detach_timer.Arm(
      session.detached_since_ns() + static_cast<int64_t>(grace) * kNanosPerSecond, [this, id] {
        if (Session* s = FindSession(id)) {
          EndSession(*s, api::IDLE_TIMEOUT,
                     "nobody re-attached within the session's detached grace of " +
                         std::to_string(s->policy->proto().budgets().detached_grace_seconds()) +
                         " s",
                     /*graceful=*/true);
        }
      });
}

void Supervisor::EndSession(Session& session, api::SessionOutcome outcome,
                            const std::string& reason, bool graceful) {
  session.BeginEnding(outcome, reason);
  if (!session.worker.valid()) return;  // still spawning: the reply will find it ending
  if (graceful && session.control.valid() && !session.kill_timer.armed()) {
    // The reason the session ends (the first given) goes to the worker, which tells a client
    // whose generation it cuts off, instead of a Done.
    control::SupervisorMessage stop;
    stop.mutable_stop()->set_reason(session.requested_reason());
    stop.mutable_stop()->set_outcome(static_cast<uint32_t>(*session.requested_end()));
    if (ipc::SendMessage(session.control.get(), stop)) {
      std::string id = session.id();
      session.kill_timer.Arm(clock_.NowNanos() + options_.stop_grace_ms * kNanosPerMilli,
                             [this, id] {
                               if (Session* s = FindSession(id)) {
                                 LogIfError(s->worker.Kill(SIGKILL), "session bookkeeping");
                               }
                             });
      return;
    }
  }
  if (graceful && session.kill_timer.armed()) return;  // stopping already, within its grace
  Status killed = session.worker.Kill(SIGKILL);
  if (!killed) {
    spdlog::error("session {}: {}", ipc::IdToHex(session.id()), killed.error().message());
  }
}

void Supervisor::OnAuditReadable() {
  for (const SeccompRecord& record : audit_->Drain()) {
    auto it = by_pid_.find(record.pid);
    if (it == by_pid_.end()) continue;  // not one of our workers
    Session* session = FindSession(it->second);
    if (session != nullptr && !session->seccomp_syscall) {
      session->seccomp_syscall = record.syscall_name;
    }
  }
}

void Supervisor::OnWorkerExit(const std::string& id) {
  Session* session = FindSession(id);
  if (session == nullptr || !session->worker.valid() || session->worker.reaped()) return;
  Result<std::optional<ExitStatus>> status = session->worker.TryReap();
  if (!status) {
    spdlog::error("session {}: {}", ipc::IdToHex(id), status.error().message());
    return;
  }
  if (!status->has_value()) return;  // spurious wake-up
  session->exit_status = **status;
  loop_->Remove(session->worker.pidfd());
  // What the worker sent just before it ended (its last generation report) is still queued.
  if (session->control.valid() && loop_->Watching(session->control.get())) {
    OnControlReadable(id);
    session = FindSession(id);
    if (session == nullptr) return;
  }
  if (session->control.valid()) loop_->Remove(session->control.get());
  const ExitStatus& st = **status;
  if (st.kind == ExitStatus::Kind::kSignaled && st.signal == SIGSYS && audit_) {
    OnAuditReadable();
    session = FindSession(id);
    if (session != nullptr && !session->seccomp_syscall) {
      // The kernel queues the audit record before the kill, but delivers it from a kernel
      // thread: give it a moment.
      session->finalize_timer.Arm(clock_.NowNanos() + kAuditWaitNs, [this, id] {
        OnAuditReadable();
        FinalizeSession(id);
      });
      return;
    }
  }
  FinalizeSession(id);
}

void Supervisor::FinalizeSession(const std::string& id) {
  Session* session = FindSession(id);
  if (session == nullptr) return;
  if (session->pooled && session->token.empty()) {
    // A pool worker that never served anyone: not a session, nothing to report but a line.
    spdlog::debug("pool worker pid {} for policy {} ended: {}", session->worker.pid(),
                  session->policy->name(),
                  session->exit_status ? session->exit_status->ToString() : "not started");
    auto& queue = pool_[session->policy->name()];
    queue.erase(std::remove(queue.begin(), queue.end(), id), queue.end());
    ReleaseResources(*session);
    if (session->worker.valid()) by_pid_.erase(session->worker.pid());
    sessions_.erase(id);
    SchedulePoolRefill(kPoolRetryNs / 10);
    CheckShutdownComplete();
    return;
  }
  EndFacts facts;
  facts.status = session->exit_status.value_or(ExitStatus{});
  facts.requested = session->requested_end();
  facts.requested_reason = session->requested_reason();
  facts.setup_failure = session->setup_failure();
  facts.seccomp_syscall = session->seccomp_syscall;
  if (session->cgroup) {
    facts.memory_limit_bytes = session->cgroup->limits().memory_max.value_or(0);
    auto oom = session->cgroup->OomKills();
    if (oom) facts.oom_kills = *oom;
  }
  SessionEnd end = ClassifyEnd(facts);
  if (end.outcome != api::CLOSED && session->client_dup.valid()) {
    std::string frame =
        ipc::EncodeFrame(ipc::MakeError(api::SESSION_ENDED, end.message, end.outcome));
    // Best effort: a client that does not read loses this, never celld's time.
    static_cast<void>(
        ::send(session->client_dup.get(), frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT));
  }
  // A session that never started is an admission refusal (spawn_failed), not an ended session.
  if (session->running_since_ns != 0) {
    metrics_.sessions_ended.Inc({session->policy->name(), end.reason_label});
  }
  if (end.outcome == api::SECCOMP_VIOLATION) {
    metrics_.seccomp_violations.Inc({session->seccomp_syscall.value_or("unknown")});
  }
  int64_t lived = clock_.NowNanos() - session->created_ns;
  auto level =
      end.outcome == api::CLOSED || end.outcome == api::IDLE_TIMEOUT || end.outcome == api::SHUTDOWN
          ? spdlog::level::info
          : spdlog::level::warn;
  const std::string outcome = api::SessionOutcome_Name(end.outcome);
  LogSession(level, LogFieldsOf(*session, outcome),
             "session " + ipc::IdToHex(id) + " ended: tenant uid " +
                 std::to_string(session->tenant_uid) +
                 (session->gateway_tenant.empty()
                      ? ""
                      : " (gateway tenant '" + session->gateway_tenant + "')") +
                 ", policy " + session->policy->name() + ", worker pid " +
                 std::to_string(session->worker.pid()) + ", outcome " + outcome + ", duration " +
                 Seconds(lived) + ": " + end.message);
  ReleaseResources(*session);
  if (session->worker.valid()) by_pid_.erase(session->worker.pid());
  sessions_.erase(id);
  UpdateNotifyStatus();
  CheckShutdownComplete();
}

void Supervisor::ReleaseResources(Session& session) {
  session.CancelTimers();
  ReleaseExecutorSlot(session, /*worker_had_it=*/true);
  if (session.cgroup && !session.cgroup->removed()) {
    Status removed = session.cgroup->Remove();
    if (!removed) {
      spdlog::error("session {}: removing its cgroup: {}", ipc::IdToHex(session.id()),
                    removed.error().message());
    }
  }
  if (session.host_id_first != 0) host_ids_.Release(session.host_id_first);
  session.host_id_first = 0;
  if (session.grant) LogIfError(admission_->Release(session.grant->ticket), "admission");
  session.grant.reset();
  if (session.control.valid() && loop_->Watching(session.control.get())) {
    loop_->Remove(session.control.get());
  }
  session.control.reset();
  session.client_dup.reset();
}

void Supervisor::OnZygoteExit(const std::string& model) {
  auto served = models_.find(model);
  if (served == models_.end() || !served->second.zygote) return;
  ZygoteProcess& zygote = *served->second.zygote;
  loop_->Remove(zygote.process().pidfd());
  if (loop_->Watching(zygote.channel_fd())) loop_->Remove(zygote.channel_fd());
  auto st = zygote.process().TryReap();
  std::string how = st && st->has_value() ? (*st)->ToString() : "channel failed";
  if (!shutting_down_) {
    spdlog::critical(
        "the zygote of model {} ended unexpectedly ({}); no new sessions can start. Running "
        "sessions continue; shutting down.",
        model, how);
    BeginShutdown("the zygote of model " + model + " ended");
  }
  // Requests it never answered fail now.
  std::vector<std::string> ids;
  for (auto it = pending_spawns_.begin(); it != pending_spawns_.end();) {
    Session* session = FindSession(it->second);
    if (session != nullptr && session->model != model) {
      ++it;
      continue;
    }
    if (session != nullptr) {
      session->FailSetup("the zygote ended before starting the worker");
      if (Connection* opener = FindConnection(session->opener_connection)) {
        Reply(*opener, ipc::MakeError(api::SPAWN_FAILED, *session->setup_failure()), true);
      }
      ids.push_back(it->second);
    }
    it = pending_spawns_.erase(it);
  }
  for (const std::string& id : ids) FinalizeSession(id);
  if (!st || !st->has_value()) static_cast<void>(zygote.process().Wait());
  served->second.zygote.reset();
  CheckShutdownComplete();
}

}  // namespace cellhouse::supervisor
