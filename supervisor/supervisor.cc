#include "supervisor/supervisor.h"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/io.h"
#include "base/strings.h"
#include "ipc/messages.h"
#include "supervisor/metrics_server.h"
#include "supervisor/resources/memory_budget.h"

namespace cellhouse::supervisor {

Supervisor::Supervisor(const SupervisorOptions& options, const Clock& clock)
    : options_(options), clock_(clock) {}

Supervisor::~Supervisor() {
  // Descriptors close with their owners. Workers and cgroups are ended explicitly by the
  // shutdown path (BeginShutdown → CheckShutdownComplete), never here.
  connections_.reset();
}

Result<std::unique_ptr<Supervisor>> Supervisor::Create(const SupervisorOptions& options,
                                                       const Clock& clock) {
  std::unique_ptr<Supervisor> s(new Supervisor(options, clock));
  Status started = s->Start();
  if (!started) {
    // Undo what start-up did before it failed: nothing may outlive a celld that never ran.
    s->AbandonStart();
    return std::move(started).error();
  }
  return s;
}

void Supervisor::AbandonStart() {
  // Pool workers may already be starting; they are celld's children and die with it
  // (PR_SET_PDEATHSIG), but their cgroups must go before the subtree can.
  for (auto& [id, s] : sessions_) {
    if (s.worker.valid()) {
      static_cast<void>(s.worker.Kill(SIGKILL));
      static_cast<void>(s.worker.Wait());
    }
    if (s.cgroup && !s.cgroup->removed()) LogIfError(s.cgroup->Remove(), "removing a cgroup");
  }
  sessions_.clear();
  if (zygote_) {
    zygote_->CloseChannel();
    static_cast<void>(zygote_->process().Wait());
    zygote_.reset();
  }
  if (cgroups_) LogIfError(cgroups_->Shutdown(), "removing cgroups after a failed start");
}

// Start-up, in order: each step needs the ones before it.
Status Supervisor::Start() {
  CH_RETURN_IF_ERROR(StartLoopAndSignals());
  CH_RETURN_IF_ERROR(StartCgroups());
  CH_RETURN_IF_ERROR(StartZygote());
  CH_RETURN_IF_ERROR(StartPolicies());
  CH_RETURN_IF_ERROR(StartAdmission());
  StartAudit();
  // Metrics first: once the client socket accepts, every socket is being served.
  CH_RETURN_IF_ERROR(StartMetrics());
  CH_RETURN_IF_ERROR(StartListeners());
  StartWatchdog();
  // READY=1 only now: the zygote has the model mapped and the sockets are listening.
  notifier_.Ready(StatusLine());
  return Ok();
}

// The event loop; SIGTERM/SIGINT drain, SIGHUP reloads, SIGCHLD is read and dropped.
Status Supervisor::StartLoopAndSignals() {
  CH_ASSIGN_OR_RETURN(loop_, EventLoop::Create(clock_));
  // SIGPIPE would kill celld when a client vanishes mid-write; every send uses MSG_NOSIGNAL,
  // this is the second line.
  static_cast<void>(::signal(SIGPIPE, SIG_IGN));
  CH_RETURN_IF_ERROR(loop_->HandleSignals({SIGTERM, SIGINT, SIGHUP, SIGCHLD}, [this](int sig) {
    if (sig == SIGTERM || sig == SIGINT) {
      BeginShutdown(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
    } else if (sig == SIGHUP) {
      Status st = ReloadPolicies();
      if (!st)
        spdlog::error("policy reload (SIGHUP) failed; the old set stays: {}", st.error().message());
    }
    // SIGCHLD: exits are handled per worker through its pidfd.
  }));
  return Ok();
}

Status Supervisor::StartCgroups() {
  // Before the zygote: on v2 celld moves itself into supervisor/ and the zygote inherits it,
  // so the weights it pre-faults are charged there and not to a session.
  if (options_.use_cgroups) {
    cgroup_fs_ = std::make_unique<cgroup::RealFs>();
    cgroup_processes_ = std::make_unique<cgroup::RealProcesses>();
    CH_ASSIGN_OR_RETURN(cgroups_,
                        cgroup::DetectDriver(*cgroup_fs_, *cgroup_processes_, options_.cgroup));
    spdlog::info("cgroups: {}", cgroups_->Describe());
    CH_ASSIGN_OR_RETURN(cgroup::SetupReport setup, cgroups_->Setup());
    for (const std::string& left : setup.removed_leftovers) {
      spdlog::warn("removed session cgroup {} left by a previous celld", left);
    }
  } else {
    spdlog::warn("cgroups disabled (--no-cgroups): sessions have no memory, pids or CPU limits");
  }
  return Ok();
}

Status Supervisor::StartZygote() {
  // The zygote, before anyone is accepted.
  CH_ASSIGN_OR_RETURN(ZygoteProcess zygote, ZygoteProcess::Start(options_.zygote));
  zygote_.emplace(std::move(zygote));
  const zygote::ZygoteReady& ready = zygote_->ready();
  Result<Mapping> view = Mapping::MapFile(options_.zygote.model.c_str());
  if (view) {
    model_view_ = std::move(*view);
  } else {
    spdlog::warn("weights residency will not be reported: {}", view.error().message());
  }
  spdlog::info("zygote pid {} ready: {} ({} mapped in {} chunks, {} resident{})", ready.pid(),
               ready.model_description(), FormatBytes(ready.weights_bytes()), ready.chunk_count(),
               FormatBytes(ready.weights_resident_bytes()),
               ready.weights_locked() ? ", locked" : "");
  CH_RETURN_IF_ERROR(
      loop_->Add(zygote_->channel_fd(), EPOLLIN, [this](uint32_t) { OnZygoteReadable(); }));
  CH_RETURN_IF_ERROR(
      loop_->Add(zygote_->process().pidfd(), EPOLLIN, [this](uint32_t) { OnZygoteExit(); }));
  return Ok();
}

Status Supervisor::StartPolicies() {
  const zygote::ZygoteReady& ready = zygote_->ready();
  // Policies, checked against what the model costs.
  model_facts_.seq_len = ready.seq_len();
  model_facts_.kv_bytes_per_token = ready.kv_bytes_per_token();
  model_facts_.state_fixed_bytes = ready.state_fixed_bytes();
  model_facts_.worker_overhead_bytes = policy::kDefaultWorkerOverheadBytes;
  CH_RETURN_IF_ERROR(LoadPolicies());
  return Ok();
}

Status Supervisor::StartAdmission() {
  const zygote::ZygoteReady& ready = zygote_->ready();
  // Admission: the memory budget, session caps and GPU shares.
  resources::AdmissionConfig admission;
  admission.max_sessions = options_.max_sessions;
  admission.memory_budget_bytes = options_.memory_budget_bytes;
  if (admission.memory_budget_bytes == 0) {
    CH_ASSIGN_OR_RETURN(std::string meminfo, ReadFileToString("/proc/meminfo", 1 << 16));
    CH_ASSIGN_OR_RETURN(uint64_t total, resources::ParseMemTotal(meminfo));
    std::optional<uint64_t> cap;
    if (cgroups_) {
      CH_ASSIGN_OR_RETURN(cap, cgroups_->OwnMemoryLimit());
    }
    admission.memory_budget_bytes = resources::DefaultMemoryBudget(
        total, cap, ready.weights_locked() ? ready.weights_bytes() : 0);
  }
  CH_ASSIGN_OR_RETURN(resources::GpuInventory gpus,
                      resources::DiscoverGpus({.inventory_file = options_.gpu_inventory}));
  spdlog::info("memory budget for sessions: {}; GPUs: {} ({})",
               FormatBytes(admission.memory_budget_bytes), gpus.devices.size(), gpus.source);
  admission_ =
      std::make_unique<resources::Admission>(admission, resources::GpuLedger(std::move(gpus)));
  return Ok();
}

void Supervisor::StartAudit() {
  // Seccomp violation reports from the kernel's audit multicast.
  Result<AuditReader> audit = AuditReader::Open();
  if (audit) {
    audit_.emplace(std::move(*audit));
    LogIfError(loop_->Add(audit_->fd(), EPOLLIN, [this](uint32_t) { OnAuditReadable(); }),
               "watching the audit socket");
  } else {
    spdlog::warn("seccomp violations will be reported without the system call's name: {}",
                 audit.error().message());
  }
}

Status Supervisor::StartListeners() {
  connections_ = std::make_unique<Connections>(
      *loop_, clock_, options_.connections, metrics_.admission_refusals,
      [this](Connection& conn, const api::Request& request) { HandleRequest(conn, request); });
  // Listeners: inherited from systemd, or bound here.
  if (options_.inherited_api_fds.empty()) {
    ipc::ListenOptions listen{
        .path = options_.socket_path, .mode = options_.socket_mode, .group = options_.socket_group};
    ipc::SocketFile bound;
    CH_ASSIGN_OR_RETURN(UniqueFd fd, ipc::ListenUnix(listen, &bound));
    own_socket_ = bound;
    spdlog::info("listening on {}", options_.socket_path);
    CH_RETURN_IF_ERROR(connections_->AddListener(std::move(fd)));
  } else {
    for (int fd : options_.inherited_api_fds) {
      CH_RETURN_IF_ERROR(connections_->AddListener(UniqueFd(fd)));
    }
    spdlog::info("serving {} socket(s) passed by systemd", options_.inherited_api_fds.size());
  }
  return Ok();
}

// The metrics server on inherited metrics sockets and --metrics-listen.
Status Supervisor::StartMetrics() {
  metrics_server_ = std::make_unique<MetricsServer>(*loop_, [this] {
    GaugeSnapshot g;
    for (const auto& [name, p] : policies_) g.sessions_active[name] = 0;
    for (const auto& [id, s] : sessions_) {
      if (s.state() != Session::State::kRunning) continue;
      ++g.sessions_active[s.policy->name()];
      if (s.cgroup) {
        auto bytes = s.cgroup->MemoryCurrent();
        if (bytes) g.policy_memory_bytes[s.policy->name()] += *bytes;
      }
    }
    g.weights_mapped_bytes = zygote_ ? zygote_->ready().weights_bytes() : 0;
    g.weights_resident_bytes = WeightsResidentBytes();
    g.memory_budget_bytes = admission_->config().memory_budget_bytes;
    g.memory_committed_bytes = admission_->committed_bytes();
    g.connections_pending = connections_ ? connections_->size() : 0;
    return metrics_.Render(g, CELLHOUSE_VERSION);
  });
  for (int fd : options_.inherited_metrics_fds) {
    CH_RETURN_IF_ERROR(metrics_server_->AddListener(UniqueFd(fd)));
  }
  if (!options_.metrics_listen.empty()) {
    CH_ASSIGN_OR_RETURN(UniqueFd fd,
                        ListenTcp(options_.metrics_listen, options_.metrics_allow_remote));
    CH_RETURN_IF_ERROR(metrics_server_->AddListener(std::move(fd)));
    spdlog::info("metrics on http://{}/metrics", options_.metrics_listen);
  }
  return Ok();
}

void Supervisor::StartWatchdog() {
  // Pet systemd from the loop itself, so a wedged loop is restarted.
  if (notifier_.watchdog_interval_ns() > 0) PetWatchdog();
}

void Supervisor::PetWatchdog() {
  notifier_.Watchdog();
  loop_->AddTimer(clock_.NowNanos() + notifier_.watchdog_interval_ns() / 2,
                  [this] { PetWatchdog(); });
}

uint64_t Supervisor::WeightsResidentBytes() const {
  Result<uint64_t> resident = model_view_.ResidentBytes();
  if (resident && !model_view_.empty()) return *resident;
  return zygote_ ? zygote_->ready().weights_resident_bytes() : 0;  // as of start-up
}

Status Supervisor::Run() {
  while (!finished_) CH_RETURN_IF_ERROR(loop_->RunOnce(-1));
  return Ok();
}

Status Supervisor::RunOnce(int max_wait_ms) { return loop_->RunOnce(max_wait_ms); }

void Supervisor::HandleRequest(Connection& conn, const api::Request& request) {
  if (!request.tenant().empty() && !TakeTenantAssertion(conn, request.tenant())) return;
  switch (request.kind_case()) {
    case api::Request::kOpen:
      // Each tenant's share of the opens in progress, before anything is reserved for this one.
      if (Status may = connections_->MayWaitForSession(conn); !may) {
        Reply(conn, ipc::MakeError(api::ADMISSION_REFUSED, may.error().message()));
        return;
      }
      OpenSession(conn, request.open());
      return;
    case api::Request::kAttach:
      AttachSession(conn, request.attach());
      return;
    case api::Request::kListSessions:
      ListSessions(conn);
      return;
    case api::Request::kKillSession:
      KillSession(conn, request.kill_session());
      return;
    case api::Request::kListPolicies:
      ListPolicies(conn);
      return;
    case api::Request::kReloadPolicies:
      Reload(conn);
      return;
    case api::Request::kStatus:
      ServerStatusRequest(conn);
      return;
    case api::Request::kGenerate:
    case api::Request::kCancel:
    case api::Request::kClose:
      Reply(conn, ipc::MakeError(api::BAD_REQUEST,
                                 "this connection has no session: send open "
                                 "or attach first"));
      return;
    case api::Request::KIND_NOT_SET:
      break;
  }
  Reply(conn, ipc::MakeError(api::BAD_REQUEST, "empty or unknown request; closing"),
        /*then_close=*/true);
}

}  // namespace cellhouse::supervisor
