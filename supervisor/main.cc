// celld: the cellhouse supervisor. Main-only code: flags, logging, socket activation, then the
// Supervisor's loop. See docs/ARCHITECTURE.md.
#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/flags.h"
#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "ipc/defaults.h"
#include "ipc/unix_socket.h"
#include "supervisor/config_check.h"
#include "supervisor/logging.h"
#include "supervisor/protobuf_log.h"
#include "supervisor/supervisor.h"

namespace cellhouse::supervisor {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

// cell-zygote's install directory relative to celld's (cmake/Install.cmake defines it from
// CMAKE_INSTALL_BINDIR and CMAKE_INSTALL_LIBEXECDIR).
#ifndef CELLHOUSE_ZYGOTE_FROM_BINDIR
#define CELLHOUSE_ZYGOTE_FROM_BINDIR "../libexec/cellhouse"
#endif
constexpr const char* kZygoteFromBindir = CELLHOUSE_ZYGOTE_FROM_BINDIR;

constexpr const char* kDescription =
    "Hosts isolated assistant sessions: every session runs in its own sandboxed worker, forked\n"
    "from a zygote that maps the model once, read-only, for all of them.\n"
    "\n"
    "Started by systemd (celld.socket) it takes its listening sockets from the service manager\n"
    "(names 'api' and 'metrics'); started by hand it binds --socket itself.\n"
    "\n"
    "Signals: SIGTERM/SIGINT drain and stop (exit 0); SIGHUP reloads --policy-dir.\n"
    "Exit status: 0 after a clean shutdown, 1 on a runtime error, 2 on a usage error or a\n"
    "configuration that cannot work (a model that cannot be read, an invalid --policy-dir),\n"
    "found before anything is started.";

Result<gid_t> ResolveGroup(const std::string& name, const std::string& flag) {
  if (auto gid = ParseUint64(name, flag)) return static_cast<gid_t>(*gid);
  group grp{};
  group* found = nullptr;
  std::vector<char> buf(16384);
  if (::getgrnam_r(name.c_str(), &grp, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return Error(flag + " " + Quote(name) + ": no such group");
  }
  return found->gr_gid;
}

Result<uid_t> ResolveUser(const std::string& name, const std::string& flag) {
  uid_t uid = 0;
  if (auto parsed = ParseUint64(name, flag)) {
    uid = static_cast<uid_t>(*parsed);
  } else {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
      return Error(flag + " " + Quote(name) + ": no such user");
    }
    uid = found->pw_uid;
  }
  // The gateway faces the network: it must never be root, celld's administrator.
  if (uid == 0) {
    return Error(flag + " " + Quote(name) +
                 ": the gateway must run as an unprivileged user of its own, not root "
                 "(units/cellgate.service uses 'cellgate')");
  }
  return uid;
}

// Every descriptor above standard error that celld did not get from systemd is closed before
// anything else runs: whatever the parent left open (a terminal's, a script's, a leaked
// socket) would otherwise live on in celld and in the zygote it starts, which serves every
// tenant. Descriptors systemd passes (LISTEN_FDS, from fd 3, sd_listen_fds(3)) are kept.
void CloseStrayDescriptors() {
  int passed = sd_listen_fds(0);  // checks LISTEN_PID: a count meant for another process is 0
  unsigned first = SD_LISTEN_FDS_START + static_cast<unsigned>(std::max(passed, 0));
  if (::close_range(first, ~0U, 0) != 0) {
    // Nothing is logged yet (logging is not set up); say it on stderr.
    std::string why =
        Error::FromErrno(errno, "close_range from fd " + std::to_string(first)).message();
    static_cast<void>(std::fprintf(stderr, "celld: %s\n", why.c_str()));
  }
}

// The socket's directory, as systemd's RuntimeDirectory= would make it; and before the model is
// loaded, a directory other users can write is refused.
Status PrepareSocketDirectory(const std::string& socket_path) {
  size_t slash = socket_path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : socket_path.substr(0, slash);
  if (dir.empty()) dir = "/";
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error::FromErrno(errno, "mkdir " + Quote(dir));
  }
  Result<std::string> safe = ipc::CheckPrivateDirectory(dir);
  if (!safe) return std::move(safe).error().Context("--socket " + Quote(socket_path));
  return Ok();
}

