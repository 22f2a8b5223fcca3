// The Supervisor is celld: it accepts clients, authenticates them by SO_PEERCRED, picks and
// checks their policy, admits or refuses, asks the zygote for a sandboxed worker, hands the
// client's connection to it, watches every worker over its control channel and pidfd, and
// records how each session ended. Single-threaded; everything runs from one EventLoop.
//
//   SupervisorOptions options = ...;   // from the command line (supervisor/main.cc)
//   CH_ASSIGN_OR_RETURN(std::unique_ptr<Supervisor> celld, Supervisor::Create(options, clock));
//   CH_RETURN_IF_ERROR(celld->Run());  // until SIGTERM has drained every session
//
// It never parses a prompt or an output: after hand-off, tokens flow worker → client directly.
// Files: supervisor.cc (start-up, dispatch), connections.cc (accepting, reading and answering
// clients, and their limits), sessions.cc (a session's life), admin.cc (list, kill, policies,
// status, reload).
#ifndef CELLHOUSE_SUPERVISOR_SUPERVISOR_H_
#define CELLHOUSE_SUPERVISOR_SUPERVISOR_H_

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/mapping.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "ipc/api.pb.h"
#include "ipc/control.pb.h"
#include "ipc/executor.pb.h"
#include "ipc/frame.h"
#include "ipc/unix_socket.h"
#include "policy/choose.h"
#include "policy/policy.h"
#include "supervisor/audit.h"
#include "supervisor/cgroup/driver.h"
#include "supervisor/connections.h"
#include "supervisor/event_loop.h"
#include "supervisor/host_ids.h"
#include "supervisor/metrics.h"
#include "supervisor/metrics_server.h"
#include "supervisor/models.h"
#include "supervisor/notifier.h"
#include "supervisor/resources/admission.h"
#include "supervisor/resources/gpu_share.h"
#include "supervisor/session.h"
#include "supervisor/shared_executor.h"
#include "supervisor/zygote_process.h"

namespace cellhouse::supervisor {

struct SupervisorOptions {
  // Listening: either inherited (socket activation) or bound here.
  std::string socket_path = "/run/cellhouse/celld.sock";
  mode_t socket_mode = 0666;
  std::optional<gid_t> socket_group;
  std::vector<int> inherited_api_fds;      // from sd_listen_fds_with_names ("api")
  std::vector<int> inherited_metrics_fds;  // ("metrics")
  std::string metrics_listen;              // "127.0.0.1:9464", empty: none unless inherited
  bool metrics_allow_remote = false;       // --metrics-listen may name a non-loopback address

  // Every model's zygote settings; its `model` and `tokenizer` name the one model served when
  // `models` is empty.
  ZygoteOptions zygote;
  // The models served, each with its own zygote and mapping; [0] is the default (models.h).
  std::vector<ModelSpec> models;
  std::string policy_dir;  // empty: the built-in default policy only

  uint64_t memory_budget_bytes = 0;  // 0: a safe share of physical memory
  uint32_t max_sessions = 0;         // total, 0: no cap beyond the budget
  std::string gpu_inventory;         // --gpu-inventory FILE, empty: NVML if present

  bool sandbox = true;  // --insecure-no-sandbox turns it off (benchmarks only)
  cgroup::DriverOptions cgroup;
  bool use_cgroups = true;

  int64_t heartbeat_interval_ms = 1000;
  int64_t worker_timeout_ms = 60'000;  // no message from a worker for this long: killed
  int64_t shutdown_grace_ms = 10'000;  // running generations may finish within this
  int64_t stop_grace_ms = 2'000;       // after Stop, SIGKILL
  // Pre-forked, already sandboxed workers kept ready per policy (policies with a GPU share get
  // none). Each serves one session and is never reused.
  uint32_t pool_size = 2;
  // Connections that have not become sessions yet, and their shares (connections.h).
  ConnectionLimits connections;
  // Who sees every tenant's sessions, policies and status besides root (--admin-group).
  std::optional<gid_t> admin_group;
  // --gateway-user: the one uid whose connections may assert a gateway tenant (api
  // Request.tenant). Unset: every assertion is refused.
  std::optional<uid_t> gateway_uid;
  // Each GGUF model's shared step executor (docs/EXECUTOR.md).
  SharedExecutorOptions shared_executor;
};

// How long a failed pool refill waits before the next attempt.
inline constexpr int64_t kPoolRetryNs = kNanosPerSecond;

// Logs a failed status that leaves nothing to undo.
void LogIfError(const Status& status, std::string_view what);

// The models to serve: options.models, or else the one of options.zygote.model/tokenizer.
std::vector<ModelSpec> ModelsToServe(const SupervisorOptions& options);

// The policy named `name` (empty: the caller's default) that `conn`'s identity may use: by its
// uid and groups, or as its asserted gateway tenant.
Result<std::shared_ptr<const policy::CompiledPolicy>> ChoosePolicyFor(
    const policy::PolicySet& policies, const Connection& conn, const std::string& name);

class Supervisor {
 public:
  static Result<std::unique_ptr<Supervisor>> Create(const SupervisorOptions& options,
                                                    const Clock& clock);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Serves until shutdown completes; returns the first fatal error, if any.
  Status Run();
  // One loop iteration (tests).
  Status RunOnce(int max_wait_ms);
  // SIGTERM: stop accepting, drain, end.
  void BeginShutdown(const std::string& why);
  // SIGHUP / cellctl reload. On failure the old set stays and the error says why.
  Status ReloadPolicies();
  // Loads --policy-dir (or the built-in set) without telling systemd: start-up and reload.
  Status LoadPolicies();
  bool finished() const { return finished_; }

