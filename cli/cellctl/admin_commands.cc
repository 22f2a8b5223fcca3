// cellctl's administrative commands: one request on a connection of its own, one response.
// RunAdmin does the plumbing (flags, request, error → exit status); each command says what it
// asks and how it prints the answer, as a table or with --json.
#include <functional>
#include <string>
#include <vector>

#include "base/print.h"
#include "base/strings.h"
#include "cli/cellctl/cli_common.h"
#include "cli/cellctl/commands.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"
#include "ipc/messages.h"

namespace cellhouse::cli {
namespace {

struct AdminCommand {
  const char* usage;
  const char* description;
  size_t positional = 0;  // arguments the command takes
  std::function<Result<api::Request>(const std::vector<std::string>&)> request;
  std::function<void(const api::Response&, bool json)> print;
};

int RunAdmin(const GlobalOptions& global, const std::vector<std::string>& args,
             const AdminCommand& command) {
  FlagSet flags(command.usage, command.description);
  std::vector<std::string> rest;
  if (auto stop = ParseFlags(flags, args, &rest)) return *stop;
  if (rest.size() != command.positional) {
    Printf(stderr, "usage: %s (see --help)\n", command.usage);
    return kExitUsage;
  }
  Result<api::Request> request = command.request(rest);
  if (!request) {
    Printf(stderr, "cellctl: %s\n", request.error().message().c_str());
    return kExitUsage;
  }
  Result<api::Response> response = AdminRequest(global.socket, *request);
  if (!response) return Fail(response.error().message(), std::nullopt);
  if (response->has_error()) return Fail(response->error().message(), response->error());
  command.print(*response, global.json);
  return kExitOk;
}

void PrintAck(const api::Response& r, bool json) {
  if (json) {
    Printf(stdout, "%s\n", JsonObject().Add("message", r.ack().message()).Render().c_str());
  } else {
    Printf(stdout, "%s\n", r.ack().message().c_str());
  }
}

void PrintSessions(const api::Response& r, bool json) {
  const auto& sessions = r.sessions().sessions();
  if (json) {
    std::vector<std::string> items;
    items.reserve(static_cast<size_t>(sessions.size()));
    for (const api::SessionInfo& s : sessions) {
      JsonObject j;
      j.Add("session_id", ipc::IdToHex(s.session_id()))
          .Add("tenant_uid", s.tenant_uid())
          .Add("policy", s.policy())
          .Add("model", s.model())
          .Add("worker_pid", s.worker_pid())
          .Add("host_uid", s.host_uid())
          .Add("age_ms", s.age_ms())
          .Add("idle_ms", s.idle_ms())
          .Add("tokens_generated", s.tokens_generated())
          .Add("context_used", s.context_used())
          .Add("memory_bytes", s.memory_bytes())
          .Add("cpu_nanos", s.cpu_nanos())
          .Add("attached", s.attached())
          .Add("shared_executor", s.shared_executor())
          .Add("executor_rows", s.executor_rows())
          .Add("executor_cpu_nanos", s.executor_cpu_nanos());
      // Sessions of the HTTP gateway's tenants (celld --gateway-user) name theirs.
      if (!s.tenant().empty()) j.Add("gateway_tenant", s.tenant());
      items.push_back(j.Render());
    }
    Printf(stdout, "%s\n", JsonArray(items).c_str());
    return;
  }
  // CPU is the worker's cgroup's; EXEC CPU what the shared executor spent on it ("-": none).
  Printf(stdout, "%-32s %6s %-12s %7s %6s %6s %7s %6s %10s %8s %8s %s\n", "ID", "UID", "POLICY",
         "PID", "AGE", "IDLE", "TOKENS", "CTX", "MEMORY", "CPU", "EXEC CPU", "ATTACHED");
  for (const api::SessionInfo& s : sessions) {
    Printf(stdout, "%-32s %6u %-12s %7d %6s %6s %7llu %6u %10s %8s %8s %s\n",
           ipc::IdToHex(s.session_id()).c_str(), s.tenant_uid(), s.policy().c_str(), s.worker_pid(),
           Duration(s.age_ms()).c_str(), Duration(s.idle_ms()).c_str(),
           static_cast<unsigned long long>(s.tokens_generated()), s.context_used(),
           FormatBytes(s.memory_bytes()).c_str(), Duration(s.cpu_nanos() / 1'000'000).c_str(),
           s.shared_executor() ? Duration(s.executor_cpu_nanos() / 1'000'000).c_str() : "-",
           s.attached() ? "yes" : "no");
  }
}

// "a (default), b" for the text view; the models as a JSON array.
std::string ModelNames(const api::ServerStatus& s) {
  std::string out;
  for (const api::ModelStatus& m : s.models()) {
    out += (out.empty() ? "" : ", ") + m.name() + (m.is_default() ? " (default)" : "");
  }
  return out.empty() ? "none" : out;
}

std::string ModelsJson(const api::ServerStatus& s) {
  std::vector<std::string> items;
  for (const api::ModelStatus& m : s.models()) {
    JsonObject j;
    j.Add("name", m.name())
        .Add("description", m.description())
        .Add("weights_bytes", m.weights_bytes())
        .Add("context_length", m.context_length())
        .Add("default", m.is_default());
    items.push_back(j.Render());
  }
  return JsonArray(items);
}

void PrintStatus(const api::Response& r, bool json) {
  const api::ServerStatus& s = r.status();
  if (json) {
    JsonObject j;
    j.Add("version", s.version())
        .Add("model", s.model())
        .Add("sessions_active", s.sessions_active())
        .Add("sessions_admitted", s.sessions_admitted())
        .Add("sessions_refused", s.sessions_refused())
        .Add("memory_budget_bytes", s.memory_budget_bytes())
        .Add("memory_committed_bytes", s.memory_committed_bytes())
        .Add("weights_bytes", s.weights_bytes())
        .Add("weights_resident_bytes", s.weights_resident_bytes())
        .Add("cgroup_driver", s.cgroup_driver())
        .Add("full_view", s.full_view())
        .AddRaw("models", ModelsJson(s));
    Printf(stdout, "%s\n", j.Render().c_str());
    return;
  }
  if (!s.full_view()) {
    // A tenant's view: celld tells it about its own sessions only.
    Printf(stdout,
           "celld %s\nmodel: %s\nmodels: %s\nweights: %s mapped\nyour sessions: %u active\n",
           s.version().c_str(), s.model().c_str(), ModelNames(s).c_str(),
           FormatBytes(s.weights_bytes()).c_str(), s.sessions_active());
    return;
  }
  Printf(stdout,
         "celld %s\nmodel: %s\nmodels: %s\nweights: %s mapped, %s resident\n"
         "sessions: %u active, %llu admitted, %llu refused\n"
         "memory: %s of %s committed\ncgroups: %s\n",
         s.version().c_str(), s.model().c_str(), ModelNames(s).c_str(),
         FormatBytes(s.weights_bytes()).c_str(), FormatBytes(s.weights_resident_bytes()).c_str(),
         s.sessions_active(), static_cast<unsigned long long>(s.sessions_admitted()),
         static_cast<unsigned long long>(s.sessions_refused()),
         FormatBytes(s.memory_committed_bytes()).c_str(),
         FormatBytes(s.memory_budget_bytes()).c_str(), s.cgroup_driver().c_str());
}

void PrintPolicies(const api::Response& r, bool json) {
  const auto& policies = r.policies().policies();
  if (json) {
    std::vector<std::string> items;
    items.reserve(static_cast<size_t>(policies.size()));
    for (const api::PolicySummary& p : policies) {
      JsonObject j;
      j.Add("name", p.name())
          .Add("source", p.source())
          .Add("description", p.description())
          .Add("context_length", p.context_length())
          .Add("memory_max_bytes", p.memory_max_bytes())
          .Add("active_sessions", p.active_sessions());
      items.push_back(j.Render());
    }
    Printf(stdout, "%s\n", JsonArray(items).c_str());
    return;
  }
  Printf(stdout, "%-16s %8s %10s %7s  %s\n", "NAME", "CONTEXT", "MEMORY", "ACTIVE", "DESCRIPTION");
  for (const api::PolicySummary& p : policies) {
    Printf(stdout, "%-16s %8u %10s %7u  %s\n", p.name().c_str(), p.context_length(),
           FormatBytes(p.memory_max_bytes()).c_str(), p.active_sessions(), p.description().c_str());
  }
}

// A request with nothing but its kind.
template <auto kMutable>
Result<api::Request> Plain(const std::vector<std::string>& /*args*/) {
  api::Request r;
  (r.*kMutable)();
  return r;
}

}  // namespace

int CmdSessions(const GlobalOptions& global, const std::vector<std::string>& args) {
  return RunAdmin(
      global, args,
      {"cellctl sessions", "Lists your sessions (an administrator sees every tenant's).", 0,
       Plain<&api::Request::mutable_list_sessions>, PrintSessions});
}

int CmdKill(const GlobalOptions& global, const std::vector<std::string>& args) {
  return RunAdmin(global, args,
                  {"cellctl kill ID", "Ends a session now. Your own sessions; root may end any.", 1,
                   [](const std::vector<std::string>& a) -> Result<api::Request> {
                     CH_ASSIGN_OR_RETURN(std::string id, HexArg(a[0], "session ID"));
                     api::Request r;
                     r.mutable_kill_session()->set_session_id(id);
                     return r;
                   },
                   PrintAck});
}

int CmdStatus(const GlobalOptions& global, const std::vector<std::string>& args) {
  return RunAdmin(global, args,
                  {"cellctl status", "Shows celld's version, model, sessions and memory.", 0,
                   Plain<&api::Request::mutable_status>, PrintStatus});
}

int CmdReload(const GlobalOptions& global, const std::vector<std::string>& args) {
  return RunAdmin(
      global, args,
      {"cellctl reload",
       "Asks celld to re-read its policy directory (root only). All files valid: the\n"
       "new set replaces the old at once. Any invalid: the old set stays, the error is\n"
       "printed and the exit status is 1. Running sessions keep their policy.",
       0, Plain<&api::Request::mutable_reload_policies>, PrintAck});
}

int CmdPolicyList(const GlobalOptions& global, const std::vector<std::string>& args) {
  return RunAdmin(
      global, args,
      {"cellctl policy list", "Lists the policies you may use (an administrator sees all of them).",
       0, Plain<&api::Request::mutable_list_policies>, PrintPolicies});
}

}  // namespace cellhouse::cli
