// What celld knows about one session, and the one place its life moves forward: a Session owns
// its timers (cancelled when re-armed, when the session ends, and with the object) and its
// state changes (spawning → pooled → running → ending), so no caller cancels timer ids by hand
// or sets a state out of order. Owned by the Supervisor's session table; everything a worker says
// about itself is stored as a claim (`claims`), never used to decide anything that matters for
// other tenants.
//
//   Session& s = sessions_.try_emplace(id, id, NextNumber(), policy, *loop_, now).first->second;
//   s.lifetime_timer.Arm(now + lifetime, [this, id] { ... });
//   s.StartRunning(now);
//   if (s.BeginEnding(api::KILLED, "the session was killed by its owner")) { ... ask it to stop }
//   sessions_.erase(id);  // its timers go with it
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

// A timer that belongs to its holder: arming it again replaces the deadline, and it is cancelled
// by Cancel() and when the holder (and so the timer) goes. armed() is false again once it fired.
class OwnedTimer {
 public:
  explicit OwnedTimer(EventLoop& loop) : loop_(&loop) {}
  ~OwnedTimer() { Cancel(); }
  OwnedTimer(const OwnedTimer&) = delete;
  OwnedTimer& operator=(const OwnedTimer&) = delete;

  void Arm(int64_t deadline_ns, EventLoop::TimerCallback callback);
  void Cancel();
  bool armed() const { return id_ != 0; }

 private:
  EventLoop* loop_;
  TimerId id_ = 0;
};

// A worker's last heartbeat: what it says about itself (bounded and checked for plausibility on
// arrival, shown to its tenant, never trusted for anything that matters to others).
struct WorkerClaims {
  uint64_t tokens_generated = 0;
  uint32_t context_used = 0;
  uint64_t kv_bytes_in_use = 0;
  bool generating = false;
  uint64_t idle_ms = 0;
};

class Session {
 public:
  enum class State {
    kSpawning,  // asked the zygote; the opener's connection waits (or it is for the pool)
    kPooled,    // a pool worker: sandboxed, in its cgroup, waiting for a session to serve
    kRunning,   // the worker serves its client (or waits detached)
    kEnding,    // celld asked it to end, or it ended and the end is being recorded
  };

  // `number` names the session where the id must not show (its cgroups: /proc/PID/cgroup and
  // cgroupfs are readable by others, the id is a secret).
  Session(std::string id, uint64_t number, std::shared_ptr<const policy::CompiledPolicy> policy,
          EventLoop& loop, int64_t created_ns);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session() = default;

  // ---- State changes: the only ways state() moves. ----
  State state() const { return state_; }
  // A pool worker reported ready.
  void BecomePooled();
  // The worker serves its client from now on.
  void StartRunning(int64_t now_ns);
  // celld ends the session: records why (the first reason given is kept, the outcome the
  // client is told) and moves to kEnding. Returns false when it was ending already.
  bool BeginEnding(api::SessionOutcome outcome, std::string reason);
  // The sandbox could not be set up: ending, and never visible to a client.
  void FailSetup(std::string why);
  // The client's connection arrived at the worker / left it.
  void MarkAttached();
  void MarkDetached(int64_t now_ns);
  // Every timer off: the session is over.
  void CancelTimers();

  const std::optional<api::SessionOutcome>& requested_end() const { return requested_end_; }
  const std::string& requested_reason() const { return requested_reason_; }
  const std::optional<std::string>& setup_failure() const { return setup_failure_; }
  bool attached() const { return attached_; }
  int64_t detached_since_ns() const { return detached_since_ns_; }
  const std::string& id() const { return id_; }
  uint64_t number() const { return number_; }

  // Whether a client may see it (list, kill): a session exists for its tenant from the moment it
  // started serving. A pool worker, one still starting, and one whose sandbox set-up failed (the
  // opener was told it could not start; only its reaping is left) are not sessions yet.
  bool VisibleToClients() const {
    return state_ != State::kSpawning && state_ != State::kPooled && !setup_failure_;
  }

  // ---- What celld records (plain data, kept by the supervisor). ----
  std::string token;  // 32 random bytes; empty for a pool worker that never served anyone
  uid_t tenant_uid = 0;
  gid_t tenant_gid = 0;
  // The gateway tenant its opener asserted (celld --gateway-user); empty for a direct client.
  // Owners are (tenant_uid, gateway_tenant): re-attach, lists and kill compare both.
  std::string gateway_tenant;
  std::string model;  // the served model's name (its zygote made the worker)
  std::shared_ptr<const policy::CompiledPolicy> policy;  // kept for the session's life
  uint32_t context_length = 0;
  uint32_t host_id_first = 0;

  ChildProcess worker;
  UniqueFd control;     // celld's end of the control channel
  UniqueFd client_dup;  // celld's copy of the client connection, to report how it ended
  std::optional<cgroup::SessionCgroup> cgroup;
  std::optional<resources::Grant> grant;  // admission ticket (and GPU share)

  bool pooled = false;  // started for the pool (and, once assigned, served from it)
  int64_t created_ns = 0;
  int64_t opened_ns = 0;  // when the open request was accepted (open latency)
  int64_t running_since_ns = 0;
  int64_t last_heard_ns = 0;  // last message from the worker
  uint64_t spawn_request_id = 0;
  // Its worker's slot in the model's shared executor (0: none; it computes alone), and what the
  // executor reported computing for it.
  uint64_t executor_slot = 0;
  uint64_t executor_rows = 0;
  uint64_t executor_cpu_ns = 0;
  uint64_t opener_connection = 0;  // the connection waiting for this session to start

  WorkerClaims claims;
  uint32_t messages_this_second = 0;
  int64_t message_window_start_ns = 0;

  std::optional<ExitStatus> exit_status;  // once reaped
  std::optional<std::string> seccomp_syscall;

  // Its timers, each for one reason to act later.
  OwnedTimer heartbeat_timer;  // the worker has been silent too long
  OwnedTimer lifetime_timer;   // the policy's max_lifetime_seconds
  OwnedTimer detach_timer;     // nobody re-attached within the policy's detached grace
  OwnedTimer kill_timer;       // a stopped worker did not exit in time
  OwnedTimer finalize_timer;   // waiting for the audit record of a seccomp kill

 private:
  std::string id_;  // 16 random bytes
  uint64_t number_ = 0;
  State state_ = State::kSpawning;
  std::optional<api::SessionOutcome> requested_end_;
  std::string requested_reason_;
  std::optional<std::string> setup_failure_;
  bool attached_ = false;
  int64_t detached_since_ns_ = 0;  // 0 while attached
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_SESSION_H_