 private:
  using Connection = supervisor::Connection;

  explicit Supervisor(const SupervisorOptions& options, const Clock& clock);
  Status Start();
  Status StartLoopAndSignals();
  Status StartCgroups();
  Status StartZygotes();
  Status StartZygote(const ModelSpec& spec);
  Status StartPolicies();
  Status StartAdmission();
  void StartAudit();
  Status StartListeners();
  Status StartMetrics();
  void StartWatchdog();
  void PetWatchdog();
  void AbandonStart();

  // supervisor.cc: requests, dispatched by kind (connections.cc reads and writes them).
  void HandleRequest(Connection& conn, const api::Request& request);
  void Reply(Connection& conn, const api::Response& response, bool then_close = false) {
    connections_->Reply(conn, response, then_close ? AfterReply::kClose : AfterReply::kKeepOpen);
  }
  Connection* FindConnection(uint64_t id) { return connections_->Find(id); }
  // Takes the connection's descriptor out of celld's hands (it goes to a worker).
  UniqueFd ReleaseConnection(uint64_t id) { return connections_->Release(id); }

  // sessions.cc: a session's life.
  Session& NewSession(const std::string& id,
                      const std::shared_ptr<const policy::CompiledPolicy>& policy);
  // Choose (policy, context) → admit → place; a refusal at any step answers the opener.
  void OpenSession(Connection& conn, const api::OpenSession& open);
  // A new session's id and re-attach token, drawn before anything is reserved for it.
  struct SessionSecrets {
    std::string id;
    std::string token;
  };
  void PlaceSession(Connection& conn, const std::shared_ptr<const policy::CompiledPolicy>& policy,
                    const std::string& model, uint32_t context, resources::Grant grant,
                    SessionSecrets secrets);
  void BindTenant(Session& session, const Connection& conn, resources::Grant grant,
                  uint32_t context, std::string token);
  // Creates the session's cgroup and asks the zygote for its worker.
  Status SpawnWorker(Session& session, const resources::WorkerGpuView* gpu, bool pooled);
  zygote::SessionLimits LimitsFor(const Session& session) const;
  // The worker runs: answer the opener with SessionOpened and hand it the connection.
  void StartServing(Session& session, UniqueFd client);
  void AttachSession(Connection& conn, const api::AttachSession& attach);
  void OnZygoteReadable(const std::string& model);
  void OnSpawnReply(const std::string& model, const zygote::SpawnReply& reply,
                    std::vector<UniqueFd> fds);
  void HandOff(Session& session, UniqueFd client, bool reattach);
  void OnControlReadable(const std::string& id);
  void OnWorkerMessage(Session& session, const control::WorkerMessage& message);
  void OnClientDetached(Session& session);
  void OnWorkerExit(const std::string& id);
  void FinalizeSession(const std::string& id);
  void EndSession(Session& session, api::SessionOutcome outcome, const std::string& reason,
                  bool graceful);
  void ArmHeartbeatTimer(Session& session);
  void ReleaseResources(Session& session);
  Session* FindSession(const std::string& id);
  resources::WorkerGpuView GpuViewFor(const resources::GpuGrant& grant) const;
  void OnAuditReadable();
  void OnZygoteExit(const std::string& model);
  // Ends every model's zygote (shutdown, a failed start).
  void StopZygotes();