// Who may connect and who sees everything, as the command line spells it.
struct SocketFlags {
  void Register(FlagSet& flags) {
    flags.String("socket-mode", &mode, "OCTAL", "permissions of the socket file");
    flags.String("socket-group", &group, "GROUP", "group owning the socket file");
    flags.String("admin-group", &admin_group, "GROUP",
                 "members see every tenant's sessions, policies and status, as root does "
                 "(default: root only)");
    flags.String("gateway-user", &gateway_user, "NAME|UID",
                 "the HTTP gateway's user (cellgate): its connections may assert a tenant, "
                 "which then owns their sessions, caps and shares (default: no gateway)");
  }

  Status Apply(SupervisorOptions* options) const {
    Result<uint64_t> parsed = ParseUint64(mode, "--socket-mode");
    if (!parsed || mode.find_first_not_of("01234567") != std::string::npos || *parsed > 07777) {
      return Error("--socket-mode " + Quote(mode) + ": expected octal like 0660");
    }
    options->socket_mode = static_cast<mode_t>(std::stoul(mode, nullptr, 8));
    if (!group.empty()) {
      CH_ASSIGN_OR_RETURN(options->socket_group, ResolveGroup(group, "--socket-group"));
    }
    if (!admin_group.empty()) {
      CH_ASSIGN_OR_RETURN(options->admin_group, ResolveGroup(admin_group, "--admin-group"));
    }
    if (!gateway_user.empty()) {
      CH_ASSIGN_OR_RETURN(options->gateway_uid, ResolveUser(gateway_user, "--gateway-user"));
    }
    return Ok();
  }

  std::string mode = "0666";
  std::string group;
  std::string admin_group;
  std::string gateway_user;
};

// The limits on clients (supervisor/connections.h) as the command line spells them.
struct ConnectionFlags {
  explicit ConnectionFlags(const ConnectionLimits& d)
      : max_connections(static_cast<int64_t>(d.max_connections)),
        max_connections_per_tenant(static_cast<int64_t>(d.max_connections_per_identity)),
        max_pending_opens(static_cast<int64_t>(d.max_pending_opens)),
        max_pending_opens_per_tenant(static_cast<int64_t>(d.max_pending_opens_per_identity)),
        request_bytes(d.request_bytes),
        request_bytes_per_tenant(d.request_bytes_per_identity),
        request_timeout_ms(d.request_timeout_ms),
        write_timeout_ms(d.write_timeout_ms) {}

  void Register(FlagSet& flags) {
    flags.Int("max-connections", &max_connections, "N",
              "client connections not yet sessions, all tenants together (default 1024)");
    flags.Int("max-connections-per-tenant", &max_connections_per_tenant, "N",
              "of those, at most this many per tenant (uid) (default 128)");
    flags.Int("max-pending-opens", &max_pending_opens, "N",
              "sessions starting at once, all tenants together (default 256)");
    flags.Int("max-pending-opens-per-tenant", &max_pending_opens_per_tenant, "N",
              "of those, at most this many per tenant (default 64)");
    flags.ByteSize("request-buffer", &request_bytes, "BYTES",
                   "memory for partly received requests, all tenants together (default 16M)");
    flags.ByteSize("request-buffer-per-tenant", &request_bytes_per_tenant, "BYTES",
                   "of it, at most this much per tenant (default 2M)");
    flags.Int("request-timeout-ms", &request_timeout_ms, "MS",
              "a connection must send a complete request within this long (default 10000)");
    flags.Int("write-timeout-ms", &write_timeout_ms, "MS",
              "a client that does not read its reply for this long is disconnected "
              "(default 10000)");
  }

