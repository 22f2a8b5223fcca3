#include "ipc/messages.h"

#include "base/strings.h"

namespace cellhouse::ipc {

api::Response MakeError(api::ErrorCode code, std::string_view message,
                        api::SessionOutcome outcome) {
  api::Response r;
  api::Error* e = r.mutable_error();
  e->set_code(code);
  e->set_message(std::string(message));
  e->set_outcome(outcome);
  return r;
}

api::Response MakeAck(std::string_view message) {
  api::Response r;
  r.mutable_ack()->set_message(std::string(message));
  return r;
}

std::string_view RequestKindName(const api::Request& request) {
  switch (request.kind_case()) {
    case api::Request::kOpen:
      return "open";
    case api::Request::kAttach:
      return "attach";
    case api::Request::kGenerate:
      return "generate";
    case api::Request::kCancel:
      return "cancel";
    case api::Request::kClose:
      return "close";
    case api::Request::kListSessions:
      return "list_sessions";
    case api::Request::kKillSession:
      return "kill_session";
    case api::Request::kListPolicies:
      return "list_policies";
    case api::Request::kReloadPolicies:
      return "reload_policies";
    case api::Request::kStatus:
      return "status";
    case api::Request::KIND_NOT_SET:
      break;
  }
  return "empty";
}

std::string ErrorCodeName(api::ErrorCode code) { return api::ErrorCode_Name(code); }

std::string_view OutcomeName(api::SessionOutcome outcome) {
  switch (outcome) {
    case api::CLOSED:
      return "closed by the client";
    case api::IDLE_TIMEOUT:
      return "idle timeout";
    case api::LIFETIME_EXCEEDED:
      return "maximum lifetime reached";
    case api::OOM_KILLED:
      return "memory limit exceeded";
    case api::SECCOMP_VIOLATION:
      return "stopped by the sandbox (forbidden system call)";
    case api::KILLED:
      return "killed on request";
    case api::WORKER_CRASHED:
      return "worker crashed";
    case api::SETUP_FAILED:
      return "sandbox setup failed";
    case api::SHUTDOWN:
      return "server shutting down";
    case api::UNRESPONSIVE:
      return "worker stopped responding";
    case api::PROTOCOL_VIOLATION:
      return "worker violated the protocol";
    case api::LIMIT_EXCEEDED:
      return "a policy limit was exceeded";
    default:
      break;
  }
  return "unknown";
}

std::string IdToHex(std::string_view bytes) {
  return HexEncode(std::as_bytes(std::span<const char>(bytes.data(), bytes.size())));
}

}  // namespace cellhouse::ipc
