// What celld knows about one session. Owned by the Supervisor's session table; everything a
// worker says about itself is stored as a claim (last heartbeat), never used to decide anything
// that matters for other tenants.
#ifndef CELLHOUSE_SUPERVISOR_SESSION_H_
#define CELLHOUSE_SUPERVISOR_SESSION_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "base/process.h"
#include "base/unique_fd.h"
#include "ipc/api.pb.h"
#include "policy/choose.h"
#include "policy/policy.h"
#include "supervisor/cgroup/session_cgroup.h"
#include "supervisor/event_loop.h"
#include "supervisor/resources/admission.h"

namespace cellhouse::supervisor {

struct Session {
  enum class State {
    kSpawning,  // asked the zygote; the opener's connection waits (or it is for the pool)
    kPooled,    // a pool worker: sandboxed, in its cgroup, waiting for a session to serve
    kRunning,   // the worker serves its client (or waits detached)
    kEnding,    // celld asked it to end, or it ended and the end is being recorded
  };

  std::string id;     // 16 random bytes
  std::string token;  // 32 random bytes
  uid_t tenant_uid = 0;
  gid_t tenant_gid = 0;
  std::shared_ptr<const policy::CompiledPolicy> policy;  // kept for the session's life
  uint32_t context_length = 0;
  uint32_t host_id_first = 0;
  State state = State::kSpawning;

  ChildProcess worker;
  UniqueFd control;     // celld's end of the control channel
  UniqueFd client_dup;  // celld's copy of the client connection, to report how it ended
  bool attached = false;
  std::optional<cgroup::SessionCgroup> cgroup;
  std::optional<resources::Grant> grant;  // admission ticket (and GPU share)

  bool pooled = false;  // started for the pool (and, once assigned, served from it)
  int64_t created_ns = 0;
  int64_t opened_ns = 0;  // when the open request was accepted (open latency)
  int64_t running_since_ns = 0;
  int64_t last_heard_ns = 0;      // last message from the worker
  int64_t detached_since_ns = 0;  // 0 while attached
  uint64_t spawn_request_id = 0;
  uint64_t opener_connection = 0;  // the connection waiting for this session to start

  // Claims from the worker's last heartbeat (bounded, checked for plausibility).
  uint64_t tokens_generated = 0;
  uint32_t context_used = 0;
  uint64_t kv_bytes_in_use = 0;
  bool generating = false;
  uint64_t idle_ms = 0;
  uint32_t messages_this_second = 0;
  int64_t message_window_start_ns = 0;

  std::optional<ExitStatus> exit_status;  // once reaped

  // Set when celld ends the session itself.
  std::optional<api::SessionOutcome> requested_end;
  std::string requested_reason;
  std::optional<std::string> setup_failure;
  std::optional<std::string> seccomp_syscall;

  TimerId heartbeat_timer = 0;
  TimerId lifetime_timer = 0;
  TimerId detach_timer = 0;
  TimerId kill_timer = 0;
  TimerId finalize_timer = 0;

  // Whether a client may see it (list, kill): a session exists for its tenant from the moment it
  // started serving. A pool worker, one still starting, and one whose sandbox set-up failed (the
  // opener was told it could not start; only its reaping is left) are not sessions yet.
  bool VisibleToClients() const {
    return state != State::kSpawning && state != State::kPooled && !setup_failure;
  }
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_SESSION_H_