  // executor.cc: each model's shared step executor.
  void StartExecutors();
  void StartExecutor(const std::string& model);
  void OnExecutorSpawned(const std::string& model, const zygote::SpawnReply& reply,
                         std::vector<UniqueFd> fds);
  void OnExecutorReadable(const std::string& model);
  // (Re)arms the executor's silence bound (kExecutorSilenceNs).
  void ArmExecutorSilence(const std::string& model);
  void ApplyExecutorReport(SharedExecutor& ex, const executor_ipc::ExecutorReport& report);
  void OnExecutorExit(const std::string& model);
  // It ended (or never started): its slots go, and the next one is scheduled unless stopping.
  void FinishExecutor(const std::string& model);
  void ScheduleExecutorRestart(const std::string& model, int64_t ran_ns);
  // A slot id for the session's new worker (0: it computes alone: no executor, exempt, full).
  uint64_t ReserveExecutorSlot(const Session& session);
  // Writes the executor cgroup's CPU weight (FairShare::CgroupWeight) when it changed.
  void ApplyExecutorWeight(SharedExecutor& ex);
  // A pool worker of a sharing policy, without a slot, asked for before its model's executor
  // (re)started: it should make way for one with a slot.
  bool PooledWithoutSlot(const Session& session) const;
  // The worker has its slot: its session's executor CPU counts against its policy's quota.
  void TrackExecutorSlot(const Session& session);
  // The worker is gone (RemoveSlot), or never got the slot (`worker_had_it` false).
  void ReleaseExecutorSlot(Session& session, bool worker_had_it);
  void StopExecutors();

  // pool.cc: pre-forked workers.
  Session* TakePooledWorker(const policy::CompiledPolicy& policy);
  void AssignPooledWorker(Session& session, Connection& conn, resources::Grant grant,
                          uint32_t context, std::string token);
  void OnPoolWorkerReady(Session& session);
  void RefillPools();
  void SchedulePoolRefill(int64_t delay_ns);
  // After a reload: pool workers of policies that changed or went away are ended.
  void DrainStalePoolWorkers();

  // admin.cc.
  void ListSessions(Connection& conn);
  void KillSession(Connection& conn, const api::KillSession& kill);
  void ListPolicies(Connection& conn);
  void Reload(Connection& conn);
  void ServerStatusRequest(Connection& conn);
  // Root, or a member of --admin-group: sees every tenant's sessions, policies and status.
  // Root or --admin-group, never a connection serving a gateway tenant.
  bool IsAdministrator(const Connection& conn) const;
  // Whether the connection's identity, (uid, gateway tenant), opened the session.
  static bool Owns(const Connection& conn, const Session& session);
  // A request's Request.tenant: honoured from --gateway-user only; false when refused (replied).
  bool TakeTenantAssertion(Connection& conn, const std::string& tenant);
  api::ServerStatus StatusSnapshot() const;
  // What a tenant's `cellctl status` shows: its own sessions, nothing of the others'.
  api::ServerStatus TenantStatus(const Connection& conn) const;
  std::string StatusLine() const;
  uint64_t WeightsResidentBytes() const;
  uint64_t WeightsMappedBytes() const;
  // The status lines of the served models: every one, or those `policy` allows (none when it
  // is null: the caller may use no policy).
  void AddModels(bool everything, const policy::CompiledPolicy* policy,
                 api::ServerStatus& status) const;
  void UpdateNotifyStatus();
  void CheckShutdownComplete();

  SupervisorOptions options_;
  const Clock& clock_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<Connections> connections_;
  // The client socket celld bound itself (removed at shutdown); none when systemd passed it.
  std::optional<ipc::SocketFile> own_socket_;
  // The models served, by name, each with its zygote; default_model_ is the first given.
  std::map<std::string, ServedModel> models_;
  std::string default_model_;
  std::unique_ptr<cgroup::Driver> cgroups_;
  std::unique_ptr<cgroup::Fs> cgroup_fs_;
  std::unique_ptr<cgroup::Processes> cgroup_processes_;
  std::unique_ptr<resources::Admission> admission_;
  uint64_t sessions_admitted_ = 0;
  uint64_t sessions_refused_ = 0;
  std::optional<AuditReader> audit_;
  std::unique_ptr<MetricsServer> metrics_server_;
  Notifier notifier_;
  Metrics metrics_;

  policy::PolicySet policies_;
  // What policies are checked against: every model's at once (EnvelopeFacts).
  policy::ModelFacts model_facts_;
  HostIdAllocator host_ids_;

  std::map<std::string, Session> sessions_;        // by id
  uint64_t next_session_number_ = 1;               // Session::number(): cgroup names
  std::unordered_map<pid_t, std::string> by_pid_;  // worker pid → session id
  uint64_t next_spawn_request_ = 1;
  std::map<uint64_t, std::string> pending_spawns_;                    // request id → session id
  std::map<uint64_t, std::string> pending_executor_spawns_;           // request id → model
  std::map<std::string, std::unique_ptr<SharedExecutor>> executors_;  // by model
  std::map<std::string, std::deque<std::string>> pool_;  // policy → ready pool worker ids
  TimerId pool_refill_timer_ = 0;

  bool shutting_down_ = false;
  bool finished_ = false;
  TimerId shutdown_timer_ = 0;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_SUPERVISOR_H_
