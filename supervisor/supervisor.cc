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
  StopZygotes();
  if (cgroups_) LogIfError(cgroups_->Shutdown(), "removing cgroups after a failed start");
}

// Start-up, in order: each step needs the ones before it.
Status Supervisor::Start() {
  CH_RETURN_IF_ERROR(StartLoopAndSignals());
  CH_RETURN_IF_ERROR(StartCgroups());
  CH_RETURN_IF_ERROR(StartZygotes());
  StartExecutors();  // a model's executor that cannot start leaves its sessions computing alone
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

std::vector<ModelSpec> ModelsToServe(const SupervisorOptions& options) {
  if (!options.models.empty()) return options.models;
  return {ModelSpec{.name = ModelStem(options.zygote.model),
                    .path = options.zygote.model,
                    .tokenizer = options.zygote.tokenizer}};
}

Status Supervisor::StartZygotes() {
  // The zygotes, one per model, before anyone is accepted.
  const std::vector<ModelSpec> specs = ModelsToServe(options_);
  CH_RETURN_IF_ERROR(CheckModelNames(specs));
  default_model_ = specs.front().name;
  for (const ModelSpec& spec : specs) CH_RETURN_IF_ERROR(StartZygote(spec));
  return Ok();
}

Status Supervisor::StartZygote(const ModelSpec& spec) {
  ZygoteOptions options = options_.zygote;
  options.model = spec.path;
  options.tokenizer = spec.tokenizer;
  Result<ZygoteProcess> started = ZygoteProcess::Start(options);
  if (!started) return std::move(started).error().Context("model " + Quote(spec.name));
  ServedModel& model = models_[spec.name];
  model.spec = spec;
  model.zygote.emplace(std::move(*started));
  const zygote::ZygoteReady& ready = model.zygote->ready();
  model.facts.seq_len = ready.seq_len();
  model.facts.kv_bytes_per_token = ready.kv_bytes_per_token();
  model.facts.state_fixed_bytes = ready.state_fixed_bytes();
  model.facts.worker_overhead_bytes = policy::kDefaultWorkerOverheadBytes;
  // A sharing session's worker also holds its executor slot (charged to its cgroup).
  if (options_.shared_executor.enabled) {
    model.facts.executor_slot_bytes = ready.executor_slot_bytes();
  }
  Result<Mapping> view = Mapping::MapFile(spec.path.c_str());
  if (view) {
    model.view = std::move(*view);
  } else {
    spdlog::warn("weights residency of model {} will not be reported: {}", spec.name,
                 view.error().message());
  }
  spdlog::info("model {}: zygote pid {} ready: {} ({} mapped in {} chunks, {} resident{})",
               spec.name, ready.pid(), ready.model_description(),
               FormatBytes(ready.weights_bytes()), ready.chunk_count(),
               FormatBytes(ready.weights_resident_bytes()),
               ready.weights_locked() ? ", locked" : "");
  const std::string name = spec.name;
  CH_RETURN_IF_ERROR(loop_->Add(model.zygote->channel_fd(), EPOLLIN,
                                [this, name](uint32_t) { OnZygoteReadable(name); }));
  CH_RETURN_IF_ERROR(loop_->Add(model.zygote->process().pidfd(), EPOLLIN,
                                [this, name](uint32_t) { OnZygoteExit(name); }));
  return Ok();
}

void Supervisor::StopZygotes() {
  StopExecutors();
  for (auto& [name, model] : models_) {
    if (!model.zygote) continue;
    if (loop_ && loop_->Watching(model.zygote->process().pidfd())) {
      loop_->Remove(model.zygote->process().pidfd());
    }
    if (loop_ && loop_->Watching(model.zygote->channel_fd())) {
      loop_->Remove(model.zygote->channel_fd());
    }
    model.zygote->CloseChannel();  // it exits on EOF
    Result<ExitStatus> st = model.zygote->process().Wait();
    if (st && !st->Success()) spdlog::warn("zygote of model {} ended: {}", name, st->ToString());
    model.zygote.reset();
  }
}

Status Supervisor::StartPolicies() {
  // Policies, checked against what the models cost: each policy must suit every model.
  std::vector<policy::ModelFacts> each;
  for (const auto& [name, model] : models_) each.push_back(model.facts);
  model_facts_ = EnvelopeFacts(each);
  CH_RETURN_IF_ERROR(LoadPolicies());
  return Ok();
}

Status Supervisor::StartAdmission() {
  uint64_t locked_weights = 0;
  for (const auto& [name, model] : models_) {
    if (model.zygote && model.zygote->ready().weights_locked()) {
      locked_weights += model.zygote->ready().weights_bytes();
    }
  }
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
    admission.memory_budget_bytes = resources::DefaultMemoryBudget(total, cap, locked_weights);
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
    g.weights_mapped_bytes = WeightsMappedBytes();
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
  uint64_t sum = 0;
  for (const auto& [name, model] : models_) {
    Result<uint64_t> resident = model.view.ResidentBytes();
    if (resident && !model.view.empty()) {
      sum += *resident;
    } else if (model.zygote) {
      sum += model.zygote->ready().weights_resident_bytes();  // as of start-up
    }
  }
  return sum;
}

uint64_t Supervisor::WeightsMappedBytes() const {
  uint64_t sum = 0;
  for (const auto& [name, model] : models_) {
    if (model.zygote) sum += model.zygote->ready().weights_bytes();
  }
  return sum;
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
      if (std::optional<ConnectionRefusal> no = connections_->MayWaitForSession(conn)) {
        Reply(conn, ipc::MakeError(no->code, no->message));
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
