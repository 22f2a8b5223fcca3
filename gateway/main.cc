// cellgate: the OpenAI-compatible HTTP gateway in front of celld. Main-only code: flags,
// logging, listeners (systemd's or --listen), the loop, confinement. See docs/ARCHITECTURE.md.
#include <signal.h>
#include <sodium.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "base/clock.h"
#include "base/flags.h"
#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "gateway/celld_backend.h"
#include "gateway/confine.h"
#include "gateway/gateway.h"
#include "gateway/http_server.h"
#include "gateway/key_command.h"
#include "ipc/defaults.h"
#include "ipc/unix_socket.h"
#include "supervisor/event_loop.h"
#include "supervisor/logging.h"
#include "supervisor/metrics_server.h"

namespace cellhouse::gateway {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

constexpr const char* kDescription =
    "The OpenAI-compatible HTTP front door of cellhouse: POST /v1/chat/completions,\n"
    "POST /v1/completions, GET /v1/models, GET /health, and a chat page at /. Each request is\n"
    "served under the tenant its API key names (cellgate key add), through a session of celld.\n"
    "\n"
    "Started by systemd (cellgate.socket) it takes its listening socket from the service\n"
    "manager (a socket named 'metrics' serves Prometheus metrics); otherwise it binds --listen.\n"
    "Started as root it switches to --user; it always drops every capability and installs its\n"
    "own seccomp filter before serving.\n"
    "\n"
    "Signals: SIGTERM/SIGINT stop (running generations get --shutdown-grace-ms); SIGHUP re-reads\n"
    "--keys. Exit status: 0 after a clean stop, 1 on a runtime error, 2 on a usage error.";

#ifndef CELLHOUSE_WEB_DIR_INSTALLED
#define CELLHOUSE_WEB_DIR_INSTALLED "/usr/share/cellhouse/web"
#endif
#ifndef CELLHOUSE_WEB_DIR_SOURCE
#define CELLHOUSE_WEB_DIR_SOURCE ""
#endif

// Descriptors above standard error not passed by systemd are closed first: the process faces
// the network and must hold nothing its parent left open.
void CloseStrayDescriptors() {
  int passed = sd_listen_fds(0);
  unsigned first = SD_LISTEN_FDS_START + static_cast<unsigned>(std::max(passed, 0));
  static_cast<void>(::close_range(first, ~0U, 0));
}

struct Listeners {
  std::vector<UniqueFd> http;
  std::vector<UniqueFd> metrics;
};

Result<Listeners> TakeListeners(const std::string& listen, const std::string& metrics_listen) {
  Listeners out;
  char** names = nullptr;
  int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) return Error::FromErrno(-n, "sd_listen_fds_with_names");
  Status result = Ok();
  for (int i = 0; i < n; ++i) {
    int fd = SD_LISTEN_FDS_START + i;
    std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    Status ok = ipc::CheckListeningStream(fd);
    if (ok) ok = SetNonBlocking(fd);
    if (!ok && result) {
      result = Error("socket '" + name + "' passed by systemd (fd " + std::to_string(fd) +
                     ") is unusable: " + ok.error().message() + ". Refusing.");
    }
    (name == "metrics" ? out.metrics : out.http).emplace_back(fd);
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);  // NOLINT: sd_listen_fds_with_names's API
    std::free(names);                                 // NOLINT
  }
  CH_RETURN_IF_ERROR(result);
  if (out.http.empty()) {
    CH_ASSIGN_OR_RETURN(UniqueFd fd, ListenTcp(listen, "--listen"));
    out.http.push_back(std::move(fd));
  }
  if (!metrics_listen.empty()) {
    CH_ASSIGN_OR_RETURN(UniqueFd fd, ListenTcp(metrics_listen, "--metrics-listen"));
    out.metrics.push_back(std::move(fd));
  }
  for (const UniqueFd& fd : out.metrics) {
    CH_ASSIGN_OR_RETURN(bool loopback, IsLoopbackListener(fd.get()));
    if (!loopback) {
      return Error(
          "the metrics listener is not on a loopback address; it is an admin "
          "interface without authentication. Refusing.");
    }
  }
  return out;
}

