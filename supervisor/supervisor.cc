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
  for (auto& [id, conn] : connections_) loop_->Remove(conn.fd.get());
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
  CH_RETURN_IF_ERROR(StartListeners());
  CH_RETURN_IF_ERROR(StartMetrics());
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
  // Listeners: inherited from systemd, or bound here.
  if (options_.inherited_api_fds.empty()) {
    ipc::ListenOptions listen{
        .path = options_.socket_path, .mode = options_.socket_mode, .group = options_.socket_group};
    CH_ASSIGN_OR_RETURN(UniqueFd fd, ipc::ListenUnix(listen));
    spdlog::info("listening on {}", options_.socket_path);
    listeners_.push_back(std::move(fd));
  } else {
    for (int fd : options_.inherited_api_fds) listeners_.emplace_back(fd);
    spdlog::info("serving {} socket(s) passed by systemd", options_.inherited_api_fds.size());
  }
  for (const UniqueFd& l : listeners_) {
    int fd = l.get();
    CH_RETURN_IF_ERROR(loop_->Add(fd, EPOLLIN, [this, fd](uint32_t) { OnAccept(fd); }));
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
    g.connections_pending = connections_.size();
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

void Supervisor::OnAccept(int listener) {
  for (;;) {
    UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) {
      if (errno != EAGAIN && errno != EINTR) {
        spdlog::warn("accept: {}", Error::FromErrno(errno, "accept4").message());
      }
      return;
    }
    if (shutting_down_) {
      std::string bye = ipc::EncodeFrame(
          ipc::MakeError(api::SHUTTING_DOWN, "celld is shutting down and takes no requests"));
      static_cast<void>(::send(fd.get(), bye.data(), bye.size(), MSG_NOSIGNAL | MSG_DONTWAIT));
      continue;
    }
    if (connections_.size() >= options_.max_connections) {
      metrics_.admission_refusals.Inc({"connections"});
      std::string busy = ipc::EncodeFrame(ipc::MakeError(
          api::ADMISSION_REFUSED, "too many connections are waiting; try again shortly"));
      static_cast<void>(::send(fd.get(), busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT));
      continue;
    }
    Result<ipc::PeerCredentials> peer = ipc::GetPeerCredentials(fd.get());
    if (!peer) {
      spdlog::warn("dropping a connection: {}", peer.error().message());
      continue;
    }
    uint64_t id = next_connection_id_++;
    int raw = fd.get();
    Connection& conn = connections_[id];
    conn.id = id;
    conn.fd = std::move(fd);
    conn.peer = std::move(*peer);
    conn.reader = ipc::ExactFrameReader(options_.max_frame_bytes);
    conn.accepted_ns = clock_.NowNanos();
    if (!loop_->Add(raw, EPOLLIN, [this, id](uint32_t ev) { OnConnectionEvent(id, ev); })) {
      connections_.erase(id);
      continue;
    }
    conn.timeout = loop_->AddTimer(
        clock_.NowNanos() + options_.first_frame_timeout_ms * kNanosPerMilli, [this, id] {
          Connection* c = FindConnection(id);
          if (c == nullptr) return;
          c->timeout = 0;
          if (c->waiting_for_session) return;
          Reply(*c,
                ipc::MakeError(api::BAD_REQUEST,
                               "no complete request within " +
                                   std::to_string(options_.first_frame_timeout_ms) + " ms"),
                /*then_close=*/true);
        });
  }
}

Supervisor::Connection* Supervisor::FindConnection(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : &it->second;
}

void Supervisor::OnConnectionEvent(uint64_t id, uint32_t events) {
  Connection* conn = FindConnection(id);
  if (conn == nullptr) return;
  if ((events & EPOLLOUT) != 0) {
    FlushConnection(*conn);
    return;
  }
  if (conn->waiting_for_session || conn->close_after_write) return;
  Result<ipc::ExactFrameReader::State> state = conn->reader.ReadFrom(conn->fd.get());
  if (!state) {
    CloseConnection(id);
    return;
  }
  switch (*state) {
    case ipc::ExactFrameReader::State::kIncomplete:
      return;
    case ipc::ExactFrameReader::State::kEndOfFile:
      CloseConnection(id);
      return;
    case ipc::ExactFrameReader::State::kTooLarge:
      Reply(*conn,
            ipc::MakeError(api::FRAME_TOO_LARGE,
                           "a request of " + std::to_string(conn->reader.announced_length()) +
                               " bytes is larger than the limit of " +
                               std::to_string(options_.max_frame_bytes) +
                               " bytes; closing the connection"),
            /*then_close=*/true);
      return;
    case ipc::ExactFrameReader::State::kMalformed:
      Reply(*conn, ipc::MakeError(api::BAD_REQUEST, "malformed frame length; closing"),
            /*then_close=*/true);
      return;
    case ipc::ExactFrameReader::State::kComplete:
      break;
  }
  api::Request request;
  if (!request.ParseFromString(conn->reader.frame())) {
    Reply(*conn,
          ipc::MakeError(api::BAD_REQUEST,
                         "the request is not a valid "
                         "cellhouse.api.Request; closing"),
          /*then_close=*/true);
    return;
  }
  conn->reader = ipc::ExactFrameReader(options_.max_frame_bytes);
  HandleRequest(*conn, request);
}

void Supervisor::HandleRequest(Connection& conn, const api::Request& request) {
  switch (request.kind_case()) {
    case api::Request::kOpen:
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

void Supervisor::Reply(Connection& conn, const api::Response& response, bool then_close) {
  ipc::AppendFrame(response, &conn.out);
  if (then_close) conn.close_after_write = true;
  FlushConnection(conn);
}

void Supervisor::FlushConnection(Connection& conn) {
  while (conn.out_sent < conn.out.size()) {
    ssize_t n = ::send(conn.fd.get(), conn.out.data() + conn.out_sent,
                       conn.out.size() - conn.out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        static_cast<void>(loop_->Modify(conn.fd.get(), EPOLLIN | EPOLLOUT));
        return;
      }
      CloseConnection(conn.id);
      return;
    }
    conn.out_sent += static_cast<size_t>(n);
  }
  conn.out.clear();
  conn.out_sent = 0;
  if (conn.close_after_write) {
    CloseConnection(conn.id);
    return;
  }
  static_cast<void>(loop_->Modify(conn.fd.get(), EPOLLIN));
}

void Supervisor::CloseConnection(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  loop_->Remove(it->second.fd.get());
  if (it->second.timeout != 0) loop_->CancelTimer(it->second.timeout);
  connections_.erase(it);
}

UniqueFd Supervisor::ReleaseConnection(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return UniqueFd();
  loop_->Remove(it->second.fd.get());
  if (it->second.timeout != 0) loop_->CancelTimer(it->second.timeout);
  UniqueFd fd = std::move(it->second.fd);
  connections_.erase(it);
  return fd;
}

}  // namespace cellhouse::supervisor