  Status Apply(ConnectionLimits* limits) const {
    if (max_connections < 1 || max_connections_per_tenant < 1 || max_pending_opens < 1 ||
        max_pending_opens_per_tenant < 1 || request_bytes == 0 || request_bytes_per_tenant == 0) {
      return Error("connection limits must be at least 1");
    }
    if (max_connections_per_tenant > max_connections ||
        max_pending_opens_per_tenant > max_pending_opens ||
        request_bytes_per_tenant > request_bytes) {
      return Error("a per-tenant limit cannot be above the limit for all tenants");
    }
    if (request_timeout_ms <= 0 || write_timeout_ms <= 0) {
      return Error("--request-timeout-ms and --write-timeout-ms must be positive");
    }
    limits->max_connections = static_cast<size_t>(max_connections);
    limits->max_connections_per_identity = static_cast<size_t>(max_connections_per_tenant);
    limits->max_pending_opens = static_cast<size_t>(max_pending_opens);
    limits->max_pending_opens_per_identity = static_cast<size_t>(max_pending_opens_per_tenant);
    limits->request_bytes = request_bytes;
    limits->request_bytes_per_identity = request_bytes_per_tenant;
    limits->request_timeout_ms = request_timeout_ms;
    limits->write_timeout_ms = write_timeout_ms;
    return Ok();
  }

  int64_t max_connections;
  int64_t max_connections_per_tenant;
  int64_t max_pending_opens;
  int64_t max_pending_opens_per_tenant;
  uint64_t request_bytes;
  uint64_t request_bytes_per_tenant;
  int64_t request_timeout_ms;
  int64_t write_timeout_ms;
};

// Sockets passed by systemd (sd_listen_fds_with_names(3)): "metrics" serves Prometheus, any
// other name ("api", the socket unit's name, "unknown") serves clients. Each is checked, then
// made non-blocking: the event loop accepts until EAGAIN, and while systemd's socket units pass
// non-blocking sockets, systemd-socket-activate(1) passes blocking ones, on which the second
// accept4(2) would wait forever.
Status TakeSystemdSockets(SupervisorOptions* options) {
  char** names = nullptr;
  int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) return Error::FromErrno(-n, "sd_listen_fds_with_names");
  Status result = Ok();
  for (int i = 0; i < n; ++i) {
    int fd = SD_LISTEN_FDS_START + i;
    std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    bool metrics = name == "metrics";
    Status ok = metrics ? ipc::CheckListeningStream(fd) : ipc::CheckListeningUnixStream(fd);
    if (ok) ok = SetNonBlocking(fd);
    if (!ok && result) {
      result = Error("socket '" + name + "' passed by systemd (fd " + std::to_string(fd) +
                     ") is unusable: " + ok.error().message() +
                     (metrics ? "; celld-metrics.socket must have ListenStream=. Refusing."
                              : "; celld.socket must have ListenStream= on a path. Refusing."));
    }
    (metrics ? options->inherited_metrics_fds : options->inherited_api_fds).push_back(fd);
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);  // NOLINT: sd_listen_fds_with_names's API
    std::free(names);                                 // NOLINT
  }
  return result;
}

// The path of the client socket: --socket, or the first one systemd passed (getsockname(2)).
std::string ServedSocketPath(const SupervisorOptions& options) {
  if (options.inherited_api_fds.empty()) return options.socket_path;
  sockaddr_un addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(options.inherited_api_fds.front(), reinterpret_cast<sockaddr*>(&addr), &len) !=
          0 ||
      addr.sun_family != AF_UNIX || addr.sun_path[0] == '\0') {
    return "";
  }
  return std::string(addr.sun_path, ::strnlen(addr.sun_path, sizeof(addr.sun_path)));
}