// The chat page's files: where `cmake --install` puts them relative to cellgate (any prefix),
// then the configured prefix's, then the source tree's (a build tree).
std::string DefaultWebDir() {
  std::vector<std::string> candidates;
  if (Result<std::string> dir = SelfExeDir()) {
    candidates.push_back(*dir + "/../share/cellhouse/web");
  }
  candidates.emplace_back(CELLHOUSE_WEB_DIR_INSTALLED);
  candidates.emplace_back(CELLHOUSE_WEB_DIR_SOURCE);
  for (const std::string& c : candidates) {
    if (::access((c + "/index.html").c_str(), R_OK) == 0) return c;
  }
  return candidates.back();
}

struct ServeFlags {
  std::string listen = "127.0.0.1:8080";
  std::string metrics_listen;
  std::string celld_socket;
  std::string keys;
  std::string user;
  std::string web_dir;
  std::string policy;
  std::string log_level = "info";
  std::vector<std::string> model_names;
  std::vector<std::string> allowed_hosts;
  int64_t max_connections = 1024;
  int64_t max_connections_per_ip = 64;
  int64_t request_timeout_ms = 10'000;
  int64_t idle_timeout_s = 60;
  int64_t shutdown_grace_ms = 10'000;
  uint64_t max_body = uint64_t{1} << 20;
  int64_t max_tokens = 256;
  int64_t max_messages = 256;
  int64_t max_concurrent = 8;
  int64_t max_idle_sessions = 2;
  int64_t idle_session_ttl_ms = 120'000;

  void Register(FlagSet& f) {
    f.String("listen", &listen, "ADDR:PORT", "where to serve HTTP when systemd passes no socket");
    f.String("metrics-listen", &metrics_listen, "ADDR:PORT",
             "serve Prometheus metrics here (loopback addresses only)");
    f.String("celld-socket", &celld_socket, "PATH",
             std::string("celld's socket (default $") + ipc::kSocketEnvironmentVariable + " or " +
                 ipc::kDefaultSocketPath + ")");
    f.String("keys", &keys, "FILE", "API keys and their tenants (cellgate key add); required");
    f.String("user", &user, "NAME", "when started as root, serve as this unprivileged user");
    f.String("web-dir", &web_dir, "DIR", "the chat page's files");
    f.String("policy", &policy, "NAME", "celld policy for the gateway's sessions");
    f.StringList("model-name", &model_names, "NAME",
                 "a name the model celld serves is offered under (repeatable; default "
                 "'cellhouse')");
    f.StringList("allowed-host", &allowed_hosts, "NAME",
                 "a host name browsers use to reach the gateway, checked against Host and "
                 "Origin (repeatable; default localhost, 127.0.0.1, ::1)");
    f.Int("max-connections", &max_connections, "N", "HTTP connections, all clients");
    f.Int("max-connections-per-ip", &max_connections_per_ip, "N",
          "HTTP connections per client address (behind a proxy: its pool)");
    f.Int("request-timeout-ms", &request_timeout_ms, "MS",
          "a request (line, headers, body) must arrive within this long");
    f.Int("idle-timeout-s", &idle_timeout_s, "S", "an idle or stalled connection is closed");
    f.Int("shutdown-grace-ms", &shutdown_grace_ms, "MS",
          "on SIGTERM, how long running generations may take to finish");
    f.ByteSize("max-body", &max_body, "BYTES", "largest request body, per tenant");
    f.Int("max-tokens", &max_tokens, "N",
          "new tokens per request, per tenant (celld's policy may lower it)");
    f.Int("max-messages", &max_messages, "N", "messages per chat request");
    f.Int("max-concurrent", &max_concurrent, "N", "requests in progress per tenant (then 429)");
    f.Int("max-idle-sessions", &max_idle_sessions, "N",
          "sessions kept per tenant and model for conversation reuse (0: none)");
    f.Int("idle-session-ttl-ms", &idle_session_ttl_ms, "MS", "how long such a session is kept");
    f.String("log-level", &log_level, "LEVEL", "trace, debug, info, warning, error");
  }

  Status Check() const {
    if (keys.empty()) return Error("--keys FILE is required (make one with cellgate key add)");
    if (max_connections < 1 || max_connections_per_ip < 1 || request_timeout_ms < 1 ||
        idle_timeout_s < 1 || max_tokens < 1 || max_messages < 1 || max_concurrent < 1 ||
        max_idle_sessions < 0 || idle_session_ttl_ms < 1 || shutdown_grace_ms < 0 ||
        max_body < 1024) {
      return Error("limits must be positive (--max-body at least 1K)");
    }
    return Ok();
  }
};

CelldBackendOptions BackendOptions(const ServeFlags& s) {
  CelldBackendOptions o;
  o.socket_path = s.celld_socket;
  o.models = s.model_names;
  o.policy = s.policy;
  o.limits.max_body_bytes = s.max_body;
  o.limits.max_tokens = static_cast<uint32_t>(s.max_tokens);
  o.limits.max_messages = static_cast<size_t>(s.max_messages);
  o.limits.max_concurrent_requests = static_cast<size_t>(s.max_concurrent);
  o.limits.max_idle_sessions = static_cast<size_t>(s.max_idle_sessions);
  o.limits.max_prompt_bytes = std::min<size_t>(s.max_body, size_t{512} << 10);
  return o;
}

HttpServerOptions HttpOptions(const ServeFlags& s) {
  HttpServerOptions o;
  o.max_connections = static_cast<unsigned>(s.max_connections);
  o.max_connections_per_ip = static_cast<unsigned>(s.max_connections_per_ip);
  o.request_timeout_ms = s.request_timeout_ms;
  o.idle_timeout_s = static_cast<unsigned>(s.idle_timeout_s);
  o.max_body_bytes = s.max_body;
  return o;
}

// SIGHUP re-reads the keys; SIGTERM/SIGINT stop accepting and let running generations finish.
struct Lifecycle {
  bool stopping = false;
  int64_t stop_deadline = 0;
};

Status HandleSignals(EventLoop& loop, Gateway& gateway, HttpServer& http, const ServeFlags& s,
                     Lifecycle* life) {
  return loop.HandleSignals({SIGTERM, SIGINT, SIGHUP}, [&, life](int sig) {
    if (sig == SIGHUP) {
      Result<KeyStore> reloaded = KeyStore::Load(s.keys);
      if (!reloaded) {
        spdlog::error("reloading the keys: {}; the previous keys stay", reloaded.error().message());
        return;
      }
      spdlog::info("reloaded {} key(s) from {}", reloaded->records().size(), s.keys);
      gateway.ReplaceKeys(std::move(*reloaded));
      return;
    }
    if (life->stopping) return;
    spdlog::info("stopping: no new connections; {} generation(s) running",
                 gateway.active_generations());
    life->stopping = true;
    life->stop_deadline = loop.clock().NowNanos() + s.shutdown_grace_ms * kNanosPerMilli;
    http.StopAccepting();
    gateway.DropIdleSessions();
  });
}

int Fail(const std::string& message) {
  spdlog::critical("{}", message);
  return kExitRuntime;
}