Result<std::string> FindZygote(const std::string& flag) {
  if (!flag.empty()) return flag;
  CH_ASSIGN_OR_RETURN(std::string dir, SelfExeDir());
  // Beside celld (a build tree), then where `cmake --install` puts it relative to celld (so an
  // install under any --prefix or DESTDIR works), then the configured libexec directory.
  for (const std::string& candidate :
       {dir + "/cell-zygote", dir + "/" + kZygoteFromBindir + "/cell-zygote",
        std::string(CELLHOUSE_LIBEXECDIR) + "/cell-zygote"}) {
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Error("cell-zygote not found beside celld (" + dir + "), in " + dir + "/" +
               kZygoteFromBindir + " nor in " + CELLHOUSE_LIBEXECDIR + "; pass --zygote PATH");
}

// The configuration checked as a whole, then celld started and served until it shuts down.
int CheckStartAndServe(const SupervisorOptions& options) {
  // Everything that can be checked without starting anything, before the model is mapped and
  // locked and before a cgroup is touched.
  if (Status st = CheckConfiguration(options); !st) {
    spdlog::critical("{}", st.error().message());
    return kExitUsage;
  }
  RealClock clock;
  Result<std::unique_ptr<Supervisor>> celld = Supervisor::Create(options, clock);
  if (!celld) {
    spdlog::critical("cannot start: {}", celld.error().message());
    return kExitRuntime;
  }
  Status ran = (*celld)->Run();
  if (!ran) {
    spdlog::critical("event loop failed: {}", ran.error().message());
    return kExitRuntime;
  }
  return kExitOk;
}

// What the model flags say, before they are resolved into SupervisorOptions::models.
struct ModelFlags {
  std::vector<std::string> models;  // --model, repeatable
  std::string models_dir;
  int64_t executor_threads = 0;  // --executor-threads
};

// Each GGUF model's shared step executor (docs/EXECUTOR.md).
void RegisterExecutorFlags(FlagSet& flags, SharedExecutorOptions& options, int64_t& threads) {
  flags.Bool("shared-executor", &options.enabled,
             "run each GGUF model's shared step executor (default true): sessions whose policy "
             "allows it (shared_executor, default true) batch their weight-heavy work into one "
             "pass over the weights, in a separate sandboxed process (docs/EXECUTOR.md); "
             "--shared-executor=false: every session computes in its own worker");
  flags.Int("executor-threads", &threads, "N",
            "threads of each shared executor (0: one per CPU of its affinity mask)");
  flags.ByteSize("executor-memory-max", &options.memory_max_bytes, "BYTES",
                 "memory limit of each shared executor's cgroup (its scratch rows; the weights "
                 "are the zygote's mapping)");
  flags.Bool("executor-solo", &options.solo,
             "a session that is the only one generating decodes in its own worker on one core, "
             "with no round trips, and rejoins the shared executor's batches when another "
             "starts (default false: the executor's threads decode a lone session faster, on "
             "more cores; the tokens are the same either way)");
}

// The models celld serves and how sessions read them.
void RegisterModelFlags(FlagSet& flags, SupervisorOptions& options, ModelFlags& model_flags) {
  flags.StringList("model", &model_flags.models, "[NAME=]FILE",
                   "a model to serve: a llama2.c or int8 checkpoint, or a GGUF file (llama, "
                   "qwen2, qwen3); repeat for several, each with its own zygote and mapping. "
                   "NAME is what clients ask for (default: the file name without extension); "
                   "the first is the default model");
  flags.String("models-dir", &model_flags.models_dir, "DIR",
               "serve every model in DIR too: GGUF files, and checkpoints with a FILE.tokenizer "
               "beside them, each named after its file");
  flags.String("tokenizer", &options.zygote.tokenizer, "FILE",
               "tokenizer of a single llama2.c model (default: <model>.tokenizer; a GGUF file "
               "has its own vocabulary)");
  flags.Int("ctx-size", &options.zygote.ctx_size, "N",
            "longest context a session may have, at most the model's (0: the model's own; GGUF "
            "files may say 128K, which sizes every session's buffers); policies cap it further");
  flags.String("chat-template", &options.zygote.chat_template, "NAME",
               "chat-template family when the model's is not recognised and the policy names "
               "none: chatml, qwen3, llama3, llama2, mistral, gemma, phi3, zephyr, deepseek, "
               "deepseek3");
  RegisterExecutorFlags(flags, options.shared_executor, model_flags.executor_threads);
}

// --model and --models-dir into options->models (the first given is the default model).
Status ResolveModels(const ModelFlags& flags, SupervisorOptions* options) {
  for (const std::string& value : flags.models) {
    CH_ASSIGN_OR_RETURN(ModelSpec spec, ParseModelFlag(value));
    options->models.push_back(std::move(spec));
  }
  if (!flags.models_dir.empty()) {
    CH_ASSIGN_OR_RETURN(std::vector<ModelSpec> found, ScanModelsDirectory(flags.models_dir));
    for (ModelSpec& spec : found) options->models.push_back(std::move(spec));
  }
  if (options->models.empty()) {
    return Error("--model [NAME=]FILE or --models-dir DIR is required; see --help");
  }
  if (!options->zygote.tokenizer.empty()) {
    if (options->models.size() != 1) {
      return Error(
          "--tokenizer names the tokenizer of one model; with several, put each checkpoint's "
          "tokenizer beside it as FILE.tokenizer");
    }
    options->models.front().tokenizer = options->zygote.tokenizer;
  }
  options->zygote.model = options->models.front().path;
  if (flags.executor_threads < 0 || flags.executor_threads > 256) {
    return Error("--executor-threads must be 0 to 256");
  }
  options->shared_executor.threads = static_cast<uint32_t>(flags.executor_threads);
  return CheckModelNames(options->models);
}

int Main(int argc, char** argv) {
  CloseStrayDescriptors();
  SupervisorOptions options;
  // NOLINTNEXTLINE(concurrency-mt-unsafe): single-threaded start-up
  const char* env_socket = std::getenv(ipc::kSocketEnvironmentVariable);
  options.socket_path = env_socket != nullptr ? env_socket : ipc::kDefaultSocketPath;
  std::string zygote, log_level = "info";
  SocketFlags socket_flags;
  int64_t heartbeat = options.heartbeat_interval_ms, worker_timeout = options.worker_timeout_ms;
  int64_t grace = options.shutdown_grace_ms, max_sessions = 0;
  int64_t pool_size = options.pool_size;
  ConnectionFlags connection_flags(options.connections);
  bool no_mlock = false, insecure = false, no_cgroups = false;

  FlagSet flags(
      "celld --model [NAME=]FILE... | --models-dir DIR [--tokenizer FILE] [--socket PATH] "
      "[options]",
      kDescription);
  ModelFlags model_flags;
  RegisterModelFlags(flags, options, model_flags);
  flags.String("socket", &options.socket_path, "PATH",
               std::string("client socket when not started by systemd, in a directory only root "
                           "may write (also $") +
                   ipc::kSocketEnvironmentVariable + ")");
  socket_flags.Register(flags);
  flags.String("policy-dir", &options.policy_dir, "DIR",
               "one policy per file; empty: the built-in default policy");
  flags.ByteSize("memory-budget", &options.memory_budget_bytes, "BYTES",
                 "memory sessions may commit (default: a safe share of physical memory)");
  flags.Int("max-sessions", &max_sessions, "N", "sessions at once, all tenants (0: no cap)");
  flags.Int("pool-size", &pool_size, "N",
            "sandboxed workers kept ready per policy, each used for one session (0: none)");
  connection_flags.Register(flags);
  flags.String("gpu-inventory", &options.gpu_inventory, "FILE",
               "GPUs to share, for hosts without NVML (see supervisor/resources/GPU.md)");
  flags.String("metrics-listen", &options.metrics_listen, "HOST:PORT",
               "serve Prometheus metrics over HTTP here (loopback only, unless "
               "--metrics-allow-remote)");
  flags.Bool("metrics-allow-remote", &options.metrics_allow_remote,
             "let --metrics-listen use a non-loopback address (metrics show session counts by "
             "policy: firewall it)");
  flags.String("cgroup-subtree", &options.cgroup.subtree, "NAME",
               "create session cgroups under <own cgroup>/NAME (default: celld-<socket path>, "
               "one per instance; '' for the own cgroup itself)");
  flags.String("zygote", &zygote, "PATH", "the cell-zygote binary (default: beside celld)");
  flags.Int("heartbeat-interval-ms", &heartbeat, "MS", "how often workers report");
  flags.Int("worker-timeout-ms", &worker_timeout, "MS", "a worker silent for this long is killed");
  flags.Int("shutdown-grace-ms", &grace, "MS",
            "on SIGTERM, how long running generations may take to finish");
  flags.Bool("no-mlock", &no_mlock, "do not lock the weights in memory (models larger than RAM)");
  flags.Bool("no-cgroups", &no_cgroups, "run without per-session cgroups (no resource limits)");
  flags.Bool("insecure-no-sandbox", &insecure,
             "run workers WITHOUT namespaces or seccomp (benchmarks of the sandbox's cost only)");
  flags.String("log-level", &log_level, "LEVEL", "trace, debug, info, warning, error");
  Result<std::vector<std::string>> rest = flags.Parse(argc - 1, argv + 1);
  if (!rest) {
    static_cast<void>(std::fprintf(stderr, "celld: %s\n", rest.error().message().c_str()));
    return kExitUsage;
  }
  if (flags.help_requested()) {
    static_cast<void>(std::fputs(flags.Usage().c_str(), stdout));
    return kExitOk;
  }
  auto usage_error = [](const std::string& message) {
    static_cast<void>(std::fprintf(stderr, "celld: %s\n", message.c_str()));
    return kExitUsage;
  };
  if (!rest->empty()) return usage_error("unexpected argument " + Quote((*rest)[0]));
  if (Status st = ResolveModels(model_flags, &options); !st) {
    return usage_error(st.error().message());
  }
  if (pool_size < 0 || pool_size > 64) return usage_error("--pool-size must be 0 to 64");
  if (options.zygote.ctx_size < 0 || options.zygote.ctx_size > INT32_MAX) {
    return usage_error("--ctx-size must be 0 to 2^31-1");
  }
  options.pool_size = static_cast<uint32_t>(pool_size);
  if (Status ok = connection_flags.Apply(&options.connections); !ok) {
    return usage_error(ok.error().message());
  }
  if (heartbeat <= 0 || worker_timeout <= heartbeat || grace < 0 || max_sessions < 0) {
    return usage_error("timeouts must be positive and --worker-timeout-ms above the heartbeat");
  }
  options.heartbeat_interval_ms = heartbeat;
  options.worker_timeout_ms = worker_timeout;
  options.shutdown_grace_ms = grace;
  options.max_sessions = static_cast<uint32_t>(max_sessions);
  options.zygote.lock_weights = !no_mlock;
  options.sandbox = !insecure;
  options.use_cgroups = !no_cgroups;
  if (Status ok = socket_flags.Apply(&options); !ok) return usage_error(ok.error().message());
  if (Status st = SetupLogging(log_level); !st) return usage_error(st.error().message());
  InstallProtobufLogHandler();

  Result<std::string> zygote_path = FindZygote(zygote);
  if (!zygote_path) return usage_error(zygote_path.error().message());
  options.zygote.binary = *zygote_path;
  if (Status st = TakeSystemdSockets(&options); !st) {
    spdlog::critical("{}", st.error().message());
    return kExitRuntime;
  }
  if (!flags.IsSet("cgroup-subtree")) {
    // One subtree per instance, named after the socket it serves: two celld sharing a cgroup
    // (started from one shell, or on a v1 host's hierarchy root) never meet in it.
    options.cgroup.subtree = cgroup::InstanceSubtree(ServedSocketPath(options));
  }
  if (insecure) {
    spdlog::warn(
        "--insecure-no-sandbox: workers run WITHOUT namespaces, capabilities dropped "
        "or seccomp. Never use this with clients you do not trust.");
  }
  if (options.inherited_api_fds.empty()) {
    if (Status ready = PrepareSocketDirectory(options.socket_path); !ready) {
      spdlog::critical("{}", ready.error().message());
      return kExitRuntime;
    }
  }
  return CheckStartAndServe(options);
}

}  // namespace
}  // namespace cellhouse::supervisor

int main(int argc, char** argv) { return cellhouse::supervisor::Main(argc, argv); }