// From checked flags to a confined, serving gateway, until it stops.
int Run(const ServeFlags& s) {
  if (sodium_init() < 0) return Fail("libsodium could not be initialised");
  // Everything that needs files, names or privileges, before confinement.
  Result<KeyStore> keys = KeyStore::Load(s.keys);
  if (!keys) return Fail(keys.error().message());
  Result<WebAssets> web = WebAssets::Load(s.web_dir);
  if (!web) return Fail(web.error().message());
  Result<Listeners> listeners = TakeListeners(s.listen, s.metrics_listen);
  if (!listeners) return Fail(listeners.error().message());
  Result<ConfinementPlan> plan = PlanConfinement({.user = s.user});
  if (!plan) return Fail(plan.error().message());

  RealClock clock;
  Result<std::unique_ptr<EventLoop>> loop_or = EventLoop::Create(clock);
  if (!loop_or) return Fail(loop_or.error().message());
  EventLoop& loop = **loop_or;
  CelldBackend backend(loop, BackendOptions(s));
  GatewayOptions gateway_options;
  if (!s.allowed_hosts.empty()) gateway_options.allowed_hosts = s.allowed_hosts;
  gateway_options.idle_session_ttl_ms = s.idle_session_ttl_ms;
  Gateway gateway(loop, backend, std::move(*keys), std::move(*web), gateway_options);
  HttpServer http(loop, gateway, HttpOptions(s));
  for (UniqueFd& fd : listeners->http) {
    spdlog::info("serving HTTP on {}", SocketAddress(fd.get()));
    if (Status st = http.AddListener(std::move(fd)); !st) return Fail(st.error().message());
  }
  supervisor::MetricsServer metrics(loop, [&] {
    gateway.metrics().connections = static_cast<int64_t>(http.connections());
    return gateway.metrics().Render();
  });
  for (UniqueFd& fd : listeners->metrics) {
    spdlog::info("serving metrics on {}", SocketAddress(fd.get()));
    if (Status st = metrics.AddListener(std::move(fd)); !st) return Fail(st.error().message());
  }
  Lifecycle life;
  if (Status st = HandleSignals(loop, gateway, http, s, &life); !st) {
    return Fail(st.error().message());
  }
  // Writes to a client that left are EPIPE, not a signal.
  static_cast<void>(::signal(SIGPIPE, SIG_IGN));

  if (Status st = Confine(*plan); !st) return Fail(st.error().message());
  std::string names;
  for (const std::string& m : s.model_names) names += (names.empty() ? "" : ", ") + m;
  spdlog::info("cellgate ready: celld at {}, models: {}", s.celld_socket, names);
  static_cast<void>(sd_notify(0, "READY=1"));

  while (!life.stopping ||
         (gateway.active_generations() > 0 && clock.NowNanos() < life.stop_deadline)) {
    if (Status st = loop.RunOnce(life.stopping ? 100 : -1); !st) return Fail(st.error().message());
  }
  spdlog::info("stopped");
  return kExitOk;
}

int Serve(int argc, char** argv) {
  CloseStrayDescriptors();
  ServeFlags s;
  FlagSet flags(
      "cellgate --keys FILE [--listen ADDR:PORT] [options]\n"
      "       cellgate key add|list|remove --keys FILE ...",
      kDescription);
  s.Register(flags);
  Result<std::vector<std::string>> rest = flags.Parse(argc - 1, argv + 1);
  auto usage_error = [](const std::string& message) {
    static_cast<void>(std::fprintf(stderr, "cellgate: %s\n", message.c_str()));
    return kExitUsage;
  };
  if (!rest) return usage_error(rest.error().message());
  if (flags.help_requested()) {
    static_cast<void>(std::fputs(flags.Usage().c_str(), stdout));
    return kExitOk;
  }
  if (!rest->empty()) return usage_error("unexpected argument " + Quote((*rest)[0]));
  if (Status ok = s.Check(); !ok) return usage_error(ok.error().message());
  if (Status st = supervisor::SetupLogging(s.log_level); !st) {
    return usage_error(st.error().message());
  }
  if (s.celld_socket.empty()) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): single-threaded start-up
    const char* env = std::getenv(ipc::kSocketEnvironmentVariable);
    s.celld_socket = env != nullptr ? env : ipc::kDefaultSocketPath;
  }
  if (s.model_names.empty()) s.model_names = {"cellhouse"};
  if (s.web_dir.empty()) s.web_dir = DefaultWebDir();
  return Run(s);
}

}  // namespace
}  // namespace cellhouse::gateway

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "key") {
    return cellhouse::gateway::RunKeyCommand(argc - 1, argv + 1);
  }
  return cellhouse::gateway::Serve(argc, argv);
}
